"""Claims registry schema and the audit's verdict rules, on records the tests make."""

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from repro.al.methods import load_params, parse_params
from repro.report import numeric_claims
from repro.report.audit import audit, render_markdown
from repro.report.claims import RegistryError, load_registries, validate_registry
from repro.report.runs import paired_differences, resolve_groups, stages_frame
from repro.spec.fingerprint import raw_run_hash
from repro.spec.runs import RecordError, check_pool_identity, load_records
from repro.tools import params_table

from .conftest import ROOT, tiny_params

PAPERS = ROOT.parent / "shared" / "papers"
PAPER_FILES = {"mcdal": "000_", "ads": "001_", "daal": "002_", "mal": "003_", "dal": "004_"}


def test_registries_validate_and_cover_the_kinds():
    regs = load_registries(ROOT / "paper_tables")
    assert set(regs) == {"dal", "ads", "mcdal", "daal", "mal"}
    assert {"value", "difference", "ratio"} <= {c["kind"] for r in regs.values() for c in r["claims"]}
    dal = regs["dal"]
    assert len(dal["claims"]) >= 15
    kinds = {c["kind"] for c in dal["claims"]}
    assert {"ordering", "parity", "similarity", "dissimilarity", "not_better"} <= kinds


def test_code_differences_name_runnable_variants():
    """Every paper-vs-code difference names the method or params.yaml variant that runs the code's reading."""
    from repro.al.strategies import STRATEGIES

    params = load_params(ROOT / "params.yaml", "paper")
    runnable = set(STRATEGIES) | {n for n, _ in params.variants}
    for paper, reg in load_registries(ROOT / "paper_tables").items():
        assert reg["code_differences"], paper
        for d in reg["code_differences"]:
            assert d["variant"] is None or d["variant"] in runnable, (paper, d["what"], d["variant"])


def test_claims_name_built_methods_or_planned_experiments():
    """A claim on a built experiment names methods/groups that experiment runs; one on an experiment not built
    yet is named <paper>_<artifact>[_<panel>] (the audit says `not built yet`)."""
    params = load_params(ROOT / "params.yaml", "paper")
    exps = dict(params.experiments)
    for paper, reg in load_registries(ROOT / "paper_tables").items():
        groups = reg["protocol"]["groups"] or {}
        for c in reg["claims"]:
            pairs = [(n, e) for cmp in c.get("comparisons", []) for e in cmp["experiments"] for n in cmp["better"] + [cmp["than"]]]
            pairs += [(n, e) for e in c.get("experiments", []) for n in c.get("methods", [])]
            if (c.get("evidence") or {}).get("experiment"):
                pairs.append((c["evidence"]["method"], c["evidence"]["experiment"]))
            for name, e in pairs:
                parts = e.split("+")  # "a+b": a panel joining experiments that share the initial pools
                if any(p not in exps for p in parts):
                    assert all(re.fullmatch(rf"{paper}_[a-z0-9_]+", p) for p in parts), (c["id"], e)
                    continue
                members = groups.get(name, [name])
                assert any(m in exps[p].methods for p in parts for m in members), (c["id"], name, e)


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the paper texts are not beside the project (../shared/papers)")
def test_quotes_are_verbatim():
    """Claims' quotes, stated hyper-parameters' quotes and skipped snippets all occur in the paper text."""
    from repro.report.completeness import snippets

    for paper, reg in load_registries(ROOT / "paper_tables").items():
        text = " ".join(next(PAPERS.glob(f"{PAPER_FILES[paper]}*.txt")).read_text().split())
        missing = [s[:100] for s in snippets(reg) if s not in text]
        assert not missing, f"{paper}: not verbatim in the paper: {missing}"


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the paper texts are not beside the project (../shared/papers)")
@pytest.mark.parametrize("paper", sorted(PAPER_FILES))
def test_every_number_of_the_paper_is_registered_or_skipped(paper):
    """Completeness: each number the text states (outside the references; figure/table/equation/section
    references and citations aside) lies inside a claim's quote, a stated hyper-parameter or a skipped snippet."""
    from repro.report.completeness import paper_text, uncovered

    path = ROOT / "paper_tables" / f"{paper}.yaml"
    assert path.is_file(), f"paper_tables/{paper}.yaml is missing"
    missing = uncovered(paper_text(PAPERS, paper), yaml.safe_load(path.read_text()))
    assert not missing, f"{paper}: {len(missing)} numbers neither claimed nor skipped, e.g. " + "; ".join(
        f"{n!r} in ...{c}..." for n, c in missing[:5])


