"""Claims registry schema and the audit's verdict rules, on records the tests make."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from repro.config import parse_params
from repro.report.audit import audit, render_markdown
from repro.report.claims import RegistryError, load_registries, validate_registry
from repro.report.runs import (
    RecordError,
    check_pool_identity,
    paired_differences,
    resolve_groups,
    stages_frame,
)

from .conftest import ROOT, tiny_params

PAPERS = ROOT.parent / "shared" / "papers"


def test_dal_registry_validates_with_at_least_8_claims():
    reg = load_registries(ROOT / "paper_tables")["dal"]
    assert len(reg["claims"]) >= 8
    assert {"claims", "protocol", "code_differences"} <= set(reg)
    kinds = {c["kind"] for c in reg["claims"]}
    assert {"ordering", "parity", "similarity", "dissimilarity", "not_better"} <= kinds
    assert len(reg["code_differences"]) >= 6


@pytest.mark.skipif(not PAPERS.is_dir(), reason="paper texts not beside the checkout")
def test_dal_quotes_are_verbatim():
    text = " ".join(next(PAPERS.glob("004_*.txt")).read_text().split())
    for claim in load_registries(ROOT / "paper_tables")["dal"]["claims"]:
        assert " ".join(claim["quote"].split()) in text, claim["id"]


def test_registry_errors_name_the_claim():
    reg = yaml.safe_load((ROOT / "paper_tables" / "dal.yaml").read_text())
    bad = copy.deepcopy(reg)
    del bad["claims"][0]["quote"]
    with pytest.raises(RegistryError, match=r"claims\[0\]: missing 'quote'"):
        validate_registry(bad, "dal.yaml")
    bad = copy.deepcopy(reg)
    bad["claims"][1]["kind"] = "vibes"
    with pytest.raises(RegistryError, match="kind must be one of"):
        validate_registry(bad, "dal.yaml")
    bad = copy.deepcopy(reg)
    bad["claims"][2]["id"] = bad["claims"][0]["id"]
    with pytest.raises(RegistryError, match="duplicate id"):
        validate_registry(bad, "dal.yaml")


def _write_runs(tmp_path, effects: dict[str, float], seeds=(0, 1, 2, 3, 4), stages=4, noise=0.002, pools=None):
    """Fake records: value = 0.5 + 0.05 * stage + effect[method] + noise."""
    rng = np.random.default_rng(0)
    for m, eff in effects.items():
        for s in seeds:
            rec = {"experiment": "tiny", "method": m, "seed": s, "initial_pool_sha256": (pools or {}).get((m, s), f"p{s}"),
                   "provenance": {"git": {"commit": "abc"}},
                   "stages": [{"stage": k, "labeled": 10 * (k + 1), "labeled_fraction": 0.1 * (k + 1), "metric": "accuracy",
                               "value": 0.5 + 0.05 * k + (eff if k else 0) + rng.normal(0, noise)} for k in range(stages)]}
            path = tmp_path / "results" / "tiny" / m / f"seed{s}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))


def _registry(tmp_path, claims, groups=None):
    reg = {"paper": "dal", "title": "t", "claims": claims, "protocol": {"groups": groups or {}}, "code_differences": []}
    (tmp_path / "tables").mkdir(exist_ok=True)
    (tmp_path / "tables" / "x.yaml").write_text(yaml.safe_dump(reg))
    return tmp_path / "tables"


def _claim(i, kind, **kw):
    return {"id": f"c{i}", "where": "Sec. 1", "quote": "a quote from the paper", "kind": kind,
            "setting": {"dataset": "d", "model": "m", "methods": []}, **kw}


def test_audit_verdicts_follow_the_rules(tmp_path):
    methods = ["random", "entropy", "least-confidence", "margin"]
    _write_runs(tmp_path, {"random": 0.0, "entropy": 0.05, "least-confidence": 0.03, "margin": 0.0005})
    params = parse_params(tiny_params(tmp_path, methods=methods, seeds=[0, 1, 2, 3, 4]))
    groups = {"Uncertainty": ["least-confidence", "entropy"]}
    tables = _registry(tmp_path, [
        _claim(1, "ordering", comparisons=[{"better": ["Uncertainty", "least-confidence"], "than": "random", "experiments": ["tiny"]}]),
        _claim(2, "ordering", comparisons=[{"better": ["random"], "than": "entropy", "experiments": ["tiny"]}]),
        _claim(3, "parity", methods=["random", "margin"], experiments=["tiny"]),
        _claim(4, "parity", methods=["random", "entropy"], experiments=["tiny"]),
        _claim(5, "not_better", comparisons=[{"better": ["margin"], "than": "random", "experiments": ["tiny"]}]),
        _claim(6, "ordering", comparisons=[{"better": ["entropy"], "than": "random", "experiments": ["absent_exp"]}]),
        _claim(7, "similarity", rankings="nope", pair=["a", "b"], min_rho=0.7),
    ], groups)
    result = audit(params, tables)
    v = {r["id"]: r for r in result["claims"]}
    assert v["c1"]["verdict"] == "reproduced"
    assert v["c1"]["evidence"][0]["better_method"] == "entropy"  # the group's better member
    assert v["c2"]["verdict"] == "deviates"
    assert v["c3"]["verdict"] == "reproduced" and v["c4"]["verdict"] == "deviates"
    assert v["c5"]["verdict"] == "reproduced"
    assert v["c6"]["verdict"] == "not comparable" and "absent_exp" in v["c6"]["reason"]
    assert v["c7"]["verdict"] == "not comparable"
    assert all(r["profile"] == "smoke" for r in result["claims"])
    assert result["summary"]["verdicts"]["smoke"] == {"reproduced": 3, "deviates": 2, "not comparable": 2}
    assert v["c1"]["runs"] and v["c1"]["commits"] == ["abc"]
    md = render_markdown(result)
    assert "| `c1` |" in md and "not comparable" in md


def test_pool_identity_is_enforced(tmp_path):
    _write_runs(tmp_path, {"random": 0.0, "entropy": 0.0}, pools={("entropy", 1): "other"})
    params = parse_params(tiny_params(tmp_path, methods=["random", "entropy"], seeds=[0, 1, 2, 3, 4]))
    from repro.report.runs import load_records

    with pytest.raises(RecordError, match="seed 1: method 'entropy' started from initial pool"):
        load_records(params.results_dir, "tiny", ["random", "entropy"], [0, 1, 2, 3, 4])
    check_pool_identity([])  # nothing to compare is fine


def test_paired_differences_and_group_resolution(tmp_path):
    _write_runs(tmp_path, {"a": 0.1, "b": 0.0}, noise=0.0)
    recs = [json.loads(p.read_text()) for p in sorted(Path(tmp_path / "results").rglob("*.json"))]
    df = stages_frame(recs)
    diffs = paired_differences(df, "a", "b")
    assert [d["stage"] for d in diffs] == [1, 2, 3]  # the shared first stage is left out
    for d in diffs:
        assert d["mean"] == pytest.approx(0.1) and d["ci95"][0] == pytest.approx(0.1) and d["n"] == 5
    assert resolve_groups(df, {"G": ["b", "a"], "H": ["zzz"]}) == {"G": "a"}
