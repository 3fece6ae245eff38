"""The reproducibility contract's knobs (README: "Reproducibility contract"): params' `threads` pins torch threads
per run in and out of worker processes, `deterministic` sets torch's deterministic flags and turns lockstep off,
and every record carries the machine class it was made on. (Two fresh processes giving identical records:
tests/test_tasks.py; another CPU: tests/test_other_cpu.py.)"""

import os

import pytest
import torch
import yaml

from repro.al import loop
from repro.al.methods import parse_params
from repro.core.determinism import (
    CUBLAS_WORKSPACE_CONFIG,
    apply_determinism,
    machine_class_sha256,
    mkl_version,
    resolve_threads,
)
from repro.exec.plan import run_is_done
from repro.exec.workers import run_parallel
from repro.spec.schema import ConfigError

from .conftest import tiny_params


@pytest.fixture
def restore_run_settings(monkeypatch):
    """Puts back what a run's settings change in this process: the deterministic flags, cuDNN's benchmark flag,
    torch threads and CUBLAS_WORKSPACE_CONFIG."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # (monkeypatch restores the original)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
    torch.set_num_threads(saved[3])


def test_the_deterministic_knob_sets_the_flags(restore_run_settings):
    torch.backends.cudnn.benchmark = True  # (what repro.core.device.model_layout sets on CUDA)
    apply_determinism(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG == ":4096:8"
    apply_determinism(False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_deterministic_turns_lockstep_off_and_defaults_to_false(tmp_path):
    raw = {**tiny_params(tmp_path), "group_runs": 4}
    assert parse_params(raw).deterministic is False and parse_params(raw).group_runs == 4
    assert parse_params({**raw, "deterministic": True}).group_runs == 1


@pytest.mark.parametrize("key, bad", [("threads", 0), ("threads", -2), ("threads", "two"), ("threads", 1.5),
                                      ("threads", True), ("deterministic", "yes"), ("deterministic", 1)])
def test_bad_knobs_are_one_clear_error(tmp_path, key, bad):
    with pytest.raises(ConfigError, match=f"^{key} = ") as err:
        parse_params({**tiny_params(tmp_path), key: bad})
    assert "\n" not in str(err.value)


def test_threads_resolve_from_params(tmp_path, monkeypatch):
    assert parse_params(tiny_params(tmp_path)).threads == "auto"
    assert resolve_threads("auto", "cpu") == 1 and resolve_threads(3, "cpu") == 3 and resolve_threads(2, "cuda") == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's processes on this machine share its cores
    assert resolve_threads("auto", "cuda") == max(1, (os.cpu_count() or 1) // 2)


def test_a_run_applies_its_settings_and_records_its_machine_class(tmp_path, restore_run_settings):
    params = parse_params({**tiny_params(tmp_path), "threads": 1, "deterministic": True})
    torch.set_num_threads(2)  # (more threads than params' would oversubscribe a shared machine's cores)
    rec = loop.run(params, "tiny", "entropy", 0, progress=False)
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG
    cls = rec["provenance"]["machine_class"]
    assert rec["provenance"]["machine_class_sha256"] == machine_class_sha256(cls) and len(machine_class_sha256(cls)) == 16
    assert cls["torch_threads"] == 1 and cls["deterministic"] is True and cls["device"] == "cpu"
    assert cls["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert cls["torch"] == torch.__version__ and cls["torch_git"] == torch.version.git_version
    assert cls["mkl_version"] == mkl_version() and cls["cpu_model"]
    if torch.backends.mkldnn.is_available():  # (its effective value under a lowered ISA: tests/test_other_cpu.py)
        assert isinstance(cls["onednn_isa"], str) and cls["onednn_isa"]
    # the knobs change a run's bits, so they key its checkpoint: another value is not "done"
    assert run_is_done(params, "tiny", "entropy", 0)
    for other in ({"threads": 2, "deterministic": True}, {"threads": 1, "deterministic": False}):
        assert not run_is_done(parse_params({**tiny_params(tmp_path), **other}), "tiny", "entropy", 0)


def test_workers_take_threads_from_params_not_from_the_cores_per_worker(tmp_path):
    """Before, a worker had cpu_count // jobs threads; params' `threads` holds whatever the worker count."""
    threads = (os.cpu_count() or 1) + 1  # what no cores-per-worker split gives
    raw = {**tiny_params(tmp_path, methods=("random",)), "threads": threads}
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    assert [(m, s) for m, s, _ in run_parallel(pfile, None, "tiny", [("random", 0)], jobs=1)] == [("random", 0)]
    rec = yaml.safe_load((tmp_path / "results" / "tiny" / "random" / "seed0.json").read_text())
    assert rec["provenance"]["machine_class"]["torch_threads"] == threads
