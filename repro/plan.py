"""Before a long run: how many runs, which are already done, and an estimate from a short measured probe."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import torch

from repro.config import Params
from repro.data.datasets import ImageData
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.train import fit


def run_is_done(params: Params, experiment: str, method: str, seed: int) -> bool:
    from repro.loop import checkpoint_dir, run_key

    state = checkpoint_dir(params, experiment, method, seed) / "state.json"
    if not state.is_file():
        return False
    st = json.loads(state.read_text())
    exp = params.experiment(experiment)
    n_stages = len(exp.schedule.labeled_counts(exp.pool_size()))
    return st.get("key") == run_key(params, experiment, method, seed) and st.get("next_stage") == n_stages


def training_images(params: Params, experiment: str) -> int:
    """Images the task model sees over one run's stages (the bulk of a run's cost)."""
    exp = params.experiment(experiment)
    r = params.recipe(exp.recipe)
    total = 0
    for n in exp.schedule.labeled_counts(exp.pool_size()):
        n_train = n - int(n * r.validation_fraction)
        per_epoch = r.epoch_iterations * r.batch_size if r.epoch_iterations else n_train
        total += per_epoch * r.epochs
    return total


def probe_seconds_per_image(params: Params, experiment: str, data: ImageData) -> float:
    """Time a short training of the task model (2 epochs on the initial labeled set, first one discarded)."""
    exp = params.experiment(experiment)
    r = params.recipe(exp.recipe)
    n0 = exp.schedule.labeled_counts(data.pool_size)[0]
    labeled = ActivePool.initial(exp.dataset, data.pool_size, n0, 0).labeled
    spec = data.spec
    torch.manual_seed(0)
    model = build_model(exp.backbone, spec.num_classes, spec.channels, (spec.height, spec.width), exp.width,
                        exp.dropout).to(data.train_x.device)
    iters = r.epoch_iterations
    probe = replace(r, epochs=1, validation_fraction=0.0, best_after_epoch=0,
                    epoch_iterations=min(iters, 20) if iters else None)
    fit(model, data, labeled, probe, 0)  # warm-up
    t = time.perf_counter()
    res = fit(model, data, labeled, probe, 1)
    seen = res.steps * r.batch_size if iters else len(labeled)
    return (time.perf_counter() - t) / max(1, seen)


def describe_plan(params: Params, experiment: str, runs: list[tuple[str, int]], data: ImageData) -> str:
    todo = [(m, s) for m, s in runs if not run_is_done(params, experiment, m, s)]
    if not todo:
        return f"plan for {experiment}: all {len(runs)} run(s) already done (records re-emitted from checkpoints)"
    per_image = probe_seconds_per_image(params, experiment, data)
    per_run = per_image * training_images(params, experiment)
    return (f"plan for {experiment}: {len(runs)} run(s) ({len(runs) - len(todo)} done, {len(todo)} to go), "
            f"~{per_run:.0f} s of training per run (from a measured probe; queries extra), "
            f"~{per_run * len(todo) / 60:.1f} min in all")
