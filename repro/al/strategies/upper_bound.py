"""The full-data reference ("upper bound"): the task model trained on the whole labeled training set, no
acquisition. MCDAL Sec. 4.1 ("using 100% of the labeled dataset gives 94.51% accuracy") and DAAL Fig. 3's U.B.
Its experiment has one stage covering the pool (checked when params load); asking it to query is a bug."""

from __future__ import annotations

import numpy as np

from repro.al.strategies.base import QueryContext, Strategy, register


@register("upper-bound")
class UpperBoundStrategy(Strategy):
    tasks = ("classification", "segmentation", "detection")
    full_pool = True

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        raise RuntimeError("upper-bound trains on the whole pool in one stage and never queries; give its "
                           "experiment the schedule initial_fraction = final_fraction = 1.0")
