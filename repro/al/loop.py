"""The active-learning loop: stages of train -> evaluate -> query -> label, with a record and a checkpoint.

A run is (experiment, method, seed). After every finished stage a checkpoint (outside DVC's declared outs)
stores what the next stage needs, so a killed run resumes from its last finished stage and reaches the same
record (timings and provenance aside). Every random choice is seeded by (seed, stage, purpose).
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from repro.al.methods import code_sha256, method_spec
from repro.al.strategies import QueryContext, build_strategy
from repro.core import distributed
from repro.core.determinism import apply_run_settings
from repro.core.device import resolve_device
from repro.core.provenance import provenance
from repro.core.tasks import task_of
from repro.core.train import TrainRequest, TrainResult, derive_seed, fit_request, grouping_enabled
from repro.data.augment import Augmenter
from repro.data.datasets import ImageData, load_dataset
from repro.data.imbalance import TRAIN_SUBSETS
from repro.data.pool import ActivePool, indices_sha256
from repro.models import build_model
from repro.models.weights import load_pretrained_backbone
from repro.spec.fingerprint import raw_run_hash
from repro.spec.layout import checkpoint_dir, features_path, predictions_path, record_path
from repro.spec.params import Params
from repro.spec.records import atomic_write_json, atomic_write_npz

TIMING_KEYS = ("train_seconds", "query_seconds")
FEATURES_PER_SIDE = 500  # labeled and unlabeled examples whose features a `features_of` run saves per stage
FEATURE_FIELDS = ("features", "indices", "labels", "labeled", "labeled_sha256")
PREDICTION_IMAGES = 6  # images of the first query whose predictions a `predictions_of` run saves




def load_experiment_data(params: Params, experiment: str, device=None) -> ImageData:
    exp = params.experiment(experiment)
    device = device or resolve_device(params.device)
    return load_dataset(exp.dataset, params.data_dir, exp.train_size, exp.test_size, exp.imbalance, device,
                        exp.classes)


def run_key(params: Params, experiment: str, method: str, seed: int) -> dict[str, Any]:
    """What a checkpoint is valid for: the run, its parameters (the one fingerprint of a run's params,
    repro.spec.fingerprint: an option default changed in code is a code change, keyed by `code_sha256`), the code
    of the core and of its method, and the run settings that change its bits (`threads`, `deterministic`)."""
    return {"experiment": experiment, "method": method, "seed": seed,
            "params_sha256": raw_run_hash(params, experiment, method),
            "code_sha256": code_sha256(method_spec(params, method, experiment)[0]),
            "threads": params.threads, "deterministic": params.deterministic}


def _load_checkpoint(ckpt: Path, key: dict[str, Any]) -> dict[str, Any] | None:

    state_file = ckpt / "state.json"
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("key") != key:  # params or code changed: the old progress does not apply
        if distributed.is_writer():
            shutil.rmtree(ckpt, ignore_errors=True)
        return None
    return state


def run(
    params: Params,
    experiment: str,
    method: str,
    seed: int,
    data: ImageData | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) one active-learning run and write its record; returns the record."""
    steps = run_steps(params, experiment, method, seed, data, progress)
    try:
        request = next(steps)
        while True:
            request = steps.send(fit_request(request))
    except StopIteration as done:
        return done.value