def test_registry_errors_name_the_claim():
    reg = yaml.safe_load((ROOT / "paper_tables" / "dal.yaml").read_text())
    cases = [
        (lambda c: c[0].pop("quote"), r"claims\[0\]: missing 'quote'"),
        (lambda c: c[1].update(kind="vibes"), "kind must be one of"),
        (lambda c: c[2].update(id=c[0]["id"]), "duplicate id"),
        (lambda c: c[0].pop("require"), "needs require"),
        (lambda c: c[0].pop("stages"), "needs stages"),
        (lambda c: c[1].pop("margin"), "needs a positive equivalence margin"),
        (lambda c: c[1].update(margin=0), "needs a positive equivalence margin"),
        (lambda c: c[1].update(margin=float("nan")), "needs a positive equivalence margin"),
        (lambda c: c[0].update(margin=0.01), "an ordering has no margin"),
        (lambda c: c[0]["comparisons"][0].update(better=[]), "non-empty lists"),
        (lambda c: c[0]["comparisons"][0].update(experiments=[]), "non-empty lists"),
        (lambda c: c[0].update(comparisons=[]), "needs comparisons"),
    ]
    for mutate, message in cases:
        bad = copy.deepcopy(reg)
        mutate(bad["claims"])
        with pytest.raises(RegistryError, match=message):
            validate_registry(bad, "dal.yaml")
    bad = copy.deepcopy(reg)
    sim = next(c for c in bad["claims"] if c["kind"] == "similarity")
    sim.pop("threshold_reason")
    with pytest.raises(RegistryError, match="threshold_reason"):
        validate_registry(bad, "dal.yaml")
    bad = copy.deepcopy(reg)
    bad["code_differences"][0]["variant"] = None
    with pytest.raises(RegistryError, match="why_no_variant"):
        validate_registry(bad, "dal.yaml")


def _write_runs(tmp_path, params, effects: dict, seeds=(0, 1, 2, 3, 4), noise=0.002, pools=None,
                classes=None, experiment="tiny", queries_of=None, commits=None):
    """Valid records of `experiment`: value = 0.5 + 0.05 * stage + effect[method] (+ noise) after stage 0; an
    effect may be (effect, noise). `queries_of`: {method: other} makes a method query exactly as another did."""
    rng = np.random.default_rng(0)
    exp = params.experiment(experiment)
    counts = exp.schedule.labeled_counts(exp.pool_size())
    for m, eff in effects.items():
        eff, sd = eff if isinstance(eff, tuple) else (eff, noise)
        q = (queries_of or {}).get(m, m)
        for s in seeds:
            stages = [{"stage": k, "labeled": n, "labeled_fraction": n / exp.pool_size(), "metric": "accuracy",
                       "value": 0.5 + 0.05 * k + (eff + rng.normal(0, sd) if k else 0.0),
                       "labeled_sha256": f"{q}-{s}-{k}" if k else f"p{s}",
                       "selected_classes": (classes or {}).get(m, [1] * 10)} for k, n in enumerate(counts)]
            rec = {"experiment": experiment, "method": m, "seed": s, "dataset": exp.dataset, "pool_size": exp.pool_size(),
                   "test_size": 100, "initial_pool_sha256": (pools or {}).get((m, s), f"p{s}"), "stages": stages,
                   "provenance": {"git": {"commit": (commits or {}).get((m, s), "abc")},
                                  "params_sha256": raw_run_hash(params, experiment, m),
                                  "params_raw_sha256": raw_run_hash(params, experiment, m)}}
            path = Path(params.results_dir) / experiment / m / f"seed{s}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))


def _registry(tmp_path, claims, groups=None):
    reg = {"paper": "dal", "title": "t", "claims": claims, "protocol": {"groups": groups or {}}, "code_differences": []}
    (tmp_path / "tables").mkdir(exist_ok=True)
    (tmp_path / "tables" / "x.yaml").write_text(yaml.safe_dump(reg))
    return tmp_path / "tables"


