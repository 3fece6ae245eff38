"""The one shared trainer: what a run's training step sees (`TrainContext`), how methods extend it (`TrainingHook`),
batching, the one epoch loop (`run_epochs`: validation split, best epoch, early stop; it steps a lone run or a
lockstep group of runs, `repro.exec.lockstep`) and evaluation. Methods extend it through a hook, never by copying the
loop; optimizers are `repro.core.optim`'s, device, precision and layout `repro.core.device`'s.

Speed rules (PERFORMANCE.md): the dataset stays on the device as uint8; batches are index tensors drawn
on the device; augmentation is batched on the device; losses accumulate on the device and are read once
per epoch (never a host sync per step); bf16 autocast + channels_last on CUDA, fp32 on CPU (bf16 training there
only with the recipe's opt-in `bf16_cpu`); fused optimizers.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from repro.core import distributed
from repro.core.device import autocast, device_layout, model_layout
from repro.core.dropout import dropout_generator, run_dropout
from repro.core.infer import Preprocess, accuracy
from repro.core.optim import SCHEDULES, ScheduledOptimizer, build_optimizer
from repro.core.seeding import derive_seed
from repro.core.tasks import Task, task_of
from repro.spec.recipe import Recipe, learning_rate


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module):
    """Forward passes inside leave every BatchNorm's running statistics (and batch counter) unchanged; the
    batch is still normalised with its own statistics in train mode (momentum 0 for the duration)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        if m.momentum is None:
            raise ValueError("frozen_batchnorm_stats needs BatchNorm with a momentum (not a cumulative average)")
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Modules in eval mode inside, back to their own mode after."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class TrainData(Protocol):
    """What the trainer trains on: a pool of inputs with targets (`repro.data.datasets.ImageData`, `FeatureData`)
    and the preprocessing its recipe asks for."""

    train_x: torch.Tensor
    train_y: torch.Tensor

    def augmenter(self, recipe: Recipe, device) -> Preprocess: ...


class NoAugment:
    def train(self, x, gen):
        return x

    def eval(self, x):
        return x


@dataclass
class FeatureData:
    """Plain float inputs with labels (e.g. DAL's discriminator on embeddings): trained with the same loop,
    no augmentation or normalisation."""

    train_x: torch.Tensor
    train_y: torch.Tensor

    def augmenter(self, recipe: Recipe, device) -> NoAugment:
        return NoAugment()


def make_augmenter(data: TrainData, recipe: Recipe, device) -> Preprocess:
    """The training preprocessing of `data` under `recipe` (ImageData: its spec's augmentations and normalisation)."""
    return data.augmenter(recipe, device)


class BatchStream:
    """Endless shuffled batches of `indices` (a device tensor), reshuffled every pass.

    drop_last=False: every pass yields ceil(n/B) batches, the last one partial (torchvision's default).
    drop_last=True: floor(n/B) full batches per pass (a cycled loader with drop_last, as MCDAL's reference).
    """

    def __init__(self, indices: torch.Tensor, batch_size: int, gen: torch.Generator, drop_last: bool = False):
        if indices.numel() == 0:
            raise ValueError("cannot draw batches from an empty index set")
        self.indices, self.batch_size, self.gen = indices, batch_size, gen
        self.drop_last = drop_last and indices.numel() >= batch_size
        self._batches: list[torch.Tensor] = []

    def pass_batches(self) -> list[torch.Tensor]:
        """One reshuffled pass over the indices, split into batches (no host sync: sizes are static)."""
        perm = self.indices[torch.randperm(self.indices.numel(), generator=self.gen, device=self.indices.device)]
        batches = list(perm.split(self.batch_size))
        if self.drop_last and batches[-1].numel() < self.batch_size:
            batches.pop()
        return batches

    def next(self) -> torch.Tensor:
        if not self._batches:
            self._batches = self.pass_batches()[::-1]
        return self._batches.pop()


# --- the one epoch loop: a lone run (`fit`) or a lockstep group of runs (`repro.exec.lockstep.fit_group`) ---


