"""The active-learning loop end to end: records, pool identity, kill-and-resume reproducibility."""

import json

import pytest

from repro.al import loop
from repro.spec import layout
from repro.spec.params import parse_params

from .conftest import SimulatedCrash, crash_after_stage, tiny_params


def test_tiny_run_writes_a_complete_record(tmp_path):
    params = parse_params(tiny_params(tmp_path))
    rec = loop.run(params, "tiny", "entropy", 0, progress=False)
    path = layout.record_path(params, "tiny", "entropy", 0)
    assert json.loads(path.read_text())["stages"] == rec["stages"]
    assert [s["labeled"] for s in rec["stages"]] == [20, 40, 60]
    assert [round(s["labeled_fraction"], 3) for s in rec["stages"]] == [0.1, 0.2, 0.3]
    for s in rec["stages"]:
        assert 0 <= s["value"] <= 1 and s["metric"] == "accuracy"
        assert len(s["selected_sha256"]) == 64 and s["train_seconds"] > 0 and s["query_seconds"] >= 0
    assert rec["stages"][0]["selected_sha256"] == rec["initial_pool_sha256"]
    prov = rec["provenance"]
    assert {"git", "packages", "device", "host", "paths", "started_at", "params_sha256", "code_sha256"} <= set(prov)


def test_methods_share_the_initial_pool(tmp_path):
    params = parse_params(tiny_params(tmp_path))
    a = loop.run(params, "tiny", "random", 1, progress=False)
    b = loop.run(params, "tiny", "entropy", 1, progress=False)
    assert a["initial_pool_sha256"] == b["initial_pool_sha256"]
    assert a["stages"][1]["selected_sha256"] != b["stages"][1]["selected_sha256"]


def test_killed_run_resumes_to_the_same_record(tmp_path, monkeypatch):
    params = parse_params(tiny_params(tmp_path / "a"))
    full = loop.run(params, "tiny", "entropy", 0, progress=False)
    params_b = parse_params(tiny_params(tmp_path / "b"))
    with monkeypatch.context() as mp, pytest.raises(SimulatedCrash):
        crash_after_stage(mp, 0)
        loop.run(params_b, "tiny", "entropy", 0, progress=False)
    assert not layout.record_path(params_b, "tiny", "entropy", 0).exists()
    state = json.loads((layout.checkpoint_dir(params_b, "tiny", "entropy", 0) / "state.json").read_text())
    assert state["next_stage"] == 1
    resumed = loop.run(params_b, "tiny", "entropy", 0, progress=False)
    assert loop.strip_volatile(resumed) == loop.strip_volatile(full)


def test_changed_params_discard_old_checkpoint(tmp_path, monkeypatch):
    raw = tiny_params(tmp_path)
    params = parse_params(raw)
    with monkeypatch.context() as mp, pytest.raises(SimulatedCrash):
        crash_after_stage(mp, 0)
        loop.run(params, "tiny", "random", 0, progress=False)
    raw["recipes"]["tiny"]["lr"] = 0.01
    rec = loop.run(parse_params(raw), "tiny", "random", 0, progress=False)
    assert len(rec["stages"]) == 3  # started over, all stages trained with the new params


def test_method_not_in_experiment_is_rejected(tmp_path):
    params = parse_params(tiny_params(tmp_path, methods=("random",)))
    with pytest.raises(ValueError, match="not in experiments.tiny.methods"):
        loop.run(params, "tiny", "entropy", 0, progress=False)


def test_plan_counts_runs_and_recognises_finished_ones(tmp_path):
    from repro.exec.plan import describe_plan, run_is_done

    params = parse_params(tiny_params(tmp_path, methods=("random",)))
    data = loop.load_experiment_data(params, "tiny")
    runs = [("random", 0), ("random", 1)]
    first = describe_plan(params, "tiny", runs, data)
    assert "2 run(s) (0 done, 2 to go)" in first and "estimated" in first
    loop.run(params, "tiny", "random", 0, data=data, progress=False)
    assert run_is_done(params, "tiny", "random", 0) and not run_is_done(params, "tiny", "random", 1)
    assert "(1 done, 1 to go)" in describe_plan(params, "tiny", runs, data)
    loop.run(params, "tiny", "random", 1, data=data, progress=False)
    assert "already done" in describe_plan(params, "tiny", runs, data)


