"""Core-set (Sener & Savarese 2018): exact greedy k-center on the task model's penultimate features (dense
tasks: the final feature map average-pooled per image, our reading: the papers do not say)."""

from __future__ import annotations

import numpy as np
import torch

from repro.al.selection import kcenter_greedy
from repro.al.strategies.base import QueryContext, ScoreOptions, Strategy, register


@register("coreset")
class CoresetStrategy(Strategy):
    """Farthest-first picks (Euclidean, fp32, on the device); `subset: M` restricts the unlabeled side."""

    tasks = ("classification", "segmentation", "detection")
    Options = ScoreOptions

    def pool_features(self, ctx: QueryContext, budget: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(pool indices: labeled then candidates, their penultimate features, the labeled mask over them)."""
        self.check_budget(ctx, budget)
        unlabeled = self.candidates(ctx, budget)
        labeled = ctx.pool.labeled
        idx = np.concatenate([labeled, unlabeled])
        features = ctx.embeddings(idx)  # dense tasks: feature maps pooled per image
        mask = torch.zeros(len(idx), dtype=torch.bool, device=features.device)
        mask[: len(labeled)] = True
        return idx, features, mask

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        idx, features, mask = self.pool_features(ctx, budget)
        picks = kcenter_greedy(features, mask, budget).cpu().numpy()
        return idx[picks].astype(np.int64)