@dataclass
class TrainResult:
    epochs: int
    steps: int
    seconds: float
    final_loss: float
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    # the method's trained modules (the hook's `build_modules`), for its query and the checkpoint
    state: nn.ModuleDict = field(default_factory=nn.ModuleDict)


def split_validation(labeled: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a seeded `fraction` of the labeled set held out (none when fraction <= 0)."""
    if fraction <= 0:
        return labeled, labeled[:0]
    perm = np.random.default_rng(derive_seed(seed, 0, "validation")).permutation(labeled)
    n_val = int(math.floor(len(labeled) * fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def labeled_pass(stream: BatchStream, recipe: Recipe) -> list[torch.Tensor]:
    """One epoch's labeled batches of the stream: a reshuffled pass, or the recipe's fixed iterations of
    the cycled stream."""
    if recipe.epoch_iterations is None:
        return stream.pass_batches()
    return [stream.next() for _ in range(recipe.epoch_iterations)]


class Trainee(Protocol):
    """What `run_epochs` steps: `runs` runs trained together (1 for a lone run)."""

    runs: int
    has_validation: bool

    def train_epoch(self, epoch: int) -> tuple[torch.Tensor, int]:
        """One epoch of training: the (runs,) summed step losses (on the device) and the number of steps."""

    def validation_accuracy(self) -> list[float]:
        """Each run's accuracy on its held-out split (eval mode; one host sync)."""

    def snapshot(self, run: int) -> Any:
        """A copy of run `run`'s weights, to restore if this epoch stays the best."""

    def restore(self, run: int, state: Any) -> None:
        """Leave run `run`'s model with these weights (None: its weights as trained)."""

    def end_epoch(self) -> bool:
        """After-epoch work; True stops training."""


def run_epochs(trainee: Trainee, recipe: Recipe, desc: str | None = None) -> list[TrainResult]:
    """Train for the recipe's epochs (or until `end_epoch` says stop); with a validation split, each run ends with
    the weights of its best validation epoch from `recipe.best_after_epoch` on."""

    start, steps, epochs_run = time.perf_counter(), 0, 0
    runs = trainee.runs
    best_acc = [-1.0] * runs
    best_epoch: list[int | None] = [None] * runs
    best_state: list[Any] = [None] * runs
    losses = [float("nan")] * runs
    # epoch bars only on a terminal (dvc logs keep the per-stage bars)
    bar = tqdm(range(recipe.epochs), desc=desc, leave=False, disable=None if desc else True, unit="ep")
    for epoch in bar:
        epochs_run = epoch + 1
        loss_sum, n_batches = trainee.train_epoch(epoch)
        steps += n_batches
        if trainee.has_validation and epoch >= recipe.best_after_epoch:
            for r, acc in enumerate(trainee.validation_accuracy()):
                if acc > best_acc[r]:
                    best_acc[r], best_epoch[r], best_state[r] = acc, epoch, trainee.snapshot(r)
        stop = trainee.end_epoch()
        if desc is not None or epoch == recipe.epochs - 1 or stop:
            losses = (loss_sum / max(1, n_batches)).tolist()  # one host sync per epoch
            bar.set_postfix(loss=f"{sum(losses) / runs:.3f}")
        if stop:
            break
    for r in range(runs):
        trainee.restore(r, best_state[r])
    share = (time.perf_counter() - start) / runs
    return [TrainResult(epochs_run, steps, share, losses[r], best_epoch[r],
                        best_acc[r] if best_state[r] is not None else None) for r in range(runs)]


class TrainContext:
    """What a hook sees: device, augmentation, the method's modules (`state`), optimizers with their own
    settings and schedules, the unlabeled stream."""

    def __init__(self, model: nn.Module, recipe: Recipe, augmenter: Preprocess, gen: torch.Generator,
                 device: torch.device, data: TrainData, state: nn.ModuleDict | None = None):
        self.model, self.recipe, self.augmenter, self.gen, self.device, self.data = (
            model, recipe, augmenter, gen, device, data,
        )
        self.state = state if state is not None else nn.ModuleDict()
        self.task: Task = task_of(data)
        self.optimizers: list[ScheduledOptimizer] = []
        self.task_optimizer = self.make_optimizer(model.parameters())
        self.labeled_stream: BatchStream | None = None  # set by fit (the cycled labeled stream)
        self.unlabeled_stream: BatchStream | None = None
        # The unlabeled stream and its augmentation draw from their own generator, so a hook that only reads
        # unlabeled data leaves the task model's batches, augmentation and initialisation unchanged.
        self.unlabeled_gen: torch.Generator | None = None
        self._driving_unlabeled: torch.Tensor | None = None
        self.epoch, self.phase = 0, ""

    def make_optimizer(self, params, kind: str | None = None, lr: float | None = None,
                       schedule: str | Callable[[int, int, int], float] = "recipe", *,
                       momentum: float | None = None, weight_decay: float | None = None, nesterov: bool | None = None,
                       betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
        """An optimizer with its own settings; each one left None is the recipe's (kind, lr, momentum, weight
        decay, Nesterov). E.g. VAAL's VAE: make_optimizer(vae.parameters(), "adam", 5e-4, "constant",
        weight_decay=0.0) beside the task model's SGD on the recipe's schedule."""
        r = self.recipe
        kind, lr = kind or r.optimizer, r.lr if lr is None else lr
        wd = r.weight_decay if weight_decay is None else weight_decay
        if not (callable(schedule) or schedule in SCHEDULES):
            raise ValueError(f"schedule {schedule!r}: expected one of {SCHEDULES} or a callable")
        opt = build_optimizer(params, kind, lr, r.momentum if momentum is None else momentum, wd,
                              r.nesterov if nesterov is None else nesterov, betas)
        self.optimizers.append(ScheduledOptimizer(opt, lr, schedule))
        return opt

    def set_learning_rates(self, recipe_lr: float, epoch: int, step: int, steps_per_epoch: int) -> None:
        """Every optimizer's rate for this step (`recipe_lr` is the recipe schedule's rate at this step)."""
        for so in self.optimizers:
            if so.schedule == "constant":
                continue
            if so.schedule == "recipe":
                lr = recipe_lr if so.base_lr == self.recipe.lr else so.base_lr * recipe_lr / self.recipe.lr
            else:
                lr = so.base_lr * so.schedule(epoch, step, steps_per_epoch)
            for group in so.optimizer.param_groups:
                group["lr"] = lr

    @staticmethod
    def step(optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer], loss: torch.Tensor,
             retain_graph: bool = False) -> torch.Tensor:
        """zero_grad -> backward -> step on one optimizer (or several sharing one backward, e.g. a task model and
        a module trained on one joint loss); returns the detached loss."""
        opts = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain_graph)
        for opt in opts:
            opt.step()
        return loss.detach()

    def autocast(self):
        return autocast(self.device, self.recipe.bf16, cpu=self.recipe.bf16_cpu)

    def prepare(self, images: torch.Tensor, train: bool = True, gen: torch.Generator | None = None) -> torch.Tensor:
        """Raw uint8 batch -> augmented (train) or plain (eval), normalized float batch in the device layout."""
        x = self.augmenter.train(images, gen or self.gen) if train else self.augmenter.eval(images)
        return device_layout(x, self.device)

    def next_unlabeled(self) -> torch.Tensor:
        """The next augmented unlabeled batch (hooks that set `uses_unlabeled`): in a phase driven by the
        unlabeled pass, that pass's current batch; otherwise the next batch of the endless unlabeled stream."""
        if self._driving_unlabeled is not None:
            idx, self._driving_unlabeled = self._driving_unlabeled, None
        elif self.unlabeled_stream is None:
            raise RuntimeError("this hook did not declare uses_unlabeled, or the unlabeled pool is empty")
        else:
            idx = self.unlabeled_stream.next()
        return self.prepare(self.data.train_x[idx], gen=self.unlabeled_gen)

    def labeled_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented labeled batch (x, y) of these indices, targets transformed with their images (masks and
        boxes flip with them); classification draws exactly what `prepare` draws."""
        if self.task.name == "classification" or isinstance(self.data, FeatureData):
            return self.prepare(self.data.train_x[idx]), self.data.train_y[idx]
        if isinstance(self.augmenter, NoAugment):
            return self.data.train_x[idx], self.data.train_y[idx]
        x, y = self.augmenter.train_pair(self.data.train_x[idx], self.data.train_y[idx], self.gen, self.task.name)
        return device_layout(x, self.device), y

    def next_labeled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh augmented labeled batch (x, y) from the cycled labeled stream, for methods that take more
        steps per iteration than the trainer's one labeled batch (VAAL's two VAE steps)."""
        return self.labeled_batch(self.labeled_stream.next())

    def task_loss(self, out, y: torch.Tensor) -> torch.Tensor:
        """The task's mean training loss of a model output (classification: cross-entropy)."""
        return self.task.loss(self.model, out, y)

    def default_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss on the labeled batch (classification: cross-entropy), one step of the task optimizer;
        returns the detached loss."""
        with self.autocast():
            loss = self.task_loss(self.model(x), y)
        return self.step(self.task_optimizer, loss)


class TrainingHook:
    """How a method extends training: its own modules and optimizers (`setup`), its own step (`training_step`).

    Set `uses_unlabeled = True` to get `ctx.next_unlabeled()` batches. `epoch_phases(epoch)` names the passes
    that make one epoch (ADS: agreement, discrepancy, labeled); `ctx.phase` tells the step which one it is in.
    `phase_driver(phase)` says what one pass iterates: "labeled" (one pass over the labeled batches, or the
    recipe's fixed iterations), "unlabeled" (one pass over the unlabeled set; the step gets x = y = None and
    reads the batch with `ctx.next_unlabeled()`), or "unlabeled+labeled" (the same, with a labeled batch from
    the cycled labeled stream as x, y). `should_stop` is asked after every epoch (one host sync per epoch is
    fine). The default is plain CE on labeled passes.
    """

    uses_unlabeled: bool = False
    phases: tuple[str, ...] = ("train",)

    def build_modules(self, model: nn.Module, spec) -> dict[str, nn.Module]:
        """The method's own networks, fresh (on the CPU; `fit` moves them to the device): they come back in
        `TrainResult.state`, reach the query as `QueryContext.state` and are checkpointed with the task model.
        `spec` is the dataset's DatasetSpec (None for plain feature data)."""
        return {}

    def epoch_phases(self, epoch: int) -> tuple[str, ...]:
        return self.phases

    def phase_driver(self, phase: str) -> str:
        return "labeled"

    def setup(self, ctx: TrainContext) -> None:
        """Create the optimizers of `ctx.state`'s modules with ctx.make_optimizer, and per-fit scratch."""

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ctx.default_step(x, y)

    def learning_rate(self, recipe: Recipe, epoch: int, step: int, steps_per_epoch: int, n_train: int) -> float:
        """The recipe schedule's rate at this step (optimizers on the "recipe" schedule scale with it)."""
        return learning_rate(recipe, epoch, step, steps_per_epoch)

    def on_epoch_end(self, ctx: TrainContext) -> None:
        """Called after every epoch (one host sync per epoch is fine)."""

    def should_stop(self, ctx: TrainContext) -> bool:
        return False


