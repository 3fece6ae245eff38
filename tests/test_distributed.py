"""Data-parallel training (torchrun mechanics, gloo on a CPU): 2 ranks reach the parameters of one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from repro.core import distributed
from repro.core.train import DataParallelHook, TrainingHook, fit
from repro.data.datasets import load_dataset
from repro.models import build_model
from repro.spec.recipe import Recipe

from .conftest import ROOT, tiny_params

LABELED = np.arange(3, 64)  # 61 examples: batches of 16, 16, 16 and a last one of 13 that splits 7 / 6
RECIPE = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, epochs=2, augment=("crop", "flip"))


def _train(batch_size: int, seen: list | None = None) -> torch.Tensor:
    """LeNet without dropout (no batch norm either) through the shared trainer, with augmentation; `seen`
    collects the size of every batch the model forwards."""
    data = load_dataset("synthetic-cifar10", train_size=100, test_size=20)
    torch.manual_seed(0)
    model = build_model("lenet", 10, 3, (32, 32), width=0.25, dropout=0.0)
    if seen is not None:
        model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    fit(model, data, LABELED, Recipe(batch_size=batch_size, **RECIPE), seed=5)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _rank(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    assert distributed.world() == (rank, world_size)
    distributed.init_process_group_from_env(torch.device("cpu"))
    try:
        try:  # the same error on every rank, before any collective
            _train(batch_size=15)
            error = ""
        except ValueError as e:
            error = str(e)
        seen = []
        weights = _train(batch_size=16, seen=seen)
        if distributed.is_writer():
            torch.save({"weights": weights, "error": error, "seen": seen}, out)
    finally:
        distributed.destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_train_like_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    got = torch.load(out)
    want = _train(batch_size=16)
    assert not torch.equal(want, _initial_weights())  # it trained
    assert torch.allclose(got["weights"], want, atol=1e-5, rtol=0), (got["weights"] - want).abs().max()
    assert got["seen"] == [8, 8, 8, 7] * 2  # rank 0's shards of 16, 16, 16, 13 (2 epochs)
    assert "batch_size 15 is not divisible by the world size 2" in got["error"]


def _initial_weights() -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model("lenet", 10, 3, (32, 32), width=0.25, dropout=0.0)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_shards_are_contiguous_and_cover_the_batch():
    for n in (1, 7, 13, 16):
        for w in (1, 2, 3):
            bounds = [distributed.shard_bounds(n, r, w) for r in range(w)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1
    x, y = torch.arange(13), torch.arange(13) * 10
    assert distributed.shard(x, y, 1, 2)[1].tolist() == [70, 80, 90, 100, 110, 120]


def test_hooks_with_their_own_step_refuse_data_parallel_training():
    class OwnStep(TrainingHook):
        def training_step(self, ctx, x, y):
            return ctx.default_step(x, y)

    with pytest.raises(ValueError, match="OwnStep has its own training_step"):
        DataParallelHook(OwnStep(), 16, world_size=2)
    assert DataParallelHook(TrainingHook(), 16, world_size=2).world_size == 2


def test_outside_torchrun_one_process_writes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world() == (0, 1) and not distributed.launched()
    assert distributed.is_writer() and distributed.active_world_size() == 1
    idx = np.array([3, 1, 2])
    assert distributed.broadcast_indices(idx) is idx


@pytest.mark.slow  # ~15 s: two processes start torch and train one tiny run
def test_torchrun_runs_an_experiment_data_parallel(tmp_path):
    raw = tiny_params(tmp_path, methods=("random",))
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "repro", "--params",
                           str(pfile), "run", "tiny", "--seeds", "0", "--quiet"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("plan for tiny") == 1 and proc.stdout.count("tiny/random/seed0: accuracy") == 1
    record = json.loads((tmp_path / "results" / "tiny" / "random" / "seed0.json").read_text())
    assert len(record["stages"]) == 3
