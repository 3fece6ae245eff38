"""Uncertainty sampling on one deterministic pass of the task model (softmax of its logits)."""

from __future__ import annotations

import numpy as np
import torch

from repro.al import scores
from repro.al.strategies.base import QueryContext, ScoreStrategy, register


class _SoftmaxScore(ScoreStrategy):
    tasks = ("classification", "segmentation")
    pointwise = True
    score_fn = staticmethod(scores.entropy)

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        # dense tasks: the score of every pixel (anchor), averaged per image (the task's reduction)
        return ctx.position_scores(candidates, self.score_fn)


@register("entropy")
class EntropyStrategy(_SoftmaxScore):
    """Max-entropy: top-k of H(p) (DAL Sec. 2 "Uncertainty"; `scores.entropy`)."""

    score_fn = staticmethod(scores.entropy)


@register("least-confidence")
class LeastConfidenceStrategy(_SoftmaxScore):
    """Top-k of 1 - max_c p_c (`scores.least_confidence`; DAL's "variation ratio" on one pass, and what
    DAL's reference code calls "Uncertainty")."""

    score_fn = staticmethod(scores.least_confidence)


@register("margin")
class MarginStrategy(_SoftmaxScore):
    """Top-k of -(p_(1) - p_(2)) (`scores.margin`)."""

    score_fn = staticmethod(scores.margin)