def fit(
    model: nn.Module,
    data: TrainData,
    labeled: np.ndarray,
    recipe: Recipe,
    seed: int,
    hook: TrainingHook | None = None,
    unlabeled: np.ndarray | None = None,
    progress: str | None = None,
    state: nn.ModuleDict | None = None,
) -> TrainResult:
    """Train `model` (already on data's device) on the labeled indices with `recipe`; returns a summary with
    the method's trained modules (`state`: the given ones trained further, or the hook's fresh `build_modules`).

    With `recipe.validation_fraction`, a seeded share of the labeled set is held out and the weights of the
    best validation epoch after `best_after_epoch` are loaded back at the end (DAL's reference protocol).
    """
    hook = hook or TrainingHook()
    if distributed.active_world_size() > 1:  # under torchrun: each rank steps the DDP model on its shard
        hook = DataParallelHook(hook, recipe.batch_size)
    device = data.train_x.device
    gen = torch.Generator(device=device).manual_seed(int(seed))
    torch.manual_seed(int(seed))  # the global RNG, for what draws from it (a method's own dropout)
    with run_dropout(model, dropout_generator(seed, device)):  # the task model's masks: the run's own generator
        return _fit(model, data, labeled, recipe, seed, hook, unlabeled, progress, state, device, gen)


