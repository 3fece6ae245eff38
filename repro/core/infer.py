"""Inference with a trained model, in eval mode, chunk by chunk on the device: logits and features, any per-output
function (dense outputs reduce per image inside it), pooled embeddings and top-1 accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import nn

from repro.core.device import autocast, device_layout


class Preprocess(Protocol):
    """What turns a raw uint8 batch into model input: augmented for training, plain for evaluation
    (repro.data.augment.Augmenter; the trainer's NoAugment for plain feature data)."""

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...

    def eval(self, x: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    indices: torch.Tensor | np.ndarray | None,
    augmenter: Preprocess,
    batch_size: int = 1024,
    bf16: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits fp32, features fp32) of images[indices] in eval mode, in large batches, on the device."""
    device = images.device
    idx = torch.arange(len(images), device=device) if indices is None else torch.as_tensor(indices, device=device)
    model.eval()
    logits, feats = [], []
    for chunk in idx.split(batch_size):
        x = device_layout(augmenter.eval(images[chunk]), device)
        with autocast(device, bf16):
            out = model(x)
        logits.append(out.logits.float())
        feats.append(out.features.float())
    return torch.cat(logits), torch.cat(feats)


@torch.no_grad()
def map_outputs(model: nn.Module, images: torch.Tensor, indices, augmenter, fn: Callable, batch_size: int = 1024,
                bf16: bool = True):
    """fn(model output) of images[indices] in eval mode, chunk by chunk on the device, concatenated (a tensor or a
    tuple of tensors): dense outputs reduce per image inside `fn`, so no N x H x W map is ever held whole."""
    device = images.device
    idx = torch.arange(len(images), device=device) if indices is None else torch.as_tensor(indices, device=device)
    model.eval()
    parts = []
    for chunk in idx.split(batch_size):
        x = device_layout(augmenter.eval(images[chunk]), device)
        with autocast(device, bf16):
            out = model(x)
        parts.append(fn(out))
    if parts and isinstance(parts[0], tuple):
        return tuple(torch.cat(p) for p in zip(*parts))
    return torch.cat(parts)


def accuracy(model, images, labels, indices, augmenter, batch_size=1024, bf16=True) -> float:
    """Top-1 accuracy of images[indices] (all when None): one host sync."""
    idx = torch.arange(len(labels), device=labels.device) if indices is None else torch.as_tensor(indices, device=labels.device)
    logits, _ = predict(model, images, idx, augmenter, batch_size, bf16)
    return float((logits.argmax(1) == labels[idx]).float().mean())
