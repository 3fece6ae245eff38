"""Where and in what precision and memory layout training runs: the device, bf16 autocast, channels_last."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no CUDA device is visible; use device: auto or cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True, cpu: bool = False):
    """bf16 autocast on CUDA when enabled; on a CPU only when `cpu` is set as well (the recipe's opt-in
    `bf16_cpu`, training steps only): CPU paths run in fp32 otherwise."""
    if enabled and (device.type == "cuda" or (cpu and device.type == "cpu")):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_layout(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """channels_last for image batches on CUDA; unchanged otherwise."""
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" and x.dim() == 4 else x


def model_layout(model: nn.Module, device: torch.device) -> None:
    """channels_last weights on CUDA, and on a CPU for models that run faster so (`cpu_channels_last`: LeNet,
    whose max-pool oneDNN runs ~2x faster in NHWC; a CIFAR ResNet-18 x1/8 trains 25% slower in it on a CPU).
    cuDNN benchmarks its algorithms on CUDA unless deterministic algorithms are on (repro.core.determinism)."""
    if device.type == "cuda" or getattr(model, "cpu_channels_last", False):
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():  # (params' `deterministic`)
        torch.backends.cudnn.benchmark = True
