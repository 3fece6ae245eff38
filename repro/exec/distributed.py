"""Data-parallel training of one run under `torchrun` (DistributedDataParallel): the mechanics only.

Every rank runs the same code with the same seed, so every rank draws the same global batch (the same indices
and the same augmentation, exactly as one process would); `DataParallelHook` slices each augmented global batch
to this rank's contiguous shard and steps the DDP-wrapped model, whose gradients are averaged across ranks. The
trainer stays one loop: `train.fit` swaps its hook for this one when a process group of more than one rank is
initialised. NCCL on CUDA (with SyncBatchNorm), gloo on a CPU.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from repro.core.train import TrainContext, TrainingHook


class DistributedError(ValueError):
    """Something data-parallel training cannot do (reported as one line)."""


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (RANK / WORLD_SIZE); (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return world()[1] > 1


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def active_world_size() -> int:
    """The size of the initialised process group (1 when none is)."""
    return dist.get_world_size() if initialized() else 1


def rank() -> int:
    return dist.get_rank() if initialized() else world()[0]


def is_writer() -> bool:
    """Rank 0 writes records and checkpoints; the other ranks only train."""
    return rank() == 0


def init_process_group_from_env(device: torch.device) -> torch.device:
    """Join torchrun's process group (env://): NCCL on CUDA, after binding this process to GPU LOCAL_RANK;
    gloo on a CPU. Returns the device this rank trains on."""
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                               "use --nproc-per-node <= the number of GPUs")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return device


def destroy() -> None:
    if initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if initialized():
        dist.barrier()


def check_default_steps(params, experiment: str, methods: list[str]) -> None:
    """Stop before any work when a method trains its task model with its own step (not data-parallel yet)."""
    from repro.al.methods import method_spec
    from repro.al.strategies import build_strategy

    for m in methods:
        hook = build_strategy(*method_spec(params, m, experiment)).training_hook()
        if hook is not None and type(hook).training_step is not TrainingHook.training_step:
            raise DistributedError(f"method {m} trains with its own step ({type(hook).__name__}); torchrun runs "
                                   "only methods trained with the default step so far: run it without torchrun")


def wrap_model(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """DDP around `model` (its parameters stay the same objects, so optimizers built on `model` still apply);
    on CUDA its BatchNorm layers become SyncBatchNorm (in place) first."""
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of this rank's contiguous share of n examples (the first n % world_size ranks take one more)."""
    per, extra = divmod(n, world_size)
    lo = rank * per + min(rank, extra)
    return lo, lo + per + (rank < extra)


def shard(x: torch.Tensor, y: torch.Tensor, rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous shard of a global batch (x, y)."""
    lo, hi = shard_bounds(len(x), rank, world_size)
    return x[lo:hi], y[lo:hi]


def broadcast_indices(indices: np.ndarray) -> np.ndarray:
    """Rank 0's int64 index array on every rank (e.g. a query's picks, so that floating-point differences between
    GPUs cannot make the ranks' labeled sets diverge); unchanged without a process group."""
    if active_world_size() == 1:
        return indices
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    n = torch.tensor([len(indices)], dtype=torch.int64, device=device)
    dist.broadcast(n, 0)
    if rank() == 0:
        t = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=device)
    else:
        t = torch.empty(int(n), dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return t.cpu().numpy()


class DataParallelHook(TrainingHook):
    """The default training step, data-parallel: the augmented global batch is cut to this rank's shard and the
    DDP model steps on it. The shard's mean loss is scaled by (shard size x world size / batch size), so the
    averaged gradient is the global batch's mean-loss gradient even when a last partial batch splits unevenly.
    Everything else (phases, schedule, epoch callbacks) is the wrapped hook's."""

    def __init__(self, inner: TrainingHook, batch_size: int, world_size: int | None = None):
        self.world_size = world_size or active_world_size()
        if type(inner).training_step is not TrainingHook.training_step:
            raise DistributedError(f"distributed training (world size {self.world_size}) supports methods trained with "
                             f"the default step; {type(inner).__name__} has its own training_step")
        if batch_size % self.world_size:
            raise DistributedError(f"batch_size {batch_size} is not divisible by the world size {self.world_size} "
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
        self.ddp = wrap_model(ctx.model, ctx.device)

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if n < self.world_size:  # the same on every rank: no rank waits for the others
            raise DistributedError(f"a batch of {n} example(s) cannot be shared by {self.world_size} ranks; "
                             "use fewer processes or a recipe with epoch_iterations (full batches only)")
        xs, ys = shard(x, y, rank(), self.world_size)
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
