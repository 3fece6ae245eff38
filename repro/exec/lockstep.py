"""Runs in lockstep: the runs of an experiment that train the same architecture with the same recipe on labeled
sets of the same size train together, one vmapped step over their stacked parameters
(`torch.func.stack_module_state` + `functional_call`), so a small model pays the per-step overhead once per group
instead of once per run.

Each run keeps everything that makes it itself: its own batches and augmentation (its own generator, drawn as a
lone `train.fit` draws them), its own dropout masks (its own generator, drawn outside vmap in the order a lone run
draws them), its own validation split and best epoch. SGD and Adam update every element on its own, so one
optimizer over the stacked parameters steps each run as its own optimizer would. What differs from a lone run is
floating-point summation order inside the batched kernels (~1e-7 relative), which training amplifies; a grouped run
is deterministic given its group (recorded in the run's stage records as `train_group`).

Only plain training is grouped (the task's loss on labeled batches, no method hook): methods that train networks
of their own train alone, as do runs with no partner of the same shape.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from repro.al.loop import load_experiment_data, run_steps
from repro.core import distributed
from repro.core.device import autocast, device_layout, model_layout
from repro.core.dropout import RunDropout, draw_dropout_mask, dropout_generator
from repro.core.optim import build_optimizer
from repro.core.tasks import task_of
from repro.core.train import (
    BatchStream,
    TrainingHook,
    TrainRequest,
    TrainResult,
    fit_request,
    labeled_pass,
    make_augmenter,
    run_epochs,
    split_validation,
)
from repro.data.datasets import ImageData
from repro.spec.params import Params
from repro.spec.recipe import Recipe, learning_rate

MEMORY_FRACTION = 0.25  # `group_runs: auto` keeps a group's training state under this share of the GPU's memory


def groupable(req: TrainRequest) -> bool:
    """Plain classification training of a task model on images: what `fit_group` implements."""
    plain = req.hook is None or type(req.hook) is TrainingHook
    return (plain and isinstance(req.data, ImageData) and req.data.spec.task == "classification"
            and distributed.active_world_size() <= 1)


def group_key(req: TrainRequest) -> tuple:
    """Requests with equal keys can share one lockstep step."""
    return (type(req.model).__name__, getattr(req.model, "build_args", None), len(req.labeled), req.recipe,
            req.data.spec.name, tuple(req.data.train_x.shape[1:]), str(req.data.train_x.device))


def training_state_bytes(model: nn.Module, recipe: Recipe, image_shape: Sequence[int]) -> int:
    """A run's training memory: parameters, gradients and two optimizer moments, plus the activations of one batch
    (measured with forward hooks on a meta-device copy; x3 for what backward keeps)."""
    n_params = sum(p.numel() for p in model.parameters())
    acts = [0]

    def count(_m, _inp, out):
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                acts[0] += t.numel()

    meta = copy.deepcopy(model).to("meta")
    handles = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    with torch.no_grad():
        meta.train()(torch.empty(recipe.batch_size, *image_shape, device="meta"))
    for h in handles:
        h.remove()
    return 4 * (4 * n_params + 3 * acts[0])


def auto_group_size(model: nn.Module, recipe: Recipe, image_shape: Sequence[int], device: torch.device) -> int:
    """`group_runs: auto`: on a GPU the largest group whose training state fits in MEMORY_FRACTION of its memory;
    on a CPU 1 (every run alone): there the batched (grouped) convolutions and pooling of a vmapped step cost more
    than G lone steps (`python -m repro bench runs`), and worker processes are the better use of the cores."""
    if device.type != "cuda":
        return 1
    cap = MEMORY_FRACTION * torch.cuda.get_device_properties(device).total_memory
    return memory_group_size(model, recipe, image_shape, cap)


def memory_group_size(model: nn.Module, recipe: Recipe, image_shape: Sequence[int], cap_bytes: float) -> int:
    """The largest group whose training state (`training_state_bytes` per run) fits in cap_bytes (at least 1)."""
    return max(1, int(cap_bytes // max(1, training_state_bytes(model, recipe, image_shape))))


def _dropout_shapes(base: nn.Module, x_shape: torch.Size) -> list[tuple[RunDropout, tuple[int, ...]]]:
    """Each RunDropout of the model with the input shape it sees for one run's batch, in call order."""
    seen: list[tuple[RunDropout, tuple[int, ...]]] = []
    drops = [m for m in base.modules() if isinstance(m, RunDropout)]
    if not drops:
        return []
    handles = [m.register_forward_pre_hook(lambda m, inp: seen.append((m, tuple(inp[0].shape)))) for m in drops]
    meta = base.to("meta")
    with torch.no_grad():
        meta(torch.empty(x_shape, device="meta"))
    for h in handles:
        h.remove()
    if len({id(m) for m, _ in seen}) != len(seen):
        raise ValueError("lockstep training draws one mask per dropout module per step; this model calls one twice")
    return seen


