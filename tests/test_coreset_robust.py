"""coreset-robust: the robust k-center MIP (Sener & Savarese 2018, Sec. 4.2 / Alg. 2) against brute force and
the greedy solution; its fallback; the strategy through the project's template."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.al import kcenter_mip
from repro.al.kcenter_mip import default_outliers, robust_kcenter
from repro.al.selection import kcenter_greedy
from repro.al.strategies import STRATEGIES, build_strategy
from repro.spec.schema import ConfigError, build
from tests.test_strategies import trained_context


def radius(x: np.ndarray, centers, outliers: int) -> float:
    """Covering radius of all points by `centers` with the `outliers` farthest dropped (float64 reference)."""
    x = x.astype(np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, np.asarray(centers, dtype=int), :]) ** 2).sum(-1)).min(axis=1)
    d = np.sort(d)
    return float(d[len(d) - 1 - outliers]) if outliers < len(d) else 0.0


def instance(seed: int, n: int, d: int, n_lab: int, kind: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "grid":  # many exact ties and duplicates
        x = rng.integers(0, 3, size=(n, d)).astype(np.float32)
    elif kind == "offset":  # large norms: the fp32 GEMM expansion cancels badly, exact checks must decide
        x = (rng.normal(size=(n, d)) + 1000.0).astype(np.float32)
    elif kind == "clustered":
        x = (rng.normal(size=(n, d)) + rng.normal(scale=6.0, size=(4, d))[rng.integers(0, 4, n)]).astype(np.float32)
    else:
        x = rng.normal(size=(n, d)).astype(np.float32)
    lab = np.zeros(n, dtype=bool)
    lab[rng.choice(n, n_lab, replace=False)] = True
    return x, lab


def solve(x, lab, budget, outliers, **kw):
    return robust_kcenter(torch.from_numpy(x), torch.from_numpy(lab), budget, outliers, tolerance=0.0, **kw)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(4, 12), d=st.integers(1, 3), n_lab=st.integers(0, 2),
       budget=st.integers(1, 3), outliers=st.integers(0, 2), kind=st.sampled_from(["normal", "grid", "clustered", "offset"]))
def test_mip_equals_brute_force_optimum(seed, n, d, n_lab, budget, outliers, kind):
    x, lab = instance(seed, n, d, n_lab, kind)
    labeled, unlabeled = np.flatnonzero(lab), np.flatnonzero(~lab)
    budget = min(budget, len(unlabeled))
    picks, info = solve(x, lab, budget, outliers)
    best = min(radius(x, np.r_[labeled, c], outliers) for c in itertools.combinations(unlabeled, budget))
    got = radius(x, np.r_[labeled, picks], outliers)
    assert got == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert info["optimal"] and not info["fallback"]
    assert info["delta_final"] == pytest.approx(got, rel=1e-9, abs=1e-12)
    assert info["lower_bound"] <= best * (1 + 1e-9) + 1e-12  # the bracket holds the optimum


@pytest.mark.parametrize("seed,n,d,n_lab,budget,outliers,kind", [
    (0, 60, 2, 5, 6, 0, "normal"), (1, 60, 3, 0, 4, 2, "clustered"), (2, 50, 8, 10, 10, 1, "normal"),
    (3, 40, 2, 3, 5, 3, "grid"), (4, 60, 5, 20, 8, 0, "clustered"), (5, 60, 16, 4, 6, 1, "offset"),
])
def test_mip_radius_at_most_greedy(seed, n, d, n_lab, budget, outliers, kind):
    x, lab = instance(seed, n, d, n_lab, kind)
    labeled = np.flatnonzero(lab)
    picks, info = solve(x, lab, budget, outliers)
    greedy = kcenter_greedy(torch.from_numpy(x), torch.from_numpy(lab), budget).numpy()
    r_mip, r_greedy = radius(x, np.r_[labeled, picks], outliers), radius(x, np.r_[labeled, greedy], outliers)
    assert r_mip <= r_greedy * (1 + 1e-12)
    assert info["delta_greedy"] == pytest.approx(r_greedy, rel=1e-9)
    assert info["delta_2opt"] == pytest.approx(radius(x, np.r_[labeled, greedy], 0), rel=1e-9)
    assert info["delta_final"] == pytest.approx(r_mip, rel=1e-9) and info["optimal"]
    assert info["lower_final"] <= info["delta_final"]


def test_outliers_can_take_the_optimum_below_the_papers_lower_bound():
    # two tight clusters and one far point: with one outlier the optimum is far below delta_2OPT / 2
    x = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2], [100.0]], dtype=np.float32)
    lab = np.zeros(7, dtype=bool)
    picks, info = solve(x, lab, 2, 1)
    assert radius(x, picks, 1) == pytest.approx(0.1, rel=1e-5)
    assert info["delta_final"] < info["paper_lower"] and info["lower_bound"] <= 0.1
    assert sorted(picks.tolist()) == [1, 4]


def test_picks_are_budget_distinct_unlabeled_and_deterministic():
    x, lab = instance(7, 60, 4, 12, "clustered")
    a, info = solve(x, lab, 9, 1)
    b, _ = solve(x, lab, 9, 1)
    assert a.dtype == np.int64 and len(a) == 9 and len(set(a.tolist())) == 9
    assert not lab[a].any() and np.array_equal(a, b)
    assert info["mip_solves"] == len(info["solves"]) >= 1 and info["seconds"] > 0


def test_default_outliers_is_dals_n_over_10000():
    assert [default_outliers(n) for n in (99, 9_999, 10_000, 60_000, 30_100)] == [0, 0, 1, 6, 3]
    x, lab = instance(0, 30, 2, 3)
    assert solve(x, lab, 3, None)[1]["outliers"] == 0


def test_budget_out_of_range_is_an_error():
    x, lab = instance(0, 10, 2, 4)
    with pytest.raises(ValueError, match="budget"):
        solve(x, lab, 7, 0)
    with pytest.raises(ValueError, match="budget"):
        solve(x, lab, 0, 0)


def test_solver_failure_falls_back_to_greedy(monkeypatch):
    x, lab = instance(3, 40, 3, 5, "clustered")
    calls = []

    def failing_milp(*args, **kwargs):
        calls.append(kwargs.get("options"))
        return SimpleNamespace(status=1, x=None, message="Time limit reached. (HiGHS Status 13)")

    monkeypatch.setattr(kcenter_mip, "milp", failing_milp)
    picks, info = solve(x, lab, 6, 1, time_limit=1e-6)
    greedy = kcenter_greedy(torch.from_numpy(x), torch.from_numpy(lab), 6).numpy()
    assert np.array_equal(picks, greedy)
    assert calls and calls[0]["time_limit"] == pytest.approx(1e-3)
    assert info["fallback"] and info["source"] == "greedy" and not info["optimal"]
    assert "greedy picks returned" in info["reason"] and info["unresolved"] == info["mip_solves"] >= 1


@pytest.mark.parametrize("kw,why", [({"total_time_limit": 0.0}, "total time limit"), ({"max_pairs": 0}, "max_pairs")])
def test_no_time_or_too_many_pairs_falls_back_to_greedy(kw, why):
    x, lab = instance(5, 40, 3, 5, "clustered")
    picks, info = solve(x, lab, 6, 0, **kw)
    assert np.array_equal(picks, kcenter_greedy(torch.from_numpy(x), torch.from_numpy(lab), 6).numpy())
    assert info["fallback"] and why in info["reason"]


def test_greedy_proved_optimal_is_not_a_fallback():
    x, lab = instance(2, 8, 2, 3)
    picks, info = solve(x, lab, 5, 0)  # every unlabeled point becomes a center: radius 0
    assert sorted(picks.tolist()) == np.flatnonzero(~lab).tolist()
    assert info["optimal"] and not info["fallback"] and info["delta_final"] == 0.0


# --- the strategy ------------------------------------------------------------------------------------------------


def test_registered_with_options():
    cls = STRATEGIES["coreset-robust"]
    opts = build(cls.Options, {"outliers": 2, "time_limit": 5, "subset": 40}, "variants.crk")
    assert (opts.outliers, opts.time_limit, opts.total_time_limit, opts.subset) == (2, 5.0, 600.0, 40)
    with pytest.raises(ConfigError, match="time_limit"):
        build(cls.Options, {"time_limit": 0}, "variants.crk")
    with pytest.raises(ConfigError, match="outliers"):
        build(cls.Options, {"outliers": -1}, "variants.crk")


def test_strategy_query_contract_and_radius():
    strategy, ctx = trained_context("coreset-robust", strategy=build_strategy("coreset-robust"))
    picked = strategy.query(ctx, 12)
    assert picked.dtype == np.int64 and len(set(picked.tolist())) == 12
    assert not set(picked.tolist()) & set(ctx.pool.labeled.tolist())
    info = strategy.last_info
    assert info["outliers"] == 0 and not info["fallback"] and info["delta_final"] <= info["delta_greedy"]
    assert np.array_equal(build_strategy("coreset-robust").query(ctx, 12), picked)
    # against the greedy `coreset` strategy on the same features
    idx = np.concatenate([ctx.pool.labeled, ctx.pool.unlabeled])
    x = ctx.predict(idx)[1].numpy()
    pos = {int(v): k for k, v in enumerate(idx)}
    n_lab = len(ctx.pool.labeled)
    greedy = build_strategy("coreset").query(ctx, 12)
    r_mip = radius(x, list(range(n_lab)) + [pos[int(p)] for p in picked], 0)
    r_greedy = radius(x, list(range(n_lab)) + [pos[int(p)] for p in greedy], 0)
    assert r_mip <= r_greedy * (1 + 1e-9)


def test_strategy_subset_and_fallback_info(monkeypatch):
    strategy = build_strategy("coreset-robust", STRATEGIES["coreset-robust"].Options(subset=25, outliers=1))
    strategy, ctx = trained_context("coreset-robust", strategy=strategy)
    subset = strategy.candidates(ctx, 10)
    picked = strategy.query(ctx, 10)
    assert set(picked.tolist()) <= set(subset.tolist()) and strategy.last_info["outliers"] == 1
    monkeypatch.setattr(kcenter_mip, "milp", lambda *a, **k: SimpleNamespace(status=4, x=None, message="error"))
    strategy.query(ctx, 10)
    assert strategy.last_info["fallback"] and strategy.last_info["source"] == "greedy"