def _claim(i, kind, **kw):
    base = {"id": f"c{i}", "where": "Sec. 1", "quote": "a quote from the paper", "kind": kind,
            "setting": {"dataset": "d", "model": "m", "methods": []}}
    if kind in ("ordering", "not_better", "parity"):
        base.update(stages="after_first", require="every")
    if kind in ("not_better", "parity"):
        base["margin"] = 0.01
    if kind in ("similarity", "dissimilarity"):
        base["threshold_reason"] = "a threshold for the test"
    return {**base, **kw}


def _params(tmp_path, methods, seeds=(0, 1, 2, 3, 4), dataset="cifar10"):
    """The tiny experiment on the claim's own dataset name (records are written by the test, nothing is loaded)."""
    return parse_params(tiny_params(tmp_path, methods=methods, seeds=list(seeds), dataset=dataset))


def test_audit_verdicts_follow_the_rules(tmp_path):
    methods = ["random", "entropy", "least-confidence", "margin", "egl", "coreset"]
    params = _params(tmp_path, methods)
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05, "least-confidence": 0.03, "margin": 0.0005,
                                   "egl": (0.01, 0.05), "coreset": (0.0, 0.0)}, queries_of={"coreset": "random"})
    groups = {"Uncertainty": ["least-confidence", "entropy"]}
    tables = _registry(tmp_path, [
        _claim(1, "ordering", comparisons=[{"better": ["Uncertainty", "least-confidence"], "than": "random", "experiments": ["tiny"]}]),
        _claim(2, "ordering", comparisons=[{"better": ["random"], "than": "entropy", "experiments": ["tiny"]}]),
        _claim(3, "parity", methods=["random", "margin"], experiments=["tiny"]),
        _claim(4, "parity", methods=["random", "entropy"], experiments=["tiny"]),
        _claim(5, "not_better", comparisons=[{"better": ["margin"], "than": "random", "experiments": ["tiny"]}]),
        _claim(6, "ordering", comparisons=[{"better": ["entropy"], "than": "random", "experiments": ["absent_exp"]}]),
        _claim(7, "similarity", rankings="nope", pair=["a", "b"], min_rho=0.7),
        _claim(8, "not_better", comparisons=[{"better": ["entropy"], "than": "random", "experiments": ["tiny"]}]),
        _claim(9, "parity", methods=["entropy", "random", "margin"], reference="random", experiments=["tiny"]),
        _claim(10, "dissimilarity", rankings="nope", pair=["a", "b"], max_abs_rho=0.3, note="a | in a note"),
        _claim(11, "ordering", comparisons=[{"better": ["egl"], "than": "random", "experiments": ["tiny"]}]),
        _claim(12, "ordering", comparisons=[{"better": ["coreset"], "than": "random", "experiments": ["tiny"]}]),
    ], groups)
    result = audit(params, tables)
    v = {r["id"]: r for r in result["claims"]}
    assert v["c1"]["verdict"] == "reproduced" and v["c1"]["n_seeds"] == 5
    group_row = v["c1"]["evidence"][0]
    assert group_row["better"] == "Uncertainty" and group_row["mode"] == "any"  # no member chosen on the data
    assert group_row["pairs"] == [("least-confidence", "random"), ("entropy", "random")]
    assert v["c2"]["verdict"] == "contradicted"
    assert v["c3"]["verdict"] == "reproduced" and v["c4"]["verdict"] == "contradicted"
    assert v["c5"]["verdict"] == "reproduced" and v["c8"]["verdict"] == "contradicted"
    assert v["c6"]["verdict"] == "not comparable" and "absent_exp" in v["c6"]["reason"]
    assert v["c7"]["verdict"] == "not comparable"
    assert v["c9"]["verdict"] == "contradicted"  # entropy ~ random is contradicted; margin ~ random holds
    assert [e["outcome"] for e in v["c9"]["evidence"]] == ["contradicted", "reproduced"]
    assert v["c11"]["verdict"] == "inconclusive" and "paired seeds to reproduce" in v["c11"]["seeds_needed_text"]
    assert v["c12"]["verdict"] == "not comparable" and "did not differ" in v["c12"]["reason"]
    assert v["c12"]["evidence"][0]["identity"][0]["identical"] == "10/10"
    assert all(r["profile"] == "smoke" for r in result["claims"])
    assert result["summary"]["verdicts"]["smoke"] == {"reproduced": 3, "contradicted": 4, "inconclusive": 1,
                                                      "not comparable": 4}
    assert result["summary"]["label"] == "machinery check" and result["summary"]["judged"] == 8
    assert result["summary"]["contradicted_by_chance"] == pytest.approx(3 * 0.025 + 5 * 0.05, abs=0.0051)
    assert v["c1"]["runs"] and v["c1"]["commits"] == ["abc"] and v["c1"]["protocol"]["tiny"]["dataset"] == "cifar10"
    md = render_markdown(result)
    assert "| `c1`<br>rule: 95% t-interval" in md and "not comparable" in md and "machinery check" in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 12 and all(len(re.findall(r"(?<!\\)\|", line)) == 5 for line in rows)  # 4 cells each


