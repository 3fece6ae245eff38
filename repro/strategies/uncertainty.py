"""Uncertainty sampling on one deterministic pass of the task model."""

from __future__ import annotations

import numpy as np
import torch

from repro import losses
from repro.strategies.base import QueryContext, ScoreStrategy, register


@register("entropy")
class EntropyStrategy(ScoreStrategy):
    """Max-entropy: top-k of H(softmax(logits)) (DAL Sec. 2 "Uncertainty"; `losses.entropy`)."""

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        logits, _ = ctx.predict(candidates)
        return losses.entropy(torch.softmax(logits, dim=1))