def run_steps(
    params: Params,
    experiment: str,
    method: str,
    seed: int,
    data: ImageData | None = None,
    progress: bool = True,
) -> Generator[TrainRequest, TrainResult, dict[str, Any]]:
    """One run as a generator: it yields each stage's training as a `TrainRequest` and is sent the TrainResult
    (`run` trains it alone, `run_group` in lockstep with others); everything else of the stage is its own.
    Returns the record."""
    apply_run_settings(params)  # torch threads and the deterministic knob (entry points apply them earlier too)
    exp = params.experiment(experiment)
    if method not in exp.methods:
        raise ValueError(f"method {method!r} is not in experiments.{experiment}.methods {list(exp.methods)}")
    recipe = params.recipe(exp.recipe)
    device = resolve_device(params.device)
    data = data if data is not None else load_experiment_data(params, experiment, device)
    data = run_data(exp, data, seed)
    counts = exp.schedule.labeled_counts(data.pool_size, f"experiments.{experiment}.schedule")
    strategy = build_strategy(*method_spec(params, method, experiment))
    task = task_of(data)
    augmenter = Augmenter((), data.spec.mean, data.spec.std, data.train_x.device)
    key = run_key(params, experiment, method, seed)
    ckpt = checkpoint_dir(params, experiment, method, seed)
    out = record_path(params, experiment, method, seed)

    writer = distributed.is_writer()  # under torchrun only rank 0 writes; every rank computes the same
    state = _load_checkpoint(ckpt, key)
    save_features = method in exp.features_of
    features: dict[str, np.ndarray] = {}  # every finished stage's `stage_features`, checkpointed with the stage
    if state is not None and save_features:
        features = _load_checkpoint_features(ckpt, state["next_stage"])
        if features is None:  # a finished stage's features are gone: start over rather than leave a hole
            if writer:
                shutil.rmtree(ckpt, ignore_errors=True)
            state, features = None, {}
    if state is None:
        pool = ActivePool.initial(exp.dataset, data.pool_size, counts[0], seed)
        state = {"key": key, "next_stage": 0, "stages": [], "labeled": pool.labeled.tolist(),
                 "initial_pool_sha256": pool.sha256(), "pending": {"selected_sha256": pool.sha256(),
                                                                    "selected": counts[0],
                                                                    "selected_classes": _class_counts(data, pool.labeled),
                                                                    "query_seconds": 0.0}}
    pool = ActivePool(data.pool_size, np.asarray(state["labeled"], dtype=np.int64))
    model, method_state = None, None
    if state["next_stage"] > 0 and not strategy.reinit_each_stage:  # the task model and method modules carry over
        model = strategy.adapt_model(build_task_model(exp, data, derive_seed(seed, 0, "init"), params.data_dir)).to(data.train_x.device)
        model.load_state_dict(torch.load(ckpt / "model.pt", map_location=data.train_x.device))
        hook = strategy.training_hook()
        if hook is not None:
            method_state = torch.nn.ModuleDict(hook.build_modules(model, data.spec)).to(data.train_x.device)
            method_state.load_state_dict(torch.load(ckpt / "method_state.pt", map_location=data.train_x.device))

    bar = tqdm(range(state["next_stage"], len(counts)), desc=f"{experiment}/{method}/seed{seed}", unit="stage",
               disable=not progress, initial=state["next_stage"], total=len(counts))
    for stage in bar:
        if pool.n_labeled != counts[stage]:
            raise RuntimeError(f"stage {stage}: {pool.n_labeled} labeled, expected {counts[stage]}")
        if model is None or strategy.reinit_each_stage:
            model = strategy.adapt_model(build_task_model(exp, data, derive_seed(seed, stage, "init"), params.data_dir)).to(data.train_x.device)
        request = TrainRequest(model, data, pool.labeled, recipe, derive_seed(seed, stage, "train"),
                               hook=strategy.training_hook(), unlabeled=strategy.training_unlabeled(pool, seed, stage),
                               progress=f"stage {stage} train" if progress else None,
                               state=None if strategy.reinit_each_stage else method_state,
                               name=f"{method}/seed{seed}")
        trained = yield request
        t0 = time.perf_counter()
        method_state = trained.state
        scores = task.evaluate(model, data.test_x, data.test_y, augmenter, recipe.eval_batch_size, recipe.bf16)
        value = scores[exp.metric]
        train_seconds = trained.seconds + time.perf_counter() - t0  # (a lockstep run: its share of the group's)
        if save_features:  # after training, before the query: the model that picks this stage's queries
            features.update(stage_features(model, data, pool, augmenter, recipe, seed, stage, key["params_sha256"]))
        state["stages"].append({
            "stage": stage, "labeled": pool.n_labeled, "labeled_fraction": pool.n_labeled / pool.size,
            "metric": exp.metric, "value": value, **state["pending"], "labeled_sha256": pool.sha256(),
            "train_seconds": train_seconds,
            # the runs this one trained with in lockstep (its numbers are deterministic given this layout)
            **({"train_group": request.group} if len(request.group) > 1 else {}),
            # every metric the task reports, where it reports more than the experiment's own (detection)
            **({"metrics": scores} if len(scores) > 1 else {}),
        })
        bar.set_postfix({exp.metric: f"{value:.3f}"})
        state["pending"] = None
        if stage + 1 < len(counts):
            ctx = QueryContext(model, data, pool, augmenter, recipe, seed, stage, state=method_state)
            t0 = time.perf_counter()
            picked = np.asarray(strategy.query(ctx, counts[stage + 1] - counts[stage]), dtype=np.int64)
            picked = distributed.broadcast_indices(picked)  # (torchrun: rank 0's picks, whatever ties did)
            query_seconds = time.perf_counter() - t0
            if stage == 0 and method in exp.predictions_of and writer:  # what the first query saw on the images it picked
                arrays = strategy.prediction_maps(ctx, picked[:PREDICTION_IMAGES])
                atomic_write_npz(ckpt / "predictions.npz", {"params_sha256": np.array(key["params_sha256"]),
                                                             "indices": picked[:PREDICTION_IMAGES], **arrays})
            pool.label(picked)
            state["pending"] = {"selected_sha256": indices_sha256(picked), "selected": len(picked),
                                "selected_classes": _class_counts(data, picked), "query_seconds": query_seconds}
        state["next_stage"] = stage + 1
        state["labeled"] = pool.labeled.tolist()
        if writer and not strategy.reinit_each_stage:  # what carries over: task model + method modules
            ckpt.mkdir(parents=True, exist_ok=True)
            for name, module in (("model", model), ("method_state", method_state)):
                torch.save(module.state_dict(), ckpt / f"{name}.pt.tmp")
                (ckpt / f"{name}.pt.tmp").replace(ckpt / f"{name}.pt")
        if writer and save_features:  # the checkpoint's copy first: state.json commits the stage
            atomic_write_npz(ckpt / "features.npz", features)
        if writer:
            atomic_write_json(ckpt / "state.json", state)
        if writer and save_features:
            atomic_write_npz(features_path(params, experiment, method, seed), features)
    record = {
        "experiment": experiment, "method": method, "seed": seed, "paper": exp.paper, "profile": params.profile,
        "dataset": exp.dataset, "backbone": exp.backbone, "pool_size": data.pool_size,
        "test_size": len(data.test_y), "initial_pool_sha256": state["initial_pool_sha256"],
        "stages": state["stages"],
        "provenance": provenance(data.train_x.device, key["params_sha256"],
                                 {"record": str(out), "checkpoint": str(ckpt), "data_dir": params.data_dir},
                                 key["code_sha256"], raw_run_hash(params, experiment, method),
                                 params.group_runs if grouping_enabled(params.group_runs, data.train_x.device) else 1),
    }
    if not writer:
        return record
    if save_features:  # (again: a resumed run with no stage left, after DVC removed the outs)
        atomic_write_npz(features_path(params, experiment, method, seed), features)
    if method in exp.predictions_of and (ckpt / "predictions.npz").is_file():  # results/ may have been wiped
        with np.load(ckpt / "predictions.npz") as z:
            atomic_write_npz(predictions_path(params, experiment, method, seed), {k: z[k] for k in z.files})
    atomic_write_json(out, record)
    return record