def _fit(model, data, labeled, recipe, seed, hook, unlabeled, progress, state, device, gen) -> TrainResult:
    model_layout(model, device)
    if state is None:
        state = nn.ModuleDict(hook.build_modules(model, getattr(data, "spec", None)))
    state = state.to(device)
    ctx = TrainContext(model, recipe, make_augmenter(data, recipe, device), gen, device, data, state)
    hook.setup(ctx)
    result = run_epochs(_RunTrainee(ctx, hook, labeled, unlabeled, seed), recipe, progress)[0]
    result.state = state
    return result


class _RunTrainee:
    """One run for `run_epochs`: an epoch steps the method's hook through the epoch's phases."""

    runs = 1

    def __init__(self, ctx: TrainContext, hook: TrainingHook, labeled, unlabeled, seed: int):
        self.ctx, self.hook, recipe, device = ctx, hook, ctx.recipe, ctx.device
        train_idx, val_idx = split_validation(np.asarray(labeled), recipe.validation_fraction, seed)
        self.n_train = len(train_idx)
        ctx.labeled_stream = BatchStream(torch.as_tensor(train_idx, device=device), recipe.batch_size, ctx.gen,
                                         drop_last=recipe.epoch_iterations is not None)
        if hook.uses_unlabeled and unlabeled is not None and len(unlabeled):
            ctx.unlabeled_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, 0, "unlabeled"))
            ctx.unlabeled_stream = BatchStream(torch.as_tensor(unlabeled, device=device), recipe.batch_size,
                                               ctx.unlabeled_gen, drop_last=recipe.epoch_iterations is not None)
        self.val_idx = torch.as_tensor(val_idx, device=device)
        self.has_validation = bool(self.val_idx.numel())

    def train_epoch(self, epoch: int) -> tuple[torch.Tensor, int]:
        ctx, hook, recipe = self.ctx, self.hook, self.ctx.recipe
        ctx.epoch = epoch
        ctx.model.train()
        loss_sum, n_batches = torch.zeros(1, device=ctx.device), 0
        for phase in hook.epoch_phases(epoch):
            ctx.phase = phase
            driver = hook.phase_driver(phase)
            if driver == "labeled":
                batches = labeled_pass(ctx.labeled_stream, recipe)
            elif driver in ("unlabeled", "unlabeled+labeled"):
                batches = ctx.unlabeled_stream.pass_batches() if ctx.unlabeled_stream is not None else []
            else:
                raise ValueError(f"unknown phase driver {driver!r} for phase {phase!r}")
            for i, idx in enumerate(batches):
                lr = hook.learning_rate(recipe, epoch, i, len(batches), self.n_train)
                ctx.set_learning_rates(lr, epoch, i, len(batches))
                if driver == "labeled":
                    x, y = ctx.labeled_batch(idx)
                else:
                    ctx._driving_unlabeled = idx
                    x = y = None
                    if driver == "unlabeled+labeled":
                        x, y = ctx.labeled_batch(ctx.labeled_stream.next())
                loss_sum += hook.training_step(ctx, x, y)
                ctx._driving_unlabeled = None
            n_batches += len(batches)
        return loss_sum, n_batches

    def validation_accuracy(self) -> list[float]:
        ctx = self.ctx
        if ctx.task.name != "classification":
            raise ValueError("validation_fraction (best-epoch selection) is defined for classification only")
        return [accuracy(ctx.model, ctx.data.train_x, ctx.data.train_y, self.val_idx, ctx.augmenter,
                         ctx.recipe.eval_batch_size, ctx.recipe.bf16)]

    def snapshot(self, run: int) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.ctx.model.state_dict())

    def restore(self, run: int, state: dict[str, torch.Tensor] | None) -> None:
        if state is not None:
            self.ctx.model.load_state_dict(state)

    def end_epoch(self) -> bool:
        self.hook.on_epoch_end(self.ctx)
        return bool(self.hook.should_stop(self.ctx))