def test_stand_ins_and_mixed_commits_are_not_comparable(tmp_path):
    """A stand-in dataset, another dataset than the paper profile's, or records of two commits carry no verdict
    (the rule's outcome is still shown)."""
    params = _params(tmp_path, ["random", "entropy"], dataset="synthetic-cifar10")
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05})
    tables = _registry(tmp_path, [_claim(1, "ordering", comparisons=[{"better": ["entropy"], "than": "random", "experiments": ["tiny"]}])])
    row = audit(params, tables)["claims"][0]
    assert row["verdict"] == "not comparable" and "stand-in for cifar10" in row["reason"]
    assert row["rule_on_this_evidence"] == "reproduced"
    real = _params(tmp_path / "real", ["random", "entropy"])
    _write_runs(tmp_path, real, {"random": 0.0, "entropy": 0.05}, commits={("entropy", 3): "def"})
    row = audit(real, tables)["claims"][0]
    assert row["verdict"] == "not comparable" and "records from 2 commits" in row["reason"]
    _write_runs(tmp_path, real, {"random": 0.0, "entropy": 0.05})
    assert audit(real, tables)["claims"][0]["verdict"] == "reproduced"
    other = _params(tmp_path / "real", ["random", "entropy"], dataset="cifar100")
    row = audit(real, tables, paper_params=other)["claims"][0]
    assert row["verdict"] == "not comparable" and "not the paper's cifar100" in row["reason"]


def test_no_verdict_below_five_seeds_but_evidence_is_shown(tmp_path):
    params = _params(tmp_path, ["random", "entropy"], seeds=(0, 1, 2, 3))
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05}, seeds=(0, 1, 2, 3))
    tables = _registry(tmp_path, [_claim(1, "ordering", comparisons=[{"better": ["entropy"], "than": "random", "experiments": ["tiny"]}])])
    row = audit(params, tables)["claims"][0]
    assert row["verdict"] == "not comparable" and row["reason"] == "n = 4 paired seeds < 5"
    assert row["rule_on_this_evidence"] == "reproduced" and row["evidence"][0]["per_stage"]
    assert "n = 4 paired seeds < 5 (the rule gives reproduced on this evidence)" in render_markdown(audit(params, tables))


@pytest.mark.parametrize("damage, reason", [
    ("params", "stale, made with other params"),
    ("stages", "incomplete"),
    ("path", "its seed is 3, but its path says 0"),
    ("nan", "NaN"),
])
def test_stale_or_incomplete_records_are_not_comparable(tmp_path, damage, reason):
    params = _params(tmp_path, ["random", "entropy"])
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05})
    path = Path(params.results_dir) / "tiny" / "entropy" / "seed0.json"
    rec = json.loads(path.read_text())
    if damage == "params":
        rec["provenance"]["params_raw_sha256"] = "0" * 64
    elif damage == "stages":
        rec["stages"] = rec["stages"][:-1]
    elif damage == "path":
        rec["seed"] = 3
    else:
        rec["stages"][1]["value"] = float("nan")
    path.write_text(json.dumps(rec))
    tables = _registry(tmp_path, [_claim(1, "ordering", comparisons=[{"better": ["entropy"], "than": "random", "experiments": ["tiny"]}])])
    row = audit(params, tables)["claims"][0]
    assert row["verdict"] == "not comparable" and reason in row["reason"], row["reason"]
    with pytest.raises(RecordError, match=reason):  # the figure stage reads records the same way and stops
        load_records(params.results_dir, "tiny", ["random", "entropy"], [0, 1, 2, 3, 4], params)