class LockstepGroup:
    """G runs trained together, for `train.run_epochs`: their stacked parameters, each run's own batch stream,
    augmentation and dropout generators and validation split, and one vmapped step over all of them."""

    def __init__(self, requests: Sequence[TrainRequest]):
        self.requests = list(requests)
        first = self.requests[0]
        self.recipe, self.device = first.recipe, first.data.train_x.device
        self.runs = len(self.requests)
        self.models = [r.model for r in self.requests]
        self.task = task_of(first.data)
        for m in self.models:
            model_layout(m, self.device)
        params, buffers = stack_module_state(self.models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.base = copy.deepcopy(self.models[0]).to("meta")
        self.base.train()
        r, device = self.recipe, self.device
        self.optimizer = build_optimizer(list(self.params.values()), r.optimizer, r.lr, r.momentum, r.weight_decay,
                                         r.nesterov)
        self._masks_for: dict[torch.Size, list[tuple[RunDropout, tuple[int, ...]]]] = {}
        self._loss = vmap(self._run_loss)
        # what a lone `train.fit` of each request draws from: its batch/augmentation and dropout generators
        self.augmenter = make_augmenter(first.data, r, device)
        self.gens = [torch.Generator(device=device).manual_seed(int(q.seed)) for q in self.requests]
        self.dropout_gens = [dropout_generator(q.seed, device) for q in self.requests]
        splits = [split_validation(np.asarray(q.labeled), r.validation_fraction, q.seed) for q in self.requests]
        self.streams = [BatchStream(torch.as_tensor(tr, device=device), r.batch_size, g,
                                    drop_last=r.epoch_iterations is not None) for (tr, _), g in zip(splits, self.gens)]
        vals = [torch.as_tensor(va, device=device) for _, va in splits]
        self.has_validation = bool(vals[0].numel())
        if self.has_validation:
            self.val_x = torch.stack([self.augmenter.eval(q.data.train_x[v]) for q, v in zip(self.requests, vals)])
            self.val_y = torch.stack([q.data.train_y[v] for q, v in zip(self.requests, vals)])

    def _run_loss(self, params, buffers, x, y, masks):
        drops = self._drops
        for (m, _), mask in zip(drops, masks):
            m.mask = mask
        out = functional_call(self.base, (params, buffers), (x,))
        return self.task.loss(self.base, out, y)

    def train_epoch(self, epoch: int) -> tuple[torch.Tensor, int]:
        """One epoch of every run: each run's labeled pass, batch i of every run in one step."""
        passes = [labeled_pass(s, self.recipe) for s in self.streams]
        n = len(passes[0])
        loss_sum = torch.zeros(self.runs, device=self.device)
        for i in range(n):
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.recipe, epoch, i, n)
            xs, ys = [], []
            for r, (req, g) in enumerate(zip(self.requests, self.gens)):  # each run's batch, its own augmentation
                idx = passes[r][i]
                xs.append(self.augmenter.train(req.data.train_x[idx], g))
                ys.append(req.data.train_y[idx])
            loss_sum += self.step(device_layout(torch.stack(xs).flatten(0, 1), self.device).unflatten(0, (self.runs, -1)),
                                  torch.stack(ys))
        return loss_sum, n

    def step(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """One optimizer step of every run on its batch (xs: (G, B, ...), ys: (G, B)); returns the (G,) losses."""
        shape = xs.shape[1:]
        if shape not in self._masks_for:
            self._masks_for[shape] = _dropout_shapes(self.base, shape)
        self._drops = self._masks_for[shape]
        masks = tuple(
            torch.stack([draw_dropout_mask(s, m.p, g, self.device) for g in self.dropout_gens])
            for m, s in self._drops
        )
        with autocast(self.device, self.recipe.bf16, cpu=self.recipe.bf16_cpu):
            losses = self._loss(self.params, self.buffers, xs, ys, masks)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.optimizer.step()
        return losses.detach()

    def validation_accuracy(self) -> list[float]:
        return self.accuracy(self.val_x, self.val_y).tolist()  # one host sync per epoch

    @torch.no_grad()
    def accuracy(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """(G,) top-1 accuracy of each run on its own (equally sized) held-out batch, eval mode."""
        self.base.eval()
        try:
            def logits(p, b, x):
                return functional_call(self.base, (p, b), (x,)).logits.float()

            correct = torch.zeros(self.runs, device=self.device)
            for lo in range(0, xs.shape[1], self.recipe.eval_batch_size):
                x = xs[:, lo : lo + self.recipe.eval_batch_size]
                with autocast(self.device, self.recipe.bf16):
                    out = vmap(logits)(self.params, self.buffers, x)
                correct += (out.argmax(-1) == ys[:, lo : lo + x.shape[1]]).float().sum(1)
            return correct / xs.shape[1]
        finally:
            self.base.train()

    def snapshot(self, run: int) -> dict[str, torch.Tensor]:
        return {k: v[run].detach().clone() for k, v in {**self.params, **self.buffers}.items()}

    def restore(self, run: int, state: dict[str, torch.Tensor] | None = None) -> None:
        """Copy run `run`'s parameters and buffers (or a snapshot of them) into its own model."""
        state = state or {k: v[run] for k, v in {**self.params, **self.buffers}.items()}
        own = dict(self.models[run].named_parameters()) | dict(self.models[run].named_buffers())
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)

    def end_epoch(self) -> bool:
        return False


def fit_group(requests: Sequence[TrainRequest]) -> list[TrainResult]:
    """`train.fit` of every request in lockstep (plain training: see `groupable`); the models are trained in place
    and one TrainResult per request comes back (its `seconds` is the run's share of the group's time)."""
    if not requests:
        return []
    keys = {group_key(r) for r in requests}
    if len(keys) != 1 or not all(groupable(r) for r in requests):
        raise ValueError("fit_group: the requests differ in model, recipe, labeled count or data shape, or one "
                         "needs a method's own training; train those alone")
    progress = requests[0].progress
    results = run_epochs(LockstepGroup(requests), requests[0].recipe,
                         progress and f"{progress} (group of {len(requests)})")
    names = sorted(r.name for r in requests)
    for r in requests:
        r.group = names
    return results


def run_group(params: Params, experiment: str, runs: list[tuple[str, int]], data: ImageData | None = None,
              progress: bool = True, group_runs: int | str | None = None) -> Iterator[dict[str, Any]]:
    """Run (or resume) several runs of one experiment, stage by stage, training in lockstep (`repro.exec.lockstep`)
    every set of runs whose training can share a step, at most `group_runs` (params' `group_runs`) at a time;
    yields each run's record as it finishes. Queries, evaluation, checkpoints and records stay per run."""
    limit = params.group_runs if group_runs is None else group_runs
    data = data if data is not None else load_experiment_data(params, experiment)
    steps = {r: run_steps(params, experiment, r[0], r[1], data, progress=False) for r in runs}
    pending: dict[tuple[str, int], TrainRequest] = {}
    for r, gen in steps.items():
        try:
            pending[r] = next(gen)
        except StopIteration as done:
            yield done.value
    total = len(params.experiment(experiment).schedule.labeled_counts(data.pool_size, experiment)) * len(runs)
    bar = tqdm(total=total, desc=f"{experiment}: {len(runs)} runs", unit="stage", disable=not progress)
    while pending:
        by_key: dict[Any, list[tuple[str, int]]] = defaultdict(list)
        for r, req in pending.items():
            by_key[group_key(req) if groupable(req) else ("alone", r)].append(r)
        following: dict[tuple[str, int], TrainRequest] = {}
        for members in by_key.values():
            first = pending[members[0]]
            size = limit if limit != "auto" else auto_group_size(first.model, first.recipe,
                                                                 first.data.train_x.shape[1:],
                                                                 first.data.train_x.device)
            for lo in range(0, len(members), size):
                chunk = members[lo : lo + size]
                reqs = [pending[r] for r in chunk]
                results = fit_group(reqs) if len(reqs) > 1 else [fit_request(reqs[0])]
                for r, req, res in zip(chunk, reqs, results):
                    torch.manual_seed(int(req.seed))  # the global RNG as a lone `fit` leaves it
                    try:
                        following[r] = steps[r].send(res)
                    except StopIteration as done:
                        yield done.value
                    bar.update()
        pending = following
    bar.close()
