"""Nightly regression: artifact JSONs against the committed baseline; the scheduled workflow calls it."""

import json

import pytest
import yaml

from repro.report.regression import TOLERANCES, compare, main, refresh

from .conftest import ROOT


def _figure(mean=0.5, labeled=100, n=5):
    return {"artifact": "p/fig", "panels": [{"experiment": "e", "series": [
        {"label": "random", "points": [{"stage": 0, "labeled": labeled, "n": n, "mean": mean}]}]}]}


def _write(root, name, obj):
    path = root / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _reports(tmp_path, fig, audit_verdict="reproduced"):
    rep = tmp_path / "reports"
    _write(rep, "p/fig", fig)
    _write(rep, "audit", {"claims": [{"id": "c1", "verdict": audit_verdict}]})
    return rep


def test_same_results_pass_and_changes_fail(tmp_path, capsys):
    rep = _reports(tmp_path, _figure())
    refresh(rep, rep / "baseline")
    assert all(r["status"] == "ok" for r in compare(rep, rep / "baseline"))
    assert main(str(rep), str(rep / "baseline")) == 0
    cases = [
        (_figure(mean=0.5 - 2 * TOLERANCES["accuracy"]), "reproduced", "regression"),
        (_figure(mean=0.5 + 2 * TOLERANCES["accuracy"]), "reproduced", "changed"),  # a changed default, upward
        (_figure(labeled=120), "reproduced", "changed"),  # a changed schedule
        (_figure(n=2), "reproduced", "changed"),  # fewer seeds
        (_figure(mean=0.5 + TOLERANCES["accuracy"] / 2), "reproduced", None),  # CPU-type noise passes
        (_figure(), "deviates", "regression"),  # a reproduced claim lost
    ]
    for fig, verdict, status in cases:
        cur = _reports(tmp_path / "cur", fig, verdict)
        (cur / "baseline").mkdir(exist_ok=True)
        rows = compare(cur, rep / "baseline")
        bad = [r["status"] for r in rows if r["status"] != "ok"]
        assert (bad == [status]) if status else not bad, (fig, verdict, bad)
        assert main(str(cur), str(rep / "baseline")) == (1 if status else 0)
    (tmp_path / "cur" / "reports" / "p" / "fig.json").unlink()
    assert any(r["status"] == "missing in current" for r in compare(tmp_path / "cur" / "reports", rep / "baseline"))
    assert "REGRESSION" in capsys.readouterr().out


def test_missing_baseline_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="regress --refresh"):
        compare(tmp_path, tmp_path / "nope")


def test_committed_baseline_covers_every_artifact_and_the_audit():
    from repro.experiments import ARTIFACTS

    base = ROOT / "reports" / "baseline"
    for key in ARTIFACTS:
        data = json.loads((base / f"{key}.json").read_text())
        assert data["profile"] == "smoke" and data["artifact"] == key
    audit = json.loads((base / "audit.json").read_text())
    assert audit["summary"]["profile"] == "smoke" and audit["claims"]


def test_nightly_workflow_runs_the_nightly_session_and_uploads_reports():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert on["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # every night
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "python3 -m pip install nox" in runs and "nox -s nightly" in runs
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload and upload[0]["with"]["path"].rstrip("/") == "reports" and upload[0]["if"] == "always()"
    nox_src = (ROOT / "noxfile.py").read_text()
    assert "def nightly(" in nox_src and '"regress"' in nox_src