def test_pool_identity_is_enforced_within_and_across_experiments(tmp_path):
    params = _params(tmp_path, ["random", "entropy"])
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.0}, pools={("entropy", 1): "other"})
    with pytest.raises(RecordError, match="seed 1: method 'entropy' started from initial pool"):
        load_records(params.results_dir, "tiny", ["random", "entropy"], [0, 1, 2, 3, 4])
    check_pool_identity([])  # nothing to compare is fine
    a = {"experiment": "b10", "method": "random", "seed": 0, "dataset": "mnist", "pool_size": 9, "initial_pool_sha256": "x",
         "stages": [{"labeled": 3}]}
    b = {**a, "experiment": "b100", "initial_pool_sha256": "y"}
    check_pool_identity([a, b])  # different experiments: fine unless asked
    with pytest.raises(RecordError, match="initial pool"):
        check_pool_identity([a, b], across_experiments=True)


def test_query_class_bias_claim_reads_the_selected_classes(tmp_path):
    params = _params(tmp_path, ["random", "egl"])
    _write_runs(tmp_path, params, {"random": 0.0, "egl": 0.0},
                classes={"egl": [16, 1, 1, 1, 1, 0, 0, 0, 0, 0], "random": [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]})
    tables = _registry(tmp_path, [_claim(1, "ordering", metric="query_modal_class_share",
                                         comparisons=[{"better": ["egl"], "than": "random", "experiments": ["tiny"]}])])
    row = audit(params, tables)["claims"][0]
    assert row["verdict"] == "reproduced"
    assert row["evidence"][0]["per_stage"][0]["mean"] == pytest.approx(0.8 - 0.1)


def test_paired_differences_and_group_resolution(tmp_path):
    params = _params(tmp_path, ["entropy", "random"])
    _write_runs(tmp_path, params, {"entropy": 0.1, "random": 0.0}, noise=0.0)
    recs = [json.loads(p.read_text()) for p in sorted(Path(params.results_dir).rglob("*.json"))]
    df = stages_frame(recs)
    diffs = paired_differences(df, "entropy", "random")
    assert [d["stage"] for d in diffs] == [1, 2]  # the shared first stage is left out
    for d in diffs:
        assert d["mean"] == pytest.approx(0.1) and d["ci95"][0] == pytest.approx(0.1) and d["n"] == 5
    # the member drawn for a group is the first listed that ran, never the better one on these seeds
    assert resolve_groups(df, {"G": ["random", "entropy"], "H": ["zzz"]}) == {"G": "random"}


def _numeric(i, kind, value, evidence=None, **kw):
    c = {"id": f"n{i}", "where": "Table 1", "quote": "a quote from the paper", "kind": kind, "value": value,
         "unit": "%", "setting": {"dataset": "d", "model": "m", "methods": [], "labeled": "30%", "metric": "accuracy"}}
    if evidence is not None:
        c["evidence"] = evidence
    return {**c, **kw}


