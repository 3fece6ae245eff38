"""The audit's statistics pinned: coverage of its intervals, their width, strict inequalities, the stage filters
and the rank-correlation judges. Each test fails on a named mutation of the rule it pins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from repro.report.audit import judge_rho
from repro.report.stats import MIN_SEEDS, combine, select_stages, stage_test, t_interval


@pytest.mark.parametrize("n", [5, 20])
@pytest.mark.parametrize("dist", ["normal", "skewed"])
def test_interval_covers_the_true_mean_at_small_and_moderate_n(n, dist):
    """2,000 simulated sets of paired differences: the 95% interval covers the true mean in >= 93% of them.
    (A percentile bootstrap covers ~85% at n = 5; a z-interval ~88%.)"""
    rng = np.random.default_rng(12345 + n)
    draws, true_mean = 2000, 0.02
    if dist == "normal":
        d = rng.normal(true_mean, 0.01, size=(draws, n))
    else:  # accuracy differences are mildly skewed: a centred gamma with skewness 0.5 (at skewness 1.0 the
        # coverage is still 93.4% at n = 5 over 20,000 draws)
        shape, scale = 16.0, 0.005
        d = true_mean + rng.gamma(shape, scale, size=(draws, n)) - shape * scale
    covered = 0
    for row in d:
        lo, hi = t_interval(row, 0.95)
        covered += lo <= true_mean <= hi
    assert covered / draws >= 0.93, covered / draws


def test_interval_width_is_the_t_interval():
    """Against scipy's one-sample t-test interval (an independent implementation): a wrong quantile (z instead
    of t), a wrong standard error (sd / n) or a wrong level changes it."""
    rng = np.random.default_rng(0)
    for n in (2, 5, 20):
        d = rng.normal(0.01, 0.02, n)
        for level in (0.95, 0.90):
            want = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
            assert t_interval(d, level) == pytest.approx((want.low, want.high), rel=1e-9)
    assert np.isnan(t_interval(np.array([0.1]))).all()  # one seed: no interval


def test_ordering_needs_the_interval_strictly_above_zero():
    assert stage_test("ordering", np.zeros(5))["holds"] is False  # interval [0, 0]: not above 0 (">=" fails this)
    assert stage_test("ordering", np.full(5, 1e-9))["holds"] is True
    d = np.array([0.02, 0.03, 0.01, 0.025, 0.015])
    assert stage_test("ordering", d)["holds"] is True
    assert stage_test("ordering", d - d.mean())["holds"] is False


def test_absence_claims_are_equivalence_tests_with_strict_margins():
    # parity: TOST at 5% = the 90% interval inside (-margin, margin), strictly
    assert stage_test("parity", np.full(5, 0.01), 0.01)["holds"] is False
    assert stage_test("parity", np.full(5, 0.0099), 0.01)["holds"] is True
    noisy = np.array([0.03, -0.03, 0.02, -0.02, 0.0])  # mean 0 but too noisy to show equivalence within 1 point
    r = stage_test("parity", noisy, 0.01)
    assert r["ci95"][0] < 0 < r["ci95"][1] and r["holds"] is False  # "CI contains 0" would have passed
    lo, hi = t_interval(noisy, 0.90)
    assert r["ci90"] == pytest.approx([lo, hi])
    # not_better: the one-sided 95% upper bound (upper end of the 90% interval) below +margin
    assert stage_test("not_better", np.full(5, 0.01), 0.01)["holds"] is False
    assert stage_test("not_better", np.full(5, -0.5), 0.01)["holds"] is True  # worse is "not better"
    assert stage_test("not_better", noisy, 0.01)["holds"] is False
    with pytest.raises(ValueError):
        stage_test("parity", noisy, None)


def test_stage_selections():
    assert select_stages([0, 1, 2, 3, 4], "all") == [0, 1, 2, 3, 4]
    assert select_stages([0, 1, 2, 3, 4], "after_first") == [1, 2, 3, 4]
    assert select_stages([0, 1, 2, 3, 4], "first_half_after_first") == [1, 2]
    assert select_stages([0, 1, 2, 3, 4, 5], "first_half_after_first") == [1, 2, 3]
    assert select_stages([0, 1, 2, 3, 4], "first_half") == [0, 1, 2]
    assert select_stages([0, 1, 2, 3], "first_half") == [0, 1]
    assert select_stages([4, 2, 3], "after_first") == [3, 4]  # sorted first
    assert select_stages([0], "after_first") == []


def test_every_and_majority():
    assert combine([True, True], "every") and not combine([True, False], "every")
    assert not combine([True, False], "majority")  # exactly half is not a majority
    assert combine([True, True, False], "majority")
    assert not combine([], "every") and not combine([], "majority")  # no evidence never holds


def test_rank_correlation_judges_read_every_seed():
    sim = {"min_rho": 0.7}
    assert judge_rho("similarity", {0: 0.9, 1: 0.7, 2: 0.8}, sim)
    assert not judge_rho("similarity", {0: 0.95, 1: 0.95, 2: 0.65}, sim)  # mean 0.85 would pass
    dis = {"max_abs_rho": 0.3}
    assert judge_rho("dissimilarity", {0: 0.29, 1: -0.29, 2: 0.0}, dis)
    assert not judge_rho("dissimilarity", {0: 0.0, 1: 0.0, 2: 0.4}, dis)  # one seed correlated (mean 0.13)
    assert not judge_rho("dissimilarity", {0: -0.5, 1: 0.1, 2: 0.1}, dis)  # |rho|, not rho
    assert not judge_rho("dissimilarity", {0: 0.3}, dis)  # "under" the threshold
    assert not judge_rho("similarity", {0: float("nan")}, sim) and not judge_rho("similarity", {}, sim)


def test_minimum_seed_count_is_five():
    assert MIN_SEEDS == 5


def test_first_and_last_stage_selections():
    from repro.report.stats import select_stages

    assert select_stages([0, 1, 2, 3], "first") == [0] and select_stages([0, 1, 2, 3], "last") == [3]


def test_bootstrap_interval_is_reported_beside_the_t_interval():
    from repro.report.stats import bootstrap_interval, stage_test

    d = np.array([0.010, 0.012, 0.008, 0.015, 0.011])
    lo, hi = bootstrap_interval(d)
    assert lo <= d.mean() <= hi and d.min() <= lo and hi <= d.max()
    assert bootstrap_interval(d) == (lo, hi)  # seeded
    out = stage_test("ordering", d)
    assert out["bootstrap_ci95"] == [lo, hi] and out["holds"] == (out["ci95"][0] > 0)  # the verdict: t-interval
    assert all(np.isnan(bootstrap_interval(d[:1])))
