"""The output contract every backbone honours, and the trunk/head split MC-dropout relies on."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import nn

from repro.core.seeding import derive_seed


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # (N, C)
    features: torch.Tensor  # (N, D) penultimate features (what the classifier head sees)
    stages: tuple[torch.Tensor, ...] = ()  # intermediate stage outputs where a backbone exposes them


class Backbone(nn.Module):
    """A classifier split into `embed(x) -> features` and `head(features) -> logits`.

    The head holds the only dropout a backbone may add after its trunk, so MC-dropout can run the trunk once
    and sample the head T times (same distribution, T times cheaper).
    """

    feature_dim: int
    head: nn.Module

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features = self.embed(x)
        return ModelOutput(self.head(features), features)


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


def classifier_head(in_features: int, num_classes: int, dropout: float) -> nn.Module:
    """Dropout (if any) then the final linear layer."""
    layers: list[nn.Module] = [RunDropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def final_linear(model: nn.Module) -> nn.Linear:
    """The last linear layer of a backbone's head (the classifier a method's extra heads copy the shape of)."""
    return [m for m in model.head.modules() if isinstance(m, nn.Linear)][-1]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