def test_numeric_claims_compare_the_stated_number_with_the_measurement(tmp_path):
    """value / difference / ratio at the claim's labeled amount (not a stage index): the 90% interval of our mean
    (Welch with the paper's std and runs) inside value +- tau; disjoint from the band is contradicted; no evidence,
    a missing experiment or no stage at the stated amount is `not comparable`, never a pass."""
    params = _params(tmp_path, ["random", "entropy"])
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05})  # at 30% (stage 2): 0.60 and 0.65, noise 0.002
    ev = {"experiment": "tiny", "method": "entropy", "labeled_fraction": 0.3, "scale": 100}
    tables = _registry(tmp_path, [
        _numeric(1, "value", 65.0, ev, std=0.3, runs=3),
        _numeric(2, "value", 70.0, ev, std=0.3, runs=3),
        _numeric(3, "value", 70.0, ev, tolerance=6.0),
        _numeric(4, "difference", 5.0, {**ev, "minus": "random"}, unit="points"),
        _numeric(5, "ratio", 0.65 / 0.60, {**ev, "over": "random", "scale": 1}, unit="x", tolerance=0.05),
        _numeric(6, "value", 65.0),
        _numeric(7, "value", 65.0, {**ev, "experiment": "not_built"}),
        _numeric(8, "value", 55.0, {**ev, "labeled_fraction": 0.1}, std=0.5, runs=3),
        _numeric(9, "value", 65.0, {**ev, "labeled_fraction": 0.4}),
        _numeric(10, "value", 65.0, {"experiment": "tiny", "method": "entropy", "labeled": 60, "scale": 100}),
        _numeric(11, "value", 65.9, ev),  # tau = 1 point: the interval straddles the band edge 64.9
    ])
    v = {r["id"]: r for r in audit(params, tables)["claims"]}
    assert v["n1"]["verdict"] == "reproduced" and v["n1"]["evidence"][0]["measured_mean"] == pytest.approx(65, abs=1)
    assert v["n1"]["evidence"][0]["labeled"] == 60 and v["n1"]["evidence"][0]["tolerance"] == 1.0
    assert v["n2"]["verdict"] == "contradicted" and v["n3"]["verdict"] == "reproduced"
    assert v["n4"]["verdict"] == "reproduced" and v["n5"]["verdict"] == "reproduced"
    assert v["n6"]["verdict"] == "not comparable" and "no run of the suite measures it" in v["n6"]["reason"]
    assert v["n7"]["verdict"] == "not comparable" and "not_built" in v["n7"]["reason"]
    assert v["n8"]["verdict"] == "contradicted"  # at 10% it measures 50%
    assert v["n9"]["verdict"] == "not comparable" and "no stage at 40% labeled" in v["n9"]["reason"]
    assert v["n10"]["verdict"] == "reproduced"
    assert v["n11"]["verdict"] == "inconclusive" and v["n11"]["seeds_needed"]["to"] == "reproduce"
    assert all(r["n_seeds"] == 5 for k, r in v.items() if k in ("n1", "n4", "n5"))
    md = render_markdown(audit(params, tables))
    assert "vs paper 65.0 ± 0.3 (runs 3) ± τ 1" in md and "| dal | " in md


def test_numeric_claims_need_value_unit_and_setting():
    base = {"paper": "x", "title": "t", "protocol": {"groups": {}}, "code_differences": []}
    good = _numeric(1, "value", 1.0)
    validate_registry({**base, "claims": [good]}, "x.yaml")
    for broken, msg in ((lambda c: c.pop("value"), "needs value"), (lambda c: c.pop("unit"), "needs unit"),
                        (lambda c: c["setting"].pop("labeled"), "labeled and metric"),
                        (lambda c: c.update(evidence={"experiment": "e", "method": "m", "minus": "r", "labeled_fraction": 0.1}), "minus"),
                        (lambda c: c.update(evidence={"experiment": "e", "method": "m"}), "labeled amount"),
                        (lambda c: c.update(std=-1), "std")):
        c = copy.deepcopy(good)
        broken(c)
        with pytest.raises(RegistryError, match=msg):
            validate_registry({**base, "claims": [c]}, "x.yaml")
    with pytest.raises(RegistryError, match="skipped"):
        validate_registry({**base, "claims": [good], "skipped": [{"text": "1999"}]}, "x.yaml")


def test_completeness_counts_numbers_outside_quotes_and_structure():
    from repro.report.completeness import uncovered

    text = ("Intro. We reach 93.92% at 40% labeled (Fig. 3, Table 2) [12, 31]. We train 200 epochs.\\n"
            "## 4.1 Setup\\nSee Eq. (2) and Sec. 4.2.\\nReferences\\n[1] A. Author. 2019, pp. 1-9.\\n")
    text = text.replace("\\n", "\n")
    reg = {"claims": [{"quote": "We reach 93.92% at 40% labeled"}],
           "protocol": {"hyperparameters": []}, "skipped": []}
    assert [n for n, _ in uncovered(text, reg)] == ["200"]
    reg["skipped"] = [{"text": "We train 200 epochs.", "reason": "a hyper-parameter"}]
    assert uncovered(text, reg) == []


