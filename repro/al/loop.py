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
from dataclasses import dataclass, field
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


@dataclass
class Run:
    """One run's fixed setup and its state between stages (what the stage steps and the observers share)."""

    params: Params
    experiment: str
    method: str
    seed: int
    exp: Any
    recipe: Any
    data: ImageData
    counts: list[int]
    strategy: Any
    augmenter: Augmenter
    key: dict[str, Any]
    ckpt: Path
    writer: bool  # under torchrun only rank 0 writes; every rank computes the same
    state: dict[str, Any] = field(default_factory=dict)  # what state.json commits after every stage
    pool: ActivePool | None = None
    model: Any = None
    method_state: Any = None


class StageObserver:
    """A side output of the stages (checkpointed modules, features, first-query predictions): told at each point
    of a stage, in the order the loop's writes must keep (everything before state.json commits the stage)."""

    def resume(self, run: Run, next_stage: int) -> bool:
        """Whether the checkpoint's side outputs are whole (False: the run starts over)."""
        return True

    def after_training(self, run: Run, stage: int) -> None: ...

    def after_query(self, run: Run, stage: int, ctx: QueryContext, picked: np.ndarray) -> None: ...

    def before_commit(self, run: Run, stage: int) -> None: ...

    def after_commit(self, run: Run, stage: int) -> None: ...

    def finish(self, run: Run) -> None: ...


class CarriedModules(StageObserver):
    """Methods whose task model and modules carry over between stages: both saved with every stage."""

    def before_commit(self, run: Run, stage: int) -> None:
        run.ckpt.mkdir(parents=True, exist_ok=True)
        for name, module in (("model", run.model), ("method_state", run.method_state)):
            torch.save(module.state_dict(), run.ckpt / f"{name}.pt.tmp")
            (run.ckpt / f"{name}.pt.tmp").replace(run.ckpt / f"{name}.pt")


class StageFeatures(StageObserver):
    """A `features_of` run's task-model features per stage (ADS Fig. 4): checkpointed with the stage, copied to
    results/ after it commits and again at the end (DVC may have removed the outs)."""

    def __init__(self):
        self.features: dict[str, np.ndarray] = {}

    def resume(self, run: Run, next_stage: int) -> bool:
        features = _load_checkpoint_features(run.ckpt, next_stage)
        self.features = features or {}
        return features is not None  # a finished stage's features are gone: start over rather than leave a hole

    def after_training(self, run: Run, stage: int) -> None:  # the model that picks this stage's queries
        self.features.update(stage_features(run.model, run.data, run.pool, run.augmenter, run.recipe, run.seed,
                                            stage, run.key["params_sha256"]))

    def before_commit(self, run: Run, stage: int) -> None:
        atomic_write_npz(run.ckpt / "features.npz", self.features)

    def after_commit(self, run: Run, stage: int) -> None:
        self.finish(run)

    def finish(self, run: Run) -> None:
        atomic_write_npz(features_path(run.params, run.experiment, run.method, run.seed), self.features)


class FirstQueryPredictions(StageObserver):
    """A `predictions_of` run's maps of what its first query saw on the images it picked (ADS Fig. 7)."""

    def after_query(self, run: Run, stage: int, ctx: QueryContext, picked: np.ndarray) -> None:
        if stage == 0 and run.writer:
            arrays = run.strategy.prediction_maps(ctx, picked[:PREDICTION_IMAGES])
            atomic_write_npz(run.ckpt / "predictions.npz", {"params_sha256": np.array(run.key["params_sha256"]),
                                                             "indices": picked[:PREDICTION_IMAGES], **arrays})

    def finish(self, run: Run) -> None:
        if (run.ckpt / "predictions.npz").is_file():  # results/ may have been wiped
            with np.load(run.ckpt / "predictions.npz") as z:
                atomic_write_npz(predictions_path(run.params, run.experiment, run.method, run.seed),
                                 {k: z[k] for k in z.files})


def observers_of(run: Run) -> list[StageObserver]:
    """The run's side outputs, in write order."""
    out: list[StageObserver] = [] if run.strategy.reinit_each_stage else [CarriedModules()]
    if run.method in run.exp.features_of:
        out.append(StageFeatures())
    if run.method in run.exp.predictions_of:
        out.append(FirstQueryPredictions())
    return out