class DataParallelHook(TrainingHook):
    """The default training step, data-parallel: the augmented global batch is cut to this rank's shard and the
    DDP model steps on it. The shard's mean loss is scaled by (shard size x world size / batch size), so the
    averaged gradient is the global batch's mean-loss gradient even when a last partial batch splits unevenly.
    Everything else (phases, schedule, epoch callbacks) is the wrapped hook's."""

    def __init__(self, inner: TrainingHook, batch_size: int, world_size: int | None = None):
        self.world_size = world_size or distributed.active_world_size()
        if type(inner).training_step is not TrainingHook.training_step:
            raise distributed.DistributedError(f"distributed training (world size {self.world_size}) supports methods trained with "
                             f"the default step; {type(inner).__name__} has its own training_step")
        if batch_size % self.world_size:
            raise distributed.DistributedError(f"batch_size {batch_size} is not divisible by the world size {self.world_size} "
                             "(torchrun --nproc-per-node): every rank takes an equal share of each global batch")
        self.inner, self.uses_unlabeled, self.phases = inner, inner.uses_unlabeled, inner.phases
        self.ddp: nn.parallel.DistributedDataParallel | None = None

    def build_modules(self, model, spec):
        return self.inner.build_modules(model, spec)

    def epoch_phases(self, epoch):
        return self.inner.epoch_phases(epoch)

    def phase_driver(self, phase):
        return self.inner.phase_driver(phase)

    def setup(self, ctx: TrainContext) -> None:
        self.inner.setup(ctx)
        self.ddp = distributed.wrap_model(ctx.model, ctx.device)

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if n < self.world_size:  # the same on every rank: no rank waits for the others
            raise distributed.DistributedError(f"a batch of {n} example(s) cannot be shared by {self.world_size} ranks; "
                             "use fewer processes or a recipe with epoch_iterations (full batches only)")
        xs, ys = distributed.shard(x, y, distributed.rank(), self.world_size)
        scale = len(xs) * self.world_size / n
        with ctx.autocast():
            loss = ctx.task_loss(self.ddp(xs), ys)
        return ctx.step(ctx.task_optimizer, loss * scale) / scale

    def learning_rate(self, recipe, epoch, step, steps_per_epoch, n_train):
        return self.inner.learning_rate(recipe, epoch, step, steps_per_epoch, n_train)

    def on_epoch_end(self, ctx):
        self.inner.on_epoch_end(ctx)

    def should_stop(self, ctx):
        return self.inner.should_stop(ctx)


@dataclass
class TrainRequest:
    """What a run asks the trainer for at one stage (`repro.al.loop.run_steps` yields it; `train.fit`'s arguments)."""

    model: nn.Module
    data: TrainData
    labeled: np.ndarray
    recipe: Recipe
    seed: int
    hook: TrainingHook | None = None
    unlabeled: np.ndarray | None = None
    progress: str | None = None
    state: nn.ModuleDict | None = None
    name: str = ""  # "method/seed<k>", for the group layout in the records
    group: list[str] = field(default_factory=list)  # filled by the driver: the runs this one trained with


def fit_request(req: TrainRequest):
    """`train.fit` of one run's stage, alone."""
    return fit(req.model, req.data, req.labeled, req.recipe, req.seed, hook=req.hook, unlabeled=req.unlabeled,
               progress=req.progress, state=req.state)


def grouping_enabled(group_runs: int | str, device: torch.device) -> bool:
    """Whether params' `group_runs` groups anything on this device ("auto" groups on a GPU only)."""
    return group_runs != 1 and not (group_runs == "auto" and device.type != "cuda")
