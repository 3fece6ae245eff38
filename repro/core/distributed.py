"""Data-parallel training of one run under `torchrun` (DistributedDataParallel): the mechanics only.

Every rank runs the same code with the same seed, so every rank draws the same global batch (the same indices
and the same augmentation, exactly as one process would); `DataParallelHook` slices each augmented global batch
to this rank's contiguous shard and steps the DDP-wrapped model, whose gradients are averaged across ranks. The
trainer stays one loop: `train.fit` swaps its hook for `train.DataParallelHook` when a process group of more than
one rank is initialised. NCCL on CUDA (with SyncBatchNorm), gloo on a CPU.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


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
