"""Batched on-device augmentation drawn from the same distribution as the papers' torchvision pipelines.

Operates on raw uint8 batches (B, C, H, W) and returns normalized float batches, so padding and rotation
fill are zero in raw pixel space (as torchvision pads the PIL image before `Normalize`).

- `crop`:   RandomCrop(H, padding=4): per-image offsets uniform over 0..8 in each axis, zero padding.
- `flip`:   RandomHorizontalFlip(p=0.5), independent per image.
- `rotate`: RandomRotation(15): angle uniform in [-15, 15] degrees about the centre, nearest-neighbour,
            zero fill, no expansion; applied after crop and flip (MCDAL reference order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("crop", "flip", "rotate")
CROP_PADDING = 4
ROTATION_DEGREES = 15.0


def random_crop(x: torch.Tensor, gen: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Per-image random crop of a zero-padded batch; offsets uniform over 0..2*padding."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B,1,H,1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B,1,1,W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Independent horizontal flip of each image with probability p."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_rotate(x: torch.Tensor, gen: torch.Generator, degrees: float = ROTATION_DEGREES) -> torch.Tensor:
    """Rotate each image by its own angle ~ U[-degrees, degrees]; nearest-neighbour, zero fill, same size."""
    b, _, h, w = x.shape
    angle = (torch.rand(b, generator=gen, device=x.device) * 2 - 1) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output pixel centres in pixel units about the image centre; inverse-rotate to find the source pixel.
    ys = torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    src_x = cos[:, None, None] * gx + sin[:, None, None] * gy
    src_y = -sin[:, None, None] * gx + cos[:, None, None] * gy
    grid = torch.stack((src_x * 2 / w, src_y * 2 / h), dim=-1)  # align_corners=False normalisation
    out = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1] -> (x - mean) / std, per channel. mean/std are (C,) tensors on x's device."""
    return (x.float() / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]


class Augmenter:
    """A fixed augmentation list + normalization, applied to raw uint8 batches on their device."""

    def __init__(self, names: Sequence[str], mean: Sequence[float], std: Sequence[float], device):
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; allowed: {list(AUGMENTATIONS)}")
        # Always in the reference order crop -> flip -> rotate, whatever order the list gives.
        self.names = tuple(n for n in AUGMENTATIONS if n in names)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if "crop" in self.names:
            x = random_crop(x, gen)
        if "flip" in self.names:
            x = random_flip(x, gen)
        if "rotate" in self.names:
            x = random_rotate(x, gen)
        return normalize(x, self.mean, self.std)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)