def test_protocol_drift_and_code_differences(tmp_path):
    """Stated hyper-parameters beside the paper profile's values; a code difference's variant measured beside
    the method it varies when one experiment ran both."""
    raw = tiny_params(tmp_path, methods=["mcdal", "mcdal-code"], seeds=[0, 1, 2, 3, 4])
    params = parse_params(raw)
    _write_runs(tmp_path, params, {"mcdal": 0.0, "mcdal-code": 0.02})
    tables = _registry(tmp_path, [_claim(1, "ordering", comparisons=[
        {"better": ["mcdal"], "than": "mcdal-code", "experiments": ["tiny"]}])])
    reg = yaml.safe_load((tables / "x.yaml").read_text())
    reg["protocol"]["hyperparameters"] = [
        {"name": "epochs", "value": 2, "quote": "q", "params_key": "recipes.tiny.epochs"},
        {"name": "lr", "value": 0.1, "quote": "q", "params_key": "recipes.tiny.lr", "note": "smaller on purpose"},
        {"name": "budget", "value": 7, "quote": "q", "params_key": "experiments.absent.schedule.query_size"},
        {"name": "runs", "value": 5, "quote": "q"}]
    reg["code_differences"] = [{"what": "w", "paper": "p", "code": "c", "suite": "s", "variant": "mcdal-code"},
                               {"what": "w2", "paper": "p", "code": "c", "suite": "s", "variant": None,
                                "why_no_variant": "an artefact"}]
    (tables / "x.yaml").write_text(yaml.safe_dump(reg))
    result = audit(params, tables, paper_params=params)
    drift = {d["name"]: d for d in result["protocol_drift"]}
    assert drift["epochs"]["status"] == "matches" and drift["lr"]["status"] == "differs"
    assert drift["lr"]["ours"] == 0.05 and drift["lr"]["reason"] == "smaller on purpose"
    assert "not built yet" in drift["budget"]["status"] and "no params key" in drift["runs"]["status"]
    effects = [d["effect"] for d in result["code_differences"]]
    m = re.match(r"tiny, last stage: mcdal-code - mcdal = \+([0-9.]+) points \(n = 5\)", effects[0])
    assert m and float(m.group(1)) == pytest.approx(2.0, abs=0.1), effects[0]
    assert effects[1] == "no variant: an artefact"
    md = render_markdown(result)
    assert "## Protocol drift" in md and "differs — smaller on purpose" in md and "## Paper vs official code" in md


def test_parameter_count_claims_are_judged_exactly(tmp_path):
    """A printed parameter count against `python -m repro params`: deterministic, no seed rule."""
    params = _params(tmp_path, ["random"])
    ev = {"parameters": {"method": "mcdal", "setting": "CIFAR-10, ResNet-18", "module": "total"}}
    tables = _registry(tmp_path, [
        _numeric(1, "value", 11_190_000, ev, unit="parameters", tolerance=5000),   # MCDAL Table 1: 11.19M
        _numeric(2, "value", 11_180_000, ev, unit="parameters", tolerance=5000),
        _numeric(3, "value", 1.0, {"parameters": {**ev["parameters"], "module": "nope"}}, unit="parameters")])
    before = {r["id"]: r for r in audit(params, tables)["claims"]}  # the `parameters` stage has not run
    assert before["n1"]["verdict"] == "not comparable" and "repro params --json" in before["n1"]["reason"]
    numeric_claims._PARAMETER_ROWS = None
    params_table.main(json_out=str(Path(params.reports_dir) / "parameters.json"))
    v = {r["id"]: r for r in audit(params, tables)["claims"]}
    numeric_claims._PARAMETER_ROWS = None
    assert v["n1"]["verdict"] == "contradicted" and v["n1"]["evidence"][0]["parameters"] == 11_184_222
    assert v["n2"]["verdict"] == "reproduced" and "no seeds" in v["n2"]["rule"]
    assert v["n3"]["verdict"] == "not comparable"


def test_parity_between_two_groups_needs_one_member_pair(tmp_path):
    """DAL's "Uncertainty ~ DBAL": some member pair within the margin (at alpha / |pairs|), never a member chosen
    on the judged seeds; every pair beyond the margin contradicts it."""
    params = _params(tmp_path, ["random", "entropy", "least-confidence", "margin"])
    _write_runs(tmp_path, params, {"random": 0.0, "entropy": 0.05, "least-confidence": 0.0003, "margin": 0.2})
    groups = {"U": ["entropy", "least-confidence"], "V": ["random", "margin"]}
    tables = _registry(tmp_path, [_claim(1, "parity", methods=["U", "V"], experiments=["tiny"]),
                                  _claim(2, "parity", methods=["U", "margin"], experiments=["tiny"])], groups)
    v = {r["id"]: r for r in audit(params, tables)["claims"]}
    assert v["c1"]["verdict"] == "reproduced" and len(v["c1"]["evidence"][0]["pairs"]) == 4  # least-confidence ~ random
    assert v["c2"]["verdict"] == "contradicted"  # both members >= 15 points from margin
