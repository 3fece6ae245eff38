"""Random sampling: a seeded uniform draw from the unlabeled pool (the baseline of every paper)."""

from __future__ import annotations

import numpy as np

from repro.al.strategies.base import QueryContext, Strategy, register


@register("random")
class RandomStrategy(Strategy):
    tasks = ("classification", "segmentation", "detection")

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        self.check_budget(ctx, budget)
        return ctx.rng("random").choice(ctx.pool.unlabeled, size=budget, replace=False).astype(np.int64)
