"""Dropout whose masks come from a run's own generator, so a run's masks do not depend on what else shares the
process (lone runs, lockstep groups and worker processes draw the same masks)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from repro.core.seeding import derive_seed


class RunDropout(nn.Dropout):
    """nn.Dropout whose training masks are drawn from the run's own generator (`generator`, set by the trainer),
    so a run's masks do not depend on what else the process does and a lockstep group (repro.exec.lockstep) can draw
    the very same masks per run outside vmap and hand them in (`mask`). Without either: nn.Dropout."""

    generator: torch.Generator | None = None
    mask: torch.Tensor | None = None  # a {0, 1} mask of the input's shape, used once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.mask is not None:
            mask, self.mask = self.mask, None
        elif self.generator is not None:
            mask = draw_dropout_mask(x.shape, self.p, self.generator, x.device)
        else:
            return super().forward(x)
        return x * mask.to(x.dtype) * (1.0 / (1.0 - self.p))


def draw_dropout_mask(shape, p: float, generator: torch.Generator, device) -> torch.Tensor:
    """A keep-mask (1 with probability 1 - p) in fp32, the same draw for a lone run and its lockstep twin."""
    return torch.empty(tuple(shape), device=device).bernoulli_(1.0 - p, generator=generator)


def dropout_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of a run's task-model dropout masks (the same for a lone run and its lockstep twin)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, 0, "dropout"))


@contextlib.contextmanager
def run_dropout(model: nn.Module, generator: torch.Generator | None):
    """Every RunDropout of the model draws its masks from `generator` inside (nn.Dropout's global draw after)."""
    drops = [m for m in model.modules() if isinstance(m, RunDropout)]
    for m in drops:
        m.generator = generator
    try:
        yield
    finally:
        for m in drops:
            m.generator, m.mask = None, None
