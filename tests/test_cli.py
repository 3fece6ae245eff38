"""The commands dvc.yaml calls, end to end on a seconds-long configuration (subprocesses, as DVC runs them)."""

import json
import subprocess
import sys

import yaml

from .conftest import ROOT, tiny_params
from .test_data import write_fake_cifar10


def _repro(params_file, *args):
    return subprocess.run([sys.executable, "-m", "repro", "--params", str(params_file), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def _assert_no_torch(params_file, *argv):
    code = "import sys; from repro.cli import main; rc = main(sys.argv[1:]); sys.exit(3 if 'torch' in sys.modules else rc)"
    proc = subprocess.run([sys.executable, "-c", code, "--params", str(params_file), *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, (argv, proc.returncode, proc.stderr[-2000:])


def test_run_figure_audit_where(tmp_path):
    raw = tiny_params(tmp_path, methods=("random", "entropy"))
    raw["experiments"] = {"mcdal_fig4_cifar100": raw["experiments"]["tiny"]}  # the artifact mcdal/fig4 reads it
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    run = _repro(pfile, "run", "mcdal_fig4_cifar100", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "plan for mcdal_fig4_cifar100: 4 run(s) (0 done, 4 to go)" in run.stdout
    again = _repro(pfile, "run", "mcdal_fig4_cifar100", "--quiet")
    assert "all 4 run(s) already done" in again.stdout  # re-emitted from checkpoints

    fig = _repro(pfile, "figure", "mcdal/fig4")
    assert fig.returncode == 0, fig.stderr
    _assert_no_torch(pfile, "figure", "mcdal/fig4")  # figure stages import no torch (seconds x dozens of stages)
    summary = json.loads((tmp_path / "reports" / "mcdal" / "fig4.json").read_text())
    assert (tmp_path / "reports" / "mcdal" / "fig4.png").stat().st_size > 10_000
    series = {s["method"]: s for s in summary["panels"][0]["series"]}
    assert set(series) == {"random", "entropy"} and len(series["random"]["points"]) == 3
    assert all(p["n"] == 2 for p in series["entropy"]["points"])

    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "mcdal.yaml").write_text(yaml.safe_dump({
        "paper": "mcdal", "title": "t", "protocol": {}, "code_differences": [],
        "claims": [{"id": "m1", "where": "Fig. 3", "quote": "a quote from the paper", "kind": "ordering",
                    "stages": "after_first", "require": "every",
                    "setting": {"dataset": "cifar10", "model": "resnet18", "methods": ["entropy", "random"]},
                    "comparisons": [{"better": ["entropy"], "than": "random", "experiments": ["mcdal_fig4_cifar100"]}]}],
    }))
    audit = _repro(pfile, "audit", "--tables", str(tables))
    assert audit.returncode == 0, audit.stderr
    _assert_no_torch(pfile, "audit", "--tables", str(tables))
    result = json.loads((tmp_path / "reports" / "audit.json").read_text())
    row = result["claims"][0]
    assert row["verdict"] == "not comparable" and "n = 2 paired seeds < 5" in row["reason"] and "stand-in" in row["reason"] and row["profile"] == "smoke"
    assert row["evidence"] and row["rule_on_this_evidence"] in ("reproduced", "contradicted", "inconclusive")
    assert "| `m1`<br>rule:" in (tmp_path / "reports" / "audit.md").read_text()
    one = _repro(pfile, "audit", "--tables", str(tables), "--claim", "m1")
    assert one.returncode == 0 and "m1 (mcdal, Fig. 3, ordering)" in one.stdout and "verdict: not comparable" in one.stdout
    bad = _repro(pfile, "audit", "--tables", str(tables), "--claim", "m2")
    assert bad.returncode == 2 and "no claim 'm2'" in bad.stderr and "did you mean m1" in bad.stderr
    # the runs behind the claim, re-run from scratch in fresh processes with their recorded threads: identical
    rerun = _repro(pfile, "audit", "--tables", str(tables), "--claim", "m1", "--rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "4 of 4 record(s) identical" in rerun.stdout and rerun.stdout.count("(same class)") == 4

    where = _repro(pfile, "where")
    assert "fig4.png" in where.stdout and "audit.md" in where.stdout


def test_missing_records_is_one_clear_line(tmp_path):
    raw = tiny_params(tmp_path)
    raw["experiments"] = {"mcdal_fig3": raw["experiments"]["tiny"]}
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    proc = _repro(pfile, "figure", "mcdal/fig3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: missing run record")


def test_damaged_dataset_is_one_line_and_debug_shows_the_traceback(tmp_path):
    raw = tiny_params(tmp_path, dataset="cifar10")
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    folder = write_fake_cifar10(tmp_path / "data")
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated

    proc = _repro(pfile, "run", "tiny", "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {batch}: cannot be read"), lines
    assert "params.yaml" not in lines[0] and "python -m repro data download cifar10" in lines[0]

    debug = _repro(pfile, "--debug", "run", "tiny", "--quiet")
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == lines[0]


def test_unknown_name_is_one_line(tmp_path):
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(tiny_params(tmp_path)))
    proc = _repro(pfile, "figure", "nope/fig9")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "error: unknown artifact 'nope/fig9'" in proc.stderr
