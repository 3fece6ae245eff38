"""Artifacts built from several experiments: panels joining runs that share the initial pools, full-data
reference bands, the registry's stated values as markers, results tables (paper | measured | delta), and the
audit's "a+b" comparisons across the experiments of one figure."""

import json
from pathlib import Path

import pytest

from repro.al.methods import parse_params
from repro.report.audit import audit
from repro.report.curves import build_curve_figure
from repro.report.tables import build_protocol_table, build_results_table
from repro.spec.artifacts import CurveFigure, ProtocolTable, ResultsTable, panel
from repro.spec.runs import RecordError

from .conftest import tiny_params
from .test_audit import _claim, _registry, _write_runs


def _params(tmp_path):
    raw = tiny_params(tmp_path, methods=("random", "entropy"), seeds=[0, 1, 2, 3, 4], dataset="cifar10")
    raw["experiments"]["tiny2"] = {**raw["experiments"]["tiny"], "methods": ["margin"]}
    raw["experiments"]["full"] = {**raw["experiments"]["tiny"], "methods": ["upper-bound"],
                                  "schedule": {"initial_fraction": 1.0, "step_fraction": 0.1, "final_fraction": 1.0}}
    params = parse_params(raw)
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05})
    _write_runs(tmp_path, params, {"margin": 0.03}, experiment="tiny2")
    _write_runs(tmp_path, params, {"upper-bound": 0.0}, experiment="full")
    return params


def _value_claim(i, method, stage, value, experiment="tiny", std=None):
    """A stated value at `stage` of the tiny schedule (10% / 20% / 30% labeled; "last" = 30%)."""
    fraction = {0: 0.1, 1: 0.2, 2: 0.3, "last": 0.3}[stage]
    return _claim(i, "value", value=value, unit="%", std=std,
                  setting={"dataset": "d", "model": "m", "methods": [method], "labeled": "x", "metric": "accuracy"},
                  evidence={"experiment": experiment, "method": method, "labeled_fraction": fraction, "scale": 100})


def test_a_panel_joins_experiments_draws_the_reference_and_the_papers_values(tmp_path):
    params = _params(tmp_path)
    fig = CurveFigure("dal", "figx", (panel("joined", "tiny", ("tiny2", ("margin",)), reference=("full", "upper-bound")),),
                      "a joined panel")
    reg = json.loads(json.dumps({"claims": [_value_claim(1, "entropy", 1, 61.0, std=0.5),
                                            _value_claim(2, "margin", "last", 70.0, experiment="tiny2"),
                                            _value_claim(3, "least-confidence", 1, 50.0)]}))
    png, js = build_curve_figure(params, fig, reg, paper_params=params)
    summary = json.loads(js.read_text())
    (p,) = summary["panels"]
    assert [s["method"] for s in p["series"]] == ["random", "entropy", "margin"]
    assert {s["experiment"] for s in p["series"]} == {"tiny", "tiny2"}
    assert p["reference"]["method"] == "upper-bound" and p["reference"]["n"] == 5 and p["reference"]["labeled"] == 200
    # only claims on drawn series, at the paper profile's labeled amount of their stage, in %
    assert [(c["id"], c["stage"], c["value"], c["std"]) for c in p["claims"]] == [("c1", 1, 61.0, 0.5), ("c2", 2, 70.0, None)]
    assert p["claims"][0]["labeled_fraction"] == pytest.approx(0.2)
    assert png.stat().st_size > 10_000


def test_a_panel_whose_experiments_started_from_other_pools_fails(tmp_path):
    params = _params(tmp_path)
    _write_runs(tmp_path, params, {"margin": 0.03}, experiment="tiny2", pools={("margin", 0): "other"})
    fig = CurveFigure("dal", "figx", (panel("joined", "tiny", "tiny2"),), "t")
    with pytest.raises(RecordError, match="initial pool"):
        build_curve_figure(params, fig)


def test_results_table_sets_paper_beside_measured(tmp_path):
    params = _params(tmp_path)
    art = ResultsTable("dal", "tablex", (("Random", "tiny", "random"), ("Margin", "tiny2", "margin")), "a table")
    reg = {"claims": [_value_claim(1, "margin", 1, 60.0, experiment="tiny2", std=0.4)]}
    js, md = build_results_table(params, art, reg, params)
    summary = json.loads(js.read_text())
    margin = summary["rows"][1]["cells"]
    assert [c["stage"] for c in margin] == [0, 1, 2]
    cell = margin[1]
    assert cell["paper"]["value"] == 60.0 and cell["measured"]["n"] == 5
    assert cell["delta"] == pytest.approx(cell["measured"]["mean"] - 60.0)
    assert cell["measured"]["mean"] == pytest.approx(100 * (0.55 + 0.03), abs=1.0)
    text = md.read_text()
    assert "| row " in text and "measured (mean ± std, n)" in text and "60.00 ± 0.40" in text and "(n=5)" in text
    assert summary["rows"][0]["cells"][1]["paper"] is None  # no claim: measured only


def test_protocol_table_reads_the_registry_and_both_profiles(tmp_path):
    params = _params(tmp_path)
    reg = {"protocol": {"hyperparameters": [
        {"name": "t_classes_train_test", "value": [10, 200, 100], "quote": "q"},
        {"name": "t_initial_budget", "value": [20, 20], "quote": "q"},
        {"name": "t_image_size", "value": 32, "quote": "q"}]}}
    js, md = build_protocol_table(params, ProtocolTable("dal", "t1", (("Tiny", "tiny", "t"),), "t"), reg, params)
    row = json.loads(js.read_text())["rows"][0]
    assert row["paper"] == {"classes": 10, "train": 200, "test": 100, "initial": 20, "budget": 20, "image_size": 32}
    assert row["active"]["initial"] == 20 and row["active"]["budget"] == 20
    assert "| differs" not in md.read_text()  # paper == paper profile on every row


def test_audit_compares_across_the_experiments_of_one_figure(tmp_path):
    params = _params(tmp_path)
    tables = _registry(tmp_path, [
        _claim(1, "ordering", comparisons=[{"better": ["margin"], "than": "random", "experiments": ["tiny+tiny2"]}]),
        _claim(2, "ordering", comparisons=[{"better": ["entropy"], "than": "margin", "experiments": ["tiny+tiny2"]}]),
    ])
    v = {r["id"]: r for r in audit(params, tables)["claims"]}
    assert v["c1"]["verdict"] == "reproduced" and v["c2"]["verdict"] == "reproduced"
    _write_runs(tmp_path, params, {"margin": 0.03}, experiment="tiny2", pools={("margin", 1): "other"})
    v = {r["id"]: r for r in audit(params, tables)["claims"]}
    assert v["c1"]["verdict"] == "not comparable" and "initial pool" in v["c1"]["reason"]


def test_upper_bound_needs_a_single_whole_pool_stage(tmp_path):
    from repro.spec.schema import ConfigError

    raw = tiny_params(tmp_path, methods=("upper-bound",))
    with pytest.raises(ConfigError, match="whole pool"):
        parse_params(raw)
    assert Path(tmp_path).is_dir()
