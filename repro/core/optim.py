"""The optimizers training uses: SGD or Adam (fused kernels where they apply) and how each one's learning rate
moves over training (`ScheduledOptimizer`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

SCHEDULES = ("recipe", "constant")


@dataclass
class ScheduledOptimizer:
    """An optimizer and how its learning rate moves: "recipe" scales its base rate by the recipe's schedule
    (multi-step decay, warm-up, a hook's `learning_rate`); "constant" keeps it; a callable maps
    (epoch, step_in_epoch, steps_per_epoch) to a factor of its base rate."""

    optimizer: torch.optim.Optimizer
    base_lr: float
    schedule: str | Callable[[int, int, int], float]


def build_optimizer(params, kind: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                    nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """SGD or Adam with these settings (both update each element on its own, so one optimizer over a lockstep
    group's stacked parameters steps every run exactly as its own optimizer would)."""
    params = list(params)
    # the fused kernels (one pass over every parameter, CPU and CUDA) where all parameters are dense floats
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    fused = bool(tensors) and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                               fused=fused or None)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)
    raise ValueError(f"optimizer kind {kind!r}: expected sgd or adam")
