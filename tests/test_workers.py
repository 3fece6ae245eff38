"""Runs in worker processes write the same records as sequential runs (same thread count), and resume."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from repro.al import loop
from repro.al.methods import parse_params
from repro.exec.workers import default_jobs, run_parallel

from .conftest import tiny_params


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for 2 single-threaded workers")
def test_parallel_runs_equal_sequential_runs(tmp_path):
    raw = tiny_params(tmp_path / "par", methods=("random", "entropy"))
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    runs = [("random", 0), ("entropy", 0), ("entropy", 1)]
    done = {(m, s): last for m, s, last in run_parallel(pfile, None, "tiny", runs, jobs=2)}
    assert set(done) == set(runs)

    seq = parse_params(tiny_params(tmp_path / "seq", methods=("random", "entropy")))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # the workers' thread count
    try:
        data = loop.load_experiment_data(seq, "tiny")
        for m, s in runs:
            want = loop.run(seq, "tiny", m, s, data=data, progress=False)
            got = json.loads((Path(raw["results_dir"]) / "tiny" / m / f"seed{s}.json").read_text())
            strip = [{k: v for k, v in st.items() if not k.endswith("_seconds")} for st in want["stages"]]
            assert [{k: v for k, v in st.items() if not k.endswith("_seconds")} for st in got["stages"]] == strip
            assert done[(m, s)]["value"] == want["stages"][-1]["value"]
    finally:
        torch.set_num_threads(threads)


def test_a_failing_run_raises_its_error(tmp_path):
    raw = tiny_params(tmp_path, methods=("random",))
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="not in experiments.tiny.methods"):
        list(run_parallel(pfile, None, "tiny", [("entropy", 0)], jobs=1))


def test_default_jobs(monkeypatch):
    monkeypatch.delenv("REPRO_JOBS", raising=False)
    assert default_jobs("cuda", 10) == 1 and default_jobs("cpu", 1) == 1
    assert default_jobs("cpu", 100) == (os.cpu_count() or 1)
    monkeypatch.setenv("REPRO_JOBS", "3")
    assert default_jobs("cpu", 1) == 3
