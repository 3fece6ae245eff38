"""The audit's statistics: four-outcome tests of one unit (one stage x pair x experiment) and their combination
over the k units of a claim.

A unit holds per-seed numbers x_i (paired differences a - b over the seeds that share an initial pool, per-seed
measurements against a stated value, or atanh of per-seed rank correlations) and a band A = (low, high) that the
claim says the true mean lies in. With m the mean, se = sd / sqrt(n) and t quantiles on n - 1 df:

- reproduced:   the data conclude mu > low and mu < high (each one-sided test at alpha_side);
- contradicted: the data conclude mu <= low or mu >= high (one-sided, at alpha_side);
- inconclusive: neither (too few seeds for the observed spread: `seeds_needed` says roughly how many).

Kinds: ordering A = (0, inf), alpha_side = 0.025 (the two-sided 95% t-interval); not_better A = (-inf, delta),
parity A = (-delta, +delta) and stated values A = (v - tau, v + tau): alpha_side = 0.05 (the 90% interval; TOST).

Which interval. The t-interval keeps its error rates on normal differences at any n. On skewed differences a
one-sided t-test errs on one side: at skewness +-1 and n = 5 the 5% one-sided test errs 9.3% of the time (8.8% at
n = 10, 7.5% at n = 20), the 2.5% test 5.6%. The ordering (2.5% per side) stays within 7%, so it keeps the plain
t-interval. The 5% tests (not_better, parity, values, rank correlations) conclude only when Hall's
skewness-corrected t (P. Hall, JRSS B 54:221-228, 1992: the monotone completion of Johnson's 1978 correction)
concludes as well (its skewness estimate capped, `Sample.hall`): at skewness +-1 that holds the error to 6.5%
(n = 5), 6.3% (n = 10) and 5.9% (n = 20), and it is 3.5-4.6% on normal data (tests/test_audit_stats.py simulates
it). The price is power at n = 5: 46% instead of 58% for a true mean one sd inside the band. Johnson's statistic alone is not monotone:
far from the bound its quadratic term flips the sign and refuses an obvious conclusion. Paired: every method of a (experiment, seed) starts from the same initial labeled pool, so seed effects
cancel in the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

MIN_SEEDS = 5  # no verdict on fewer paired seeds
ALPHA = 0.05  # each claim's error rate (two-sided for orderings: 2.5% per side)
SEEDS_CAP = 1000  # seeds_needed beyond this prints "> 1,000"
OUTCOMES = ("reproduced", "contradicted", "inconclusive")


def t_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided `level` t-interval for the mean of `d`: mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n).
    Degenerate (mean, mean) when every value is equal; (nan, nan) for fewer than 2 values."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or not np.isfinite(d).all():
        return (math.nan, math.nan)
    lo, hi = Sample(d).interval((1 - level) / 2)
    return (float(lo), float(hi))


def bootstrap_interval(d: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `d` (seeded), shown beside the t-interval for reference (its
    coverage at 5 seeds is ~85%, so no verdict uses it). (nan, nan) for fewer than 2 values."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or not np.isfinite(d).all():
        return (math.nan, math.nan)
    means = d[np.random.default_rng(seed).integers(0, len(d), (resamples, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


@dataclass
class Sample:
    """Per-seed numbers (the last axis; leading axes batch independent samples, as the simulations do) with the
    standard error of their mean. `extra_var`: a variance added to se^2 (the paper's std^2 / runs in a Welch
    comparison with a stated value) with its df `extra_df`. `sd_floor`: the smallest sd used (1 / test size
    where queries differed but every paired difference is equal)."""

    x: np.ndarray
    sd_floor: float = 0.0
    extra_var: float = 0.0
    extra_df: float = math.inf

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=float)

    @property
    def n(self) -> int:
        return self.x.shape[-1]

    @property
    def mean(self):
        return self.x.mean(-1) if self.n else np.full(self.x.shape[:-1], math.nan)

    @property
    def sd(self):
        if self.n < 2:
            return np.full(self.x.shape[:-1], math.nan)
        return np.maximum(self.x.std(-1, ddof=1), self.sd_floor)

    def se_df(self, n: int | None = None):
        """(se, Welch-Satterthwaite df) of the mean; `n` replaces the seed count (for seeds_needed)."""
        n = self.n if n is None else n
        v1 = self.sd**2 / n
        se2 = v1 + self.extra_var
        if self.extra_var == 0:
            df = np.full(np.shape(se2), n - 1.0)
        else:
            tail = 0.0 if not math.isfinite(self.extra_df) else self.extra_var**2 / self.extra_df
            with np.errstate(divide="ignore", invalid="ignore"):
                df = se2**2 / (v1**2 / (n - 1) + tail)
        return np.sqrt(se2), df

    def interval(self, alpha_side: float):
        """mean -/+ t_{1 - alpha_side, df} se."""
        se, df = self.se_df()
        half = stats.t.ppf(1 - alpha_side, df) * se
        return (self.mean - half, self.mean + half)

    def hall(self, mu0: float, q: float | np.ndarray = math.inf):
        """Hall's (1992) skewness-corrected, monotone transformation of the t statistic u = (m - mu0) / se for
        H0: mean = mu0: u + g u^2 / (3 sqrt(n)) + g^2 u^3 / (27 n) + g / (6 sqrt(n)), g = k3 / s^3 the sample
        skewness (unbiased k3; 0 below 3 seeds), capped at |g| <= sqrt(n) / (1.1 q) for the critical value q: the
        transformation is monotone in mu0 (its derivative is (1 + g u / (3 sqrt(n)))^2, so it inverts to an interval,
        which Johnson's 1978 statistic, that it completes, does not) but flat at u = -3 sqrt(n) / g, where it
        equals sqrt(n) / |g|; the cap keeps that plateau above q, so a far-away bound is always concluded."""
        n, m, s = self.n, self.mean, self.sd
        se = self.se_df()[0]
        k3 = (((self.x - m[..., None]) ** 3).sum(-1) * n / ((n - 1) * (n - 2)) if n > 2 else np.zeros_like(m))
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = math.sqrt(n) / (1.1 * q)
            g = np.clip(np.where(s > 0, k3 / s**3, 0.0), -cap, cap)
            u = (m - mu0) / se
            r = math.sqrt(n)
            h = u + g * u**2 / (3 * r) + g**2 * u**3 / (27 * n) + g / (6 * r)
            return np.where(se > 0, h, np.where(m == mu0, 0.0, np.sign(m - mu0) * np.inf))

    def concludes_above(self, bound: float, alpha_side: float, robust: bool, inclusive: bool = False):
        """The data conclude mean > bound (mean >= bound with `inclusive`: a contradiction at the band's edge)."""
        lo, _ = self.interval(alpha_side)
        ok = lo >= bound if inclusive else lo > bound
        if robust:
            q = stats.t.ppf(1 - alpha_side, self.se_df()[1])
            ok = ok & ((self.hall(bound, q) > q) | (self.se_df()[0] == 0))  # se 0: the interval is exact
        return ok

    def concludes_below(self, bound: float, alpha_side: float, robust: bool, inclusive: bool = False):
        _, hi = self.interval(alpha_side)
        ok = hi <= bound if inclusive else hi < bound
        if robust:
            q = stats.t.ppf(1 - alpha_side, self.se_df()[1])
            ok = ok & ((self.hall(bound, q) < -q) | (self.se_df()[0] == 0))
        return ok


REPRODUCED, CONTRADICTED, INCONCLUSIVE = 0, 1, 2  # outcome codes (index into OUTCOMES)


@dataclass
class Band:
    """Where the claim puts the true mean: (low, high), either end infinite; the one-sided level of each test and
    whether Hall's correction must agree (module docstring)."""

    low: float
    high: float
    alpha_side: float
    robust: bool

    def codes(self, s: Sample, alpha_scale: float = 1.0) -> np.ndarray:
        """Outcome codes, one per sample of the batch."""
        a = self.alpha_side * alpha_scale
        shape = s.x.shape[:-1]
        up = s.concludes_above(self.low, a, self.robust) if math.isfinite(self.low) else np.ones(shape, bool)
        down = s.concludes_below(self.high, a, self.robust) if math.isfinite(self.high) else np.ones(shape, bool)
        bad = np.zeros(shape, bool)
        if math.isfinite(self.low):
            bad |= s.concludes_below(self.low, a, self.robust, inclusive=True)
        if math.isfinite(self.high):
            bad |= s.concludes_above(self.high, a, self.robust, inclusive=True)
        return np.where(up & down, REPRODUCED, np.where(bad, CONTRADICTED, INCONCLUSIVE))

    def outcome(self, s: Sample, alpha_scale: float = 1.0) -> str:
        return OUTCOMES[int(self.codes(s, alpha_scale))]

    def seeds_needed(self, s: Sample, alpha_scale: float = 1.0) -> dict:
        """Rough: the paired seeds at which the observed mean and sd would reach a verdict (t-interval only).
        {"to": "reproduce" | "contradict", "n": int | None (None: > SEEDS_CAP)} or {"to": None} when the estimate
        sits on a boundary (undecidable at the observed mean)."""
        m, a = float(s.mean), self.alpha_side * alpha_scale
        if m > self.low and m < self.high:
            to, dist = "reproduce", min(m - self.low, self.high - m)
        else:
            to, dist = "contradict", (self.low - m) if m <= self.low else (m - self.high)
        if not dist > 0 or s.n < 2 or not np.isfinite(s.sd):
            return {"to": None}
        if s.extra_var and math.sqrt(s.extra_var) * float(stats.norm.ppf(1 - a)) >= dist:
            return {"to": to, "n": None}  # the paper's own uncertainty alone is wider: no seed count decides
        for n in range(max(s.n, 2), SEEDS_CAP + 1):
            se, df = s.se_df(n)
            if float(stats.t.ppf(1 - a, df)) * float(se) < dist:
                return {"to": to, "n": n}
        return {"to": to, "n": None}


def band_for(kind: str, margin: float | None = None) -> Band:
    """The band of a paired-difference unit (ordering, not_better, parity)."""
    if kind == "ordering":
        return Band(0.0, math.inf, ALPHA / 2, robust=False)
    if margin is None or not margin > 0:
        raise ValueError(f"{kind} needs a positive margin")
    if kind == "not_better":
        return Band(-math.inf, margin, ALPHA, robust=True)
    if kind == "parity":
        return Band(-margin, margin, ALPHA, robust=True)
    raise ValueError(f"unknown kind {kind!r}")


@dataclass
class Unit:
    """One stage x pair x experiment (or a stated value, or a ranking pair). A unit over a group holds one Sample
    per member: `mode` "all" (the claim holds for every member: X beats the group) or "any" (for one member: the
    group beats X)."""

    band: Band
    samples: list[Sample]
    mode: str = "all"
    info: dict = field(default_factory=dict)

    def outcome(self, alpha_scale: float = 1.0) -> str:
        if len(self.samples) == 1:
            return self.band.outcome(self.samples[0], alpha_scale)
        g = len(self.samples)
        if self.mode == "all":  # reproduced: every member at alpha; contradicted: one member at alpha / |G|
            if all(self.band.outcome(s, alpha_scale) == "reproduced" for s in self.samples):
                return "reproduced"
            if any(self.band.outcome(s, alpha_scale / g) == "contradicted" for s in self.samples):
                return "contradicted"
            return "inconclusive"
        if any(self.band.outcome(s, alpha_scale / g) == "reproduced" for s in self.samples):
            return "reproduced"
        if all(self.band.outcome(s, alpha_scale) == "contradicted" for s in self.samples):
            return "contradicted"
        return "inconclusive"

    def seeds_needed(self, alpha_scale: float = 1.0) -> dict:
        needs = [self.band.seeds_needed(s, alpha_scale / (len(self.samples) if self.mode == "any" else 1))
                 for s in self.samples]
        return _worst(needs) if self.mode == "all" else _best(needs)


def _worst(needs: list[dict]) -> dict:
    if any(n["to"] is None for n in needs):
        return {"to": None}
    if any(n["n"] is None for n in needs):
        return next(n for n in needs if n["n"] is None)
    return max(needs, key=lambda n: n["n"])


def _best(needs: list[dict]) -> dict:
    ok = [n for n in needs if n["to"] is not None and n["n"] is not None]
    return min(ok, key=lambda n: n["n"]) if ok else next((n for n in needs if n["to"]), {"to": None})


def claim_outcome(units: list[Unit], require: str = "every", alpha: float = ALPHA) -> str:
    """A claim over k units. every: reproduced iff all k are (each at its level: an intersection-union test);
    contradicted iff one is at alpha / k. majority: reproduced iff more than k / 2 are, each at alpha / k;
    contradicted iff at least ceil(k / 2) are, each at alpha / k. `alpha` scales the units' levels (ALPHA = 1x)."""
    k = len(units)
    if not k:
        raise ValueError("a claim needs at least one unit")
    scale = alpha / ALPHA
    if require == "every":
        if all(u.outcome(scale) == "reproduced" for u in units):
            return "reproduced"
        if any(u.outcome(scale / k) == "contradicted" for u in units):
            return "contradicted"
        return "inconclusive"
    if require == "majority":
        outs = [u.outcome(scale / k) for u in units]
        if outs.count("reproduced") > k / 2:
            return "reproduced"
        if outs.count("contradicted") >= math.ceil(k / 2):
            return "contradicted"
        return "inconclusive"
    raise ValueError(f"unknown requirement {require!r}; allowed: every, majority")


def claim_seeds_needed(units: list[Unit], require: str = "every") -> dict:
    """Rough paired seeds the claim would need at the observed means and spreads: every -> the most any
    undecided unit needs; majority -> the median unit's need (at alpha / k)."""
    k = len(units)
    scale = 1.0 if require == "every" else 1.0 / k
    needs = [u.seeds_needed(scale) for u in units if u.outcome(scale) == "inconclusive"]
    if not needs:
        return {"to": None}
    if require == "every":
        return _worst(needs)
    known = sorted((n for n in needs if n["to"] and n["n"]), key=lambda n: n["n"])
    return known[len(known) // 2] if known else {"to": None}


def describe_seeds_needed(need: dict) -> str:
    if not need or need.get("to") is None:
        return "undecidable at the observed mean (rough)"
    n = f"> {SEEDS_CAP:,}" if need["n"] is None else f"~{need['n']:,}"
    return f"{n} paired seeds to {need['to']} at the observed spread (rough)"


def unit_summary(u: Unit, alpha_scale: float = 1.0) -> dict:
    """The numbers a reader needs for one unit (per member for a group unit)."""
    members = []
    for s in u.samples:
        lo, hi = s.interval(u.band.alpha_side * alpha_scale) if s.n > 1 else (math.nan, math.nan)
        members.append({"n": s.n, "mean": float(s.mean), "sd": float(s.sd), "interval": [float(lo), float(hi)],
                        "level": 1 - 2 * u.band.alpha_side * alpha_scale})
    out = {**u.info, "outcome": u.outcome(alpha_scale), "band": [u.band.low, u.band.high], **members[0]}
    if len(members) > 1:
        out["members"] = members
        out["mode"] = u.mode
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
