"""The output contract every backbone honours, and the trunk/head split MC-dropout relies on."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from repro.core.dropout import RunDropout


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


def classifier_head(in_features: int, num_classes: int, dropout: float) -> nn.Module:
    """Dropout (if any) then the final linear layer."""
    layers: list[nn.Module] = [RunDropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def final_linear(model: nn.Module) -> nn.Linear:
    """The last linear layer of a backbone's head (the classifier a method's extra heads copy the shape of)."""
    return [m for m in model.head.modules() if isinstance(m, nn.Linear)][-1]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