def test_killed_run_resumes_carried_over_method_modules(tmp_path, monkeypatch):
    """A method whose task model carries over between stages gets its trained modules (here MCDAL's heads)
    checkpointed with the model: the resumed run reaches the same record as an uninterrupted one."""
    from repro.al.strategies.mcdal import MCDALStrategy

    monkeypatch.setattr(MCDALStrategy, "reinit_each_stage", False)
    params = parse_params(tiny_params(tmp_path / "a", methods=("mcdal",)))
    full = loop.run(params, "tiny", "mcdal", 0, progress=False)
    params_b = parse_params(tiny_params(tmp_path / "b", methods=("mcdal",)))
    with monkeypatch.context() as mp, pytest.raises(SimulatedCrash):
        crash_after_stage(mp, 0)
        loop.run(params_b, "tiny", "mcdal", 0, progress=False)
    ckpt = layout.checkpoint_dir(params_b, "tiny", "mcdal", 0)
    assert (ckpt / "model.pt").is_file() and (ckpt / "method_state.pt").is_file()
    import torch

    heads = torch.load(ckpt / "method_state.pt")
    assert any(k.startswith("heads.") for k in heads)
    resumed = loop.run(params_b, "tiny", "mcdal", 0, progress=False)
    assert loop.strip_volatile(resumed) == loop.strip_volatile(full)


def test_code_key_covers_the_core_and_only_the_runs_own_method():
    from repro.al.methods import run_code
    from repro.spec.codedeps import core_files

    assert set(core_files()) <= set(run_code("random")) and {"al/loop.py", "core/train.py", "core/tasks.py"} <= set(core_files())
    assert "al/strategies/mcdal.py" in run_code("mcdal") and "al/strategies/mcdal.py" not in run_code("random")
    assert "al/kcenter_mip.py" in run_code("coreset-robust")
    assert "al/strategies/coreset.py" in run_code("coreset-robust") and "al/kcenter_mip.py" not in run_code("coreset")


@pytest.mark.parametrize("method", ["egl", "egl-code"])
def test_egl_code_key_changes_with_dfal_and_not_with_mcdal(tmp_path, monkeypatch, method):
    """Issue 22.5: EGL imports `dfal.bn_affine`, so an edit of strategies/dfal.py must invalidate EGL's
    checkpoints (its key changes) while an edit of another method's module (mcdal.py) must not. The edits go
    to a copy of the package that the key is computed from; the real files are untouched."""
    import shutil

    from repro.al import methods

    pkg = tmp_path / "repro"
    shutil.copytree(methods.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(methods, "PACKAGE_DIR", pkg)
    before = methods.code_sha256(method)
    assert before == methods.code_sha256(method)  # the copy keys like itself

    def edit(rel: str) -> None:
        f = pkg / rel
        f.write_bytes(f.read_bytes() + b"\n# edited\n")

    edit("al/strategies/mcdal.py")
    assert methods.code_sha256(method) == before, "editing mcdal.py must not rerun EGL"
    edit("al/strategies/dfal.py")
    assert methods.code_sha256(method) != before, "editing dfal.py (bn_affine) must rerun EGL"


def test_per_run_imbalanced_subset(tmp_path):
    """MAL Sec. 4.1: every run starts from its own imbalanced CIFAR-100 (drawn from the run seed)."""
    import numpy as np

    from repro.data.imbalance import imbalanced_indices
    from repro.spec.schema import ConfigError

    raw = tiny_params(tmp_path, methods=("random",), dataset="synthetic-cifar100", train_size=2000,
                      train_subset="mal-imbalanced")
    params = parse_params(raw)
    data = loop.load_experiment_data(params, "tiny")
    recs = [loop.run(params, "tiny", "random", s, data=data, progress=False) for s in (0, 1)]
    sizes = [len(imbalanced_indices(data.train_y.numpy(), s)) for s in (0, 1)]
    assert [r["pool_size"] for r in recs] == sizes and sizes[0] < 2000
    labeled = [np.asarray(json.loads(layout.checkpoint_dir(params, "tiny", "random", s).joinpath("state.json")
                                     .read_text())["labeled"]) for s in (0, 1)]
    assert all(lab.max() < n for lab, n in zip(labeled, sizes))
    raw["experiments"]["tiny"]["dataset"] = "synthetic-cifar10"
    with pytest.raises(ConfigError, match="100-class"):
        parse_params(raw)
