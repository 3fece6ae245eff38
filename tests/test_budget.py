"""The run plan's cost model: the smoke profile fits the 30-minute budget by design (a test, not luck)."""

import pytest

from repro.al.methods import load_params
from repro.exec import budget

from .conftest import ROOT


def test_smoke_plan_fits_the_budget_and_every_run_is_calibrated():
    params = load_params(ROOT / "params.yaml", "smoke")
    plan = budget.plan(params)
    uncalibrated = {k for r in plan["experiments"].values() for k in r["uncalibrated"]}
    assert not uncalibrated, f"no measured cost for {sorted(uncalibrated)}: run `python -m repro budget --fit` " \
                             "after a smoke `dvc repro`"
    assert set(plan["experiments"]) == {n for n, _ in params.experiments}
    assert plan["total_s"] <= budget.BUDGET_S, budget.describe(plan)


def test_estimate_scales_with_the_recipe_and_the_seeds():
    params = load_params(ROOT / "params.yaml", "smoke")
    name = "mcdal_fig3"
    exp = params.experiment(name)
    costs = {"train_s_per_step": {budget.cost_key(params, name, m): 0.01 for m in exp.methods},
             "query_s_per_example": {budget.cost_key(params, name, m): 0.001 for m in exp.methods}}
    base = budget.estimate(params, name, costs)["seconds"] - budget.STAGE_OVERHEAD_S
    steps = budget.stage_steps(params, name)
    want = len(exp.methods) * len(exp.seeds) * (sum(s for s, _ in steps) * 0.01 + sum(u for _, u in steps[:-1]) * 0.001
                                                 + budget.RUN_FIXED_S)
    want /= budget.REFERENCE_JOBS  # the runs share the cores
    assert base == pytest.approx(want)
    # doubling the epochs doubles the training part
    raw = params.recipe(exp.recipe)
    assert [s for s, _ in steps] == [raw.epochs * raw.epoch_iterations] * len(steps)


def test_a_missing_cost_is_reported_not_guessed():
    params = load_params(ROOT / "params.yaml", "smoke")
    est = budget.estimate(params, "mcdal_fig3", {"train_s_per_step": {}, "query_s_per_example": {}})
    assert len(est["uncalibrated"]) == len(params.experiment("mcdal_fig3").methods)
    assert est["seconds"] == budget.STAGE_OVERHEAD_S