def open_run(params: Params, experiment: str, method: str, seed: int, data: ImageData | None) -> Run:
    """The run's setup, resumed from its checkpoint when one is valid for it (`run_key`)."""
    apply_run_settings(params)  # torch threads and the deterministic knob (entry points apply them earlier too)
    exp = params.experiment(experiment)
    if method not in exp.methods:
        raise ValueError(f"method {method!r} is not in experiments.{experiment}.methods {list(exp.methods)}")
    device = resolve_device(params.device)  # (checked even when the data are given)
    data = data if data is not None else load_experiment_data(params, experiment, device)
    data = run_data(exp, data, seed)
    return Run(params, experiment, method, seed, exp, params.recipe(exp.recipe), data,
               exp.schedule.labeled_counts(data.pool_size, f"experiments.{experiment}.schedule"),
               build_strategy(*method_spec(params, method, experiment)),
               Augmenter((), data.spec.mean, data.spec.std, data.train_x.device),
               run_key(params, experiment, method, seed), checkpoint_dir(params, experiment, method, seed),
               distributed.is_writer())


def resume(run: Run, observers: list[StageObserver]) -> None:
    """The run's state: its checkpoint's (with the carried-over modules) or a fresh initial pool."""
    state = _load_checkpoint(run.ckpt, run.key)
    if state is not None and not all(o.resume(run, state["next_stage"]) for o in observers):
        if run.writer:
            shutil.rmtree(run.ckpt, ignore_errors=True)
        state = None
    if state is None:
        pool = ActivePool.initial(run.exp.dataset, run.data.pool_size, run.counts[0], run.seed)
        state = {"key": run.key, "next_stage": 0, "stages": [], "labeled": pool.labeled.tolist(),
                 "initial_pool_sha256": pool.sha256(),
                 "pending": {"selected_sha256": pool.sha256(), "selected": run.counts[0],
                             "selected_classes": _class_counts(run.data, pool.labeled), "query_seconds": 0.0}}
    run.state = state
    run.pool = ActivePool(run.data.pool_size, np.asarray(state["labeled"], dtype=np.int64))
    if state["next_stage"] > 0 and not run.strategy.reinit_each_stage:  # the model and method modules carry over
        device = run.data.train_x.device
        run.model = new_model(run, 0)
        run.model.load_state_dict(torch.load(run.ckpt / "model.pt", map_location=device))
        hook = run.strategy.training_hook()
        if hook is not None:
            run.method_state = torch.nn.ModuleDict(hook.build_modules(run.model, run.data.spec)).to(device)
            run.method_state.load_state_dict(torch.load(run.ckpt / "method_state.pt", map_location=device))


def new_model(run: Run, stage: int):
    """The task model of a stage, freshly initialised from (seed, stage)."""
    model = build_task_model(run.exp, run.data, derive_seed(run.seed, stage, "init"), run.params.data_dir)
    return run.strategy.adapt_model(model).to(run.data.train_x.device)


def train_request(run: Run, stage: int, progress: bool) -> TrainRequest:
    if run.model is None or run.strategy.reinit_each_stage:
        run.model = new_model(run, stage)
    s = run.strategy
    return TrainRequest(run.model, run.data, run.pool.labeled, run.recipe, derive_seed(run.seed, stage, "train"),
                        hook=s.training_hook(), unlabeled=s.training_unlabeled(run.pool, run.seed, stage),
                        progress=f"stage {stage} train" if progress else None,
                        state=None if s.reinit_each_stage else run.method_state, name=f"{run.method}/seed{run.seed}")


def evaluate_stage(run: Run, stage: int, request: TrainRequest, trained: TrainResult,
                   observers: list[StageObserver]) -> float:
    """Evaluate the trained model and append the stage to the state; returns the stage's metric value."""
    t0 = time.perf_counter()
    run.method_state = trained.state
    r = run.recipe
    scores = task_of(run.data).evaluate(run.model, run.data.test_x, run.data.test_y, run.augmenter,
                                        r.eval_batch_size, r.bf16)
    value = scores[run.exp.metric]
    train_seconds = trained.seconds + time.perf_counter() - t0  # (a lockstep run: its share of the group's)
    for o in observers:  # after training, before the query: the model that picks this stage's queries
        o.after_training(run, stage)
    pool = run.pool
    run.state["stages"].append({
        "stage": stage, "labeled": pool.n_labeled, "labeled_fraction": pool.n_labeled / pool.size,
        "metric": run.exp.metric, "value": value, **run.state["pending"], "labeled_sha256": pool.sha256(),
        "train_seconds": train_seconds,
        # the runs this one trained with in lockstep (its numbers are deterministic given this layout)
        **({"train_group": request.group} if len(request.group) > 1 else {}),
        # every metric the task reports, where it reports more than the experiment's own (detection)
        **({"metrics": scores} if len(scores) > 1 else {}),
    })
    run.state["pending"] = None
    return value


