"""`run --executor local`: one submitit job array (local processes) writes the records of a plain local run,
skips runs already done, and a failing run fails the command with its error and log path."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from repro.al import loop
from repro.al.methods import parse_params
from repro.cli import main
from repro.exec import executors

from .conftest import tiny_params


def _params_file(tmp_path: Path, **overrides) -> tuple[dict, Path]:
    raw = tiny_params(tmp_path, methods=("random", "entropy"), **overrides)
    tmp_path.mkdir(parents=True, exist_ok=True)
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    return raw, pfile


def _submitted(raw: dict) -> list[Path]:
    return sorted((Path(raw["checkpoint_dir"]) / "submitit" / "tiny").glob("*_submitted.pkl"))


def test_local_array_writes_the_records_of_a_local_run_and_skips_done_runs(tmp_path, capsys):
    raw, pfile = _params_file(tmp_path / "array")
    loop.run(parse_params(raw), "tiny", "random", 0, progress=False)  # done before: not submitted
    argv = ["--params", str(pfile), "run", "tiny", "random", "entropy", "--seeds", "0", "--quiet",
            "--executor", "local", "--cpus-per-run", "1", "--timeout-min", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(1 done, 1 to go)" in out and "1 run(s) as one local job array" in out
    assert "tiny/random/seed0: accuracy" in out and "tiny/entropy/seed0: accuracy" in out
    assert len(_submitted(raw)) == 1  # (the task's log and result lie beside it)

    ref = parse_params(tiny_params(tmp_path / "ref", methods=("random", "entropy")))
    assert torch.get_num_threads() == 1  # the array task's (params' threads: auto, 1 on a CPU)
    want = loop.run(ref, "tiny", "entropy", 0, progress=False)
    got = json.loads((Path(raw["results_dir"]) / "tiny" / "entropy" / "seed0.json").read_text())
    assert loop.strip_volatile(got) == loop.strip_volatile(want)


def test_a_failing_run_fails_the_command_with_its_error_and_log(tmp_path, capsys):
    raw, pfile = _params_file(tmp_path, dataset="cifar10")  # no real CIFAR-10 under tmp_path/data
    rc = main(["--params", str(pfile), "run", "tiny", "random", "--seeds", "0", "--quiet", "--executor", "local"])
    err = capsys.readouterr().err
    assert rc == 1
    first = err.splitlines()[0]
    assert first.startswith("error: tiny/random/seed0 failed (job ") and "cifar10" in first
    log = Path(first.rsplit("; log: ", 1)[1])
    assert log.is_file() and log.is_relative_to(Path(raw["checkpoint_dir"]).resolve() / "submitit" / "tiny")
    assert "1 of 1 run(s) of tiny failed" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--partition", "gpu"], "--partition needs --executor slurm"),
    (["--gpus-per-run", "1"], "--gpus-per-run needs --executor slurm (or local)"),
    (["--executor", "local", "--partition", "gpu"], "--partition is a Slurm option"),
    (["--executor", "local", "--jobs", "2"], "--jobs sets local worker processes"),
    (["--executor", "local", "--timeout-min", "0"], "--timeout-min 0: expected an integer >= 1"),
])
def test_bad_executor_options_are_one_line(tmp_path, capsys, argv, message):
    _, pfile = _params_file(tmp_path)
    assert main(["--params", str(pfile), "run", "tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


def test_slurm_without_sbatch_says_so(tmp_path, capsys, monkeypatch):
    _, pfile = _params_file(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert main(["--params", str(pfile), "run", "tiny", "--executor", "slurm", "--partition", "gpu"]) == 2
    assert capsys.readouterr().err.startswith("error: --executor slurm: no `sbatch` (or `srun`) on this machine's PATH")


def test_slurm_array_parameters(tmp_path, monkeypatch):
    """What a Slurm submission asks for, without a cluster (fake sbatch / srun on the PATH)."""
    import submitit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert executors.array_options("slurm", "gpu").gpus_per_run == 1

    seen = {}

    def fake_map_array(self, fn, *iterables):
        seen["params"], seen["fn"], seen["args"] = dict(self._executor.parameters), fn, iterables
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    params = parse_params(tiny_params(tmp_path))
    opts = executors.ArrayOptions("slurm", "gpu", 1, 8, 4, 90)
    assert list(executors.run_array(params, tmp_path / "params.yaml", None, "tiny", [("random", 0), ("random", 1)],
                                    opts)) == []
    p = seen["params"]
    assert (p["partition"], p["gpus_per_node"], p["cpus_per_task"], p["array_parallelism"], p["time"]) == \
        ("gpu", 1, 8, 4, 90)
    assert seen["fn"] is executors.run_one and list(seen["args"][3]) == ["random", "random"]
    assert len(seen["args"]) == 6  # no thread count: a task's torch threads are params' `threads`, not its CPUs


def test_an_array_is_not_submitted_from_torchrun():
    with pytest.raises(executors.ExecutorError, match="cannot run under torchrun"):
        executors.array_options("local", torchrun=True)
    assert executors.array_options(None) is None
    assert executors.array_options("local").gpus_per_run == 0