def feature_sample(pool: ActivePool, seed: int, stage: int, per_side: int = FEATURES_PER_SIDE
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices, labeled flags): a seeded random sample of at most `per_side` labeled and at most
    `per_side` unlabeled examples of this stage's pool, labeled first, each part in index order."""
    rng = np.random.default_rng(derive_seed(seed, stage, "features"))
    parts = [np.sort(rng.choice(side, min(per_side, len(side)), replace=False)) if len(side) else side
             for side in (pool.labeled, pool.unlabeled)]
    return np.concatenate(parts).astype(np.int64), np.repeat([True, False], [len(p) for p in parts])


def stage_features(model, data: ImageData, pool: ActivePool, augmenter, recipe, seed: int, stage: int,
                   params_sha256: str) -> dict[str, np.ndarray]:
    """The task model's penultimate features (eval mode, float16) of `feature_sample`'s examples, with their
    pool indices, class labels, labeled flags and the fingerprint of the labeled set (the record's
    `labeled_sha256` of this stage): the arrays `stage<k>_<field>` of the run's features file (ADS Fig. 4)."""
    idx, is_labeled = feature_sample(pool, seed, stage)
    feats = task_of(data).embeddings(model, data.train_x, idx, augmenter, recipe.eval_batch_size, recipe.bf16)
    labels = data.train_y[torch.as_tensor(idx, device=data.train_y.device)]
    arrays = {"features": feats.cpu().numpy().astype(np.float16), "indices": idx,
              "labels": labels.cpu().numpy().astype(np.int64), "labeled": is_labeled,
              "labeled_sha256": np.array(pool.sha256())}
    return {"params_sha256": np.array(params_sha256), **{f"stage{stage}_{k}": v for k, v in arrays.items()}}


