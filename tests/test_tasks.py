"""The task layer: classification records bit-identical across fresh processes on one machine; dense reductions."""

import json
import os
import subprocess
import sys

import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from repro.al import loop
from repro.core.tasks import get_task

from .conftest import ROOT, tiny_params

# an uncertainty score, k-center on features, auxiliary classifiers (a training hook), an adversarial VAE with
# its own optimizers; the task model with dropout 0.5, so the dropout masks' generators count too
FRESH_PROCESS_METHODS = ["entropy", "coreset", "mcdal", "vaal"]


def test_the_same_runs_in_two_fresh_processes_give_identical_records(tmp_path):
    """Same machine class, code and params => bit-identical records (README: "Reproducibility contract"),
    whatever the number of pending runs: one process runs them in 2 worker processes, the other in-process with
    a different OMP_NUM_THREADS; params' `threads` pins both to 1 torch thread per run."""
    procs = {}
    for side, jobs, omp in (("workers", "2", None), ("in_process", "1", "2")):
        raw = tiny_params(tmp_path / side, methods=FRESH_PROCESS_METHODS, dropout=0.5, seeds=[0])
        raw["method_options"] = {"vaal": {"vae_width": 0.0625}}
        raw["threads"] = 1
        pfile = tmp_path / side / "params.yaml"
        pfile.parent.mkdir(parents=True)
        pfile.write_text(yaml.safe_dump(raw))
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | ({"OMP_NUM_THREADS": omp} if omp else {})
        procs[side] = subprocess.Popen([sys.executable, "-m", "repro", "--params", str(pfile), "run", "tiny", "--quiet",
                                        "--jobs", jobs], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    for side, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{side}: {out[-2000:]}"
    for method in FRESH_PROCESS_METHODS:
        a, b = (json.loads((tmp_path / side / "results" / "tiny" / method / "seed0.json").read_text())
                for side in procs)
        assert loop.strip_volatile(a) == loop.strip_volatile(b), method  # every stage's value and hashes
        assert a["provenance"]["machine_class"] == b["provenance"]["machine_class"]
        assert a["provenance"]["machine_class"]["torch_threads"] == 1


def test_reduce_and_pool_are_means_over_positions():
    seg = get_task("segmentation")
    s = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(seg.reduce(s), s.flatten(1).mean(1))
    f = torch.randn(2, 5, 3, 4)
    assert torch.allclose(seg.pool(f), f.mean((2, 3)))
    cls = get_task("classification")
    v = torch.randn(7)
    assert torch.equal(cls.reduce(v), v) and torch.equal(cls.pool(f[:, :, 0, 0]), f[:, :, 0, 0])


@given(st.integers(1, 3), st.integers(2, 5), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**16))
def test_class_probs_average_pixel_softmax(n, c, h, w, seed):
    """MCDAL Sec. 4.2: (N, C, H, W) -> (N, C) by averaging the per-pixel class distributions."""
    logits = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    p = get_task("segmentation").class_probs(logits)
    assert p.shape == (n, c)
    assert torch.allclose(p.sum(1), torch.ones(n), atol=1e-5)
    assert torch.allclose(p, torch.softmax(logits, 1).mean((2, 3)), atol=1e-6)


def test_segmentation_loss_ignores_255_and_per_image_loss_is_its_mean():
    seg = get_task("segmentation")
    logits = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4), dtype=torch.uint8)
    y[0, :2] = 255
    out = type("O", (), {"logits": logits})()
    per = seg.per_example_loss(None, out, y)
    ce = torch.nn.functional.cross_entropy(logits, y.long(), ignore_index=255, reduction="none")
    assert torch.allclose(per[0], ce[0][y[0] != 255].mean()) and torch.allclose(per[1], ce[1].mean())
    assert torch.allclose(seg.loss(None, out, y), ce[y != 255].mean())


def test_class_counts_per_task():
    seg = get_task("segmentation")
    y = torch.tensor([[[0, 0], [2, 255]], [[2, 2], [2, 2]]], dtype=torch.uint8)
    assert seg.class_counts(y, 3) == [1, 0, 2]
    det = get_task("detection")
    boxes = torch.full((2, 3, 6), -1.0)
    boxes[0, 0] = torch.tensor([0, 0, 5, 5, 1, 0])
    boxes[0, 1] = torch.tensor([1, 1, 4, 4, 1, 1])
    boxes[1, 0] = torch.tensor([0, 0, 5, 5, 0, 0])
    assert det.class_counts(boxes, 3) == [1, 2, 0]
