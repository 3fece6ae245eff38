"""Core-set as DAL ran it: Sener & Savarese's robust k-center MIP, initialised by the greedy solution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repro.al.kcenter_mip import default_outliers, robust_kcenter
from repro.al.strategies.base import QueryContext, ScoreOptions, register
from repro.al.strategies.coreset import CoresetStrategy
from repro.spec.schema import Float, Int, Optional, spec


@dataclass(frozen=True, kw_only=True)
class CoresetRobustOptions(ScoreOptions):
    # Xi: points that may stay uncovered; None = N // 10000 (DAL's CoreSetMIP), N = labeled + candidates
    outliers: int | None = spec(Optional(Int(0)), None)
    time_limit: float = spec(Float(0.0, 86_400.0, lo_open=True), 60.0)  # seconds per MIP solve (DAL: 180)
    total_time_limit: float = spec(Float(0.0, 86_400.0, lo_open=True), 600.0)  # seconds for the whole search
    tolerance: float = spec(Float(0.0, 1.0), 1e-3)  # stop when hi - lo <= tolerance * hi (0: exact search)


@register("coreset-robust")
class CoresetRobustStrategy(CoresetStrategy):
    """Sener & Savarese 2018, Sec. 4.2 / Alg. 2 (robust k-center, Feasible(b, s0, delta, Xi)) as DAL's
    CoreSetMIP used it: greedy k-center (Alg. 1) bounds a binary search on delta, each feasibility MIP is
    solved by HiGHS (`scipy.optimize.milp`) on the sparse pairs within delta, and the last feasible solution's
    new centers are queried; if no MIP solution is found in time the greedy picks are queried (`last_info`
    says so). Features: the task model's penultimate layer, like `coreset`; `subset: M` restricts the
    unlabeled side."""

    Options = CoresetRobustOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.last_info: dict = {}

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        idx, features, mask = self.pool_features(ctx, budget)
        o = self.options
        outliers = default_outliers(len(idx)) if o.outliers is None else o.outliers
        picks, self.last_info = robust_kcenter(features, mask, budget, outliers, time_limit=o.time_limit,
                                               total_time_limit=o.total_time_limit, tolerance=o.tolerance)
        return idx[picks].astype(np.int64)