def query_stage(run: Run, stage: int, observers: list[StageObserver]) -> None:
    """The stage's query: label the picks and keep what the next stage's record says about them."""
    ctx = QueryContext(run.model, run.data, run.pool, run.augmenter, run.recipe, run.seed, stage,
                       state=run.method_state)
    t0 = time.perf_counter()
    budget = run.counts[stage + 1] - run.counts[stage]
    picked = np.asarray(run.strategy.query(ctx, budget), dtype=np.int64)
    picked = distributed.broadcast_indices(picked)  # (torchrun: rank 0's picks, whatever ties did)
    query_seconds = time.perf_counter() - t0
    for o in observers:  # what the query saw, before the pool changes
        o.after_query(run, stage, ctx, picked)
    run.pool.label(picked)
    run.state["pending"] = {"selected_sha256": indices_sha256(picked), "selected": len(picked),
                            "selected_classes": _class_counts(run.data, picked), "query_seconds": query_seconds}


def commit_stage(run: Run, stage: int, observers: list[StageObserver]) -> None:
    """Checkpoint the finished stage: the side outputs first, then state.json, which commits it."""
    run.state["next_stage"] = stage + 1
    run.state["labeled"] = run.pool.labeled.tolist()
    if not run.writer:
        return
    for o in observers:
        o.before_commit(run, stage)
    atomic_write_json(run.ckpt / "state.json", run.state)
    for o in observers:
        o.after_commit(run, stage)


def finish_run(run: Run, observers: list[StageObserver]) -> dict[str, Any]:
    """The run's record (written by the writer rank with the side outputs' final copies)."""
    p, device = run.params, run.data.train_x.device
    out = record_path(p, run.experiment, run.method, run.seed)
    record = {
        "experiment": run.experiment, "method": run.method, "seed": run.seed, "paper": run.exp.paper,
        "profile": p.profile, "dataset": run.exp.dataset, "backbone": run.exp.backbone,
        "pool_size": run.data.pool_size, "test_size": len(run.data.test_y),
        "initial_pool_sha256": run.state["initial_pool_sha256"], "stages": run.state["stages"],
        "provenance": provenance(device, run.key["params_sha256"],
                                 {"record": str(out), "checkpoint": str(run.ckpt), "data_dir": p.data_dir},
                                 run.key["code_sha256"], raw_run_hash(p, run.experiment, run.method),
                                 p.group_runs if grouping_enabled(p.group_runs, device) else 1),
    }
    if run.writer:
        for o in observers:  # (again: a resumed run with no stage left, after DVC removed the outs)
            o.finish(run)
        atomic_write_json(out, record)
    return record


def run_steps(params: Params, experiment: str, method: str, seed: int, data: ImageData | None = None,
              progress: bool = True) -> Generator[TrainRequest, TrainResult, dict[str, Any]]:
    """One run as a generator: it yields each stage's training as a `TrainRequest` and is sent the TrainResult
    (`run` trains it alone, `run_group` in lockstep with others); everything else of the stage is its own:
    evaluate, query, checkpoint, with the side outputs as stage observers. Returns the record."""
    run = open_run(params, experiment, method, seed, data)
    observers = observers_of(run)
    resume(run, observers)
    n, start = len(run.counts), run.state["next_stage"]
    bar = tqdm(range(start, n), desc=f"{experiment}/{method}/seed{seed}", unit="stage", disable=not progress,
               initial=start, total=n)
    for stage in bar:
        if run.pool.n_labeled != run.counts[stage]:
            raise RuntimeError(f"stage {stage}: {run.pool.n_labeled} labeled, expected {run.counts[stage]}")
        request = train_request(run, stage, progress)
        trained = yield request
        bar.set_postfix({run.exp.metric: f"{evaluate_stage(run, stage, request, trained, observers):.3f}"})
        if stage + 1 < n:
            query_stage(run, stage, observers)
        commit_stage(run, stage, observers)
    return finish_run(run, observers)


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
