"""The audit's statistics: t-intervals on paired differences over seeds, and the per-stage tests of each claim kind.

Why a t-interval: a percentile bootstrap over 5 seeds covers the true mean far less often than it says (its
quantiles come from at most 5 distinct values); the t-interval on paired differences has its stated coverage
for normal differences at any n and stays close to it for the mildly skewed accuracy differences seen here
(tests/test_audit_stats.py simulates it). Paired: every method of a (experiment, seed) starts from the same
initial labeled pool, so seed effects cancel in the difference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

MIN_SEEDS = 5  # no `reproduced` / `deviates` verdict on fewer paired seeds


def t_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided `level` t-interval for the mean of `d`: mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n).
    Degenerate (mean, mean) when every value is equal; (nan, nan) for fewer than 2 values."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n < 2 or not np.isfinite(d).all():
        return (math.nan, math.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def bootstrap_interval(d: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `d` (seeded). Reported beside the t-interval; the verdict
    uses the t-interval, whose coverage holds at 5 seeds where the percentile bootstrap's does not (module
    docstring). (nan, nan) for fewer than 2 values."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or not np.isfinite(d).all():
        return (math.nan, math.nan)
    means = d[np.random.default_rng(seed).integers(0, len(d), (resamples, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def stage_test(kind: str, d: np.ndarray, margin: float | None = None) -> dict:
    """One stage's evidence for a claim kind, from the paired differences d = a - b over seeds.

    ordering:   the 95% t-interval lies strictly above 0 (a > b).
    not_better: non-superiority: the one-sided 95% upper bound (upper end of the 90% interval) is below
                +margin (a is not better than b by `margin` or more).
    parity:     TOST equivalence at 5%: the 90% interval lies inside (-margin, +margin).
    """
    d = np.asarray(d, dtype=float)
    out = {"n": int(len(d)), "mean": float(d.mean()) if len(d) else math.nan,
           "sd": float(d.std(ddof=1)) if len(d) > 1 else math.nan, "ci95": list(t_interval(d, 0.95)),
           "bootstrap_ci95": list(bootstrap_interval(d, 0.95))}
    if kind == "ordering":
        out["holds"] = bool(out["ci95"][0] > 0)
    elif kind in ("not_better", "parity"):
        if margin is None or not margin > 0:
            raise ValueError(f"{kind} needs a positive margin")
        lo, hi = t_interval(d, 0.90)
        out["ci90"] = [lo, hi]
        out["margin"] = margin
        out["holds"] = bool(hi < margin) if kind == "not_better" else bool(-margin < lo and hi < margin)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return out


def select_stages(stage_ids: list[int], which: str) -> list[int]:
    """The stages a claim is judged on, from the sorted stage numbers present (stage 0 = the initial pool).

    all: every stage; after_first: every stage but the first (where methods share the first stage's labeled
    set and training); first_half: the first ceil(m / 2) of all m stages (the "early iterations");
    first_half_after_first: the first ceil(m / 2) of the m stages after the first; first / last: that stage
    alone (a claim about the initial split, e.g. MAL's gain before any query, or about the final budget).
    """
    ids = sorted(stage_ids)
    later = ids[1:]
    if which == "all":
        return ids
    if which == "after_first":
        return later
    if which == "first_half":
        return ids[: math.ceil(len(ids) / 2)]
    if which == "first_half_after_first":
        return later[: math.ceil(len(later) / 2)]
    if which == "first":
        return ids[:1]
    if which == "last":
        return ids[-1:]
    raise ValueError(f"unknown stage selection {which!r}; allowed: {list(STAGE_SELECTIONS)}")


STAGE_SELECTIONS = ("all", "after_first", "first_half", "first_half_after_first", "first", "last")


def combine(holds: list[bool], require: str) -> bool:
    """every: all selected stages hold; majority: strictly more than half of them. No stage -> False."""
    if not holds:
        return False
    if require == "every":
        return all(holds)
    if require == "majority":
        return sum(holds) > len(holds) / 2
    raise ValueError(f"unknown requirement {require!r}; allowed: every, majority")