def _feature_stage(key: str) -> int | None:
    head, _, _ = key.partition("_")
    return int(head[5:]) if head.startswith("stage") and head[5:].isdigit() else None


def _load_checkpoint_features(ckpt: Path, next_stage: int) -> dict[str, np.ndarray] | None:
    """The checkpointed features of the finished stages 0..next_stage-1 (a stage saved by a run killed before
    its state.json is dropped: it is re-run), or None when one of them is missing or unreadable."""
    path = ckpt / "features.npz"
    if not path.is_file():
        return {} if next_stage == 0 else None
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    kept = {k: v for k, v in arrays.items() if (st := _feature_stage(k)) is None or st < next_stage}
    if any(f"stage{st}_{f}" not in kept for st in range(next_stage) for f in FEATURE_FIELDS):
        return None
    return kept


def _class_counts(data: ImageData, indices) -> list[int]:
    """How many of the selected examples belong to each class (a query's class balance, e.g. DAL Sec. 5.4 on EGL)."""
    labels = data.train_y[torch.as_tensor(np.asarray(indices, dtype=np.int64), device=data.train_y.device)]
    return task_of(data).class_counts(labels, data.num_classes)


def run_data(exp, data: ImageData, seed: int) -> ImageData:
    """The run's data: the experiment's, or its per-run `train_subset` drawn from the run seed."""
    if exp.train_subset is None:
        return data

    return data.train_subset(TRAIN_SUBSETS[exp.train_subset](data.train_y.cpu().numpy(), seed))


def build_task_model(exp, data: ImageData, init_seed: int, data_dir: str | Path = "data"):
    """A fresh task model for an experiment, initialised from `init_seed` (and, with `pretrained`, its backbone's
    pinned ImageNet weights from data_dir/weights/)."""
    torch.manual_seed(init_seed)
    spec = data.spec
    model = build_model(exp.backbone, spec.num_classes, spec.channels, (spec.height, spec.width), exp.width,
                        exp.dropout)
    if exp.pretrained:

        load_pretrained_backbone(model, exp.backbone, data_dir)
        model.pretrained_from = (exp.backbone, str(data_dir))  # `rebuild_model` (committee members) loads it too
    return model


def strip_volatile(record: dict[str, Any]) -> dict[str, Any]:
    """The record without what may differ between identical runs (timings, provenance)."""
    out = {k: v for k, v in record.items() if k != "provenance"}
    out["stages"] = [{k: v for k, v in s.items() if k not in TIMING_KEYS} for s in record["stages"]]
    return out
