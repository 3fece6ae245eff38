"""Deterministic synthetic stand-ins shaped like each real dataset (image shape, classes, split).

Each class owns several modes (smooth random prototypes). An image is its mode's prototype, plus a weaker
prototype of a random other class (a distractor that makes classes overlap), plus smooth and pixel noise,
shifted by a few pixels. Learnable, several modes per class, not trivially separable; optional class
imbalance (class frequencies decay geometrically to `imbalance` x the largest).
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from repro.spec.datasets import DatasetSpec


def _smooth(gen: torch.Generator, n: int, c: int, h: int, w: int, low: int = 4) -> torch.Tensor:
    """n smooth random fields (n, c, h, w) with unit-ish variance: low-res Gaussian noise, bilinear upsampled."""
    z = torch.randn(n, c, low, low, generator=gen)
    return F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)


def class_frequencies(num_classes: int, imbalance: float) -> torch.Tensor:
    """Geometric class profile: class 0 the most frequent, the last `imbalance` times as frequent (1 = balanced)."""
    if num_classes == 1:
        return torch.ones(1)
    ratio = torch.tensor(imbalance, dtype=torch.float64) ** (torch.arange(num_classes) / (num_classes - 1))
    return (ratio / ratio.sum()).float()


def make_synthetic(
    spec: DatasetSpec,
    train_size: int,
    test_size: int,
    modes: int = 3,
    imbalance: float = 1.0,
    distractor: float = 0.6,
    noise: float = 0.9,
    shift: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y): uint8 (N, C, H, W) images, int64 labels. Same inputs, same tensors."""
    c, h, w, k = spec.channels, spec.height, spec.width, spec.num_classes
    gen = torch.Generator().manual_seed(zlib.crc32(spec.name.encode()))
    # Prototypes are kept at low resolution and upsampled when drawn (iNaturalist's 8,142 classes x 3 modes at
    # 224 px would be 15 GB); per-prototype scale computed in chunks. Same values as upsampling them all.
    low = torch.randn(k * modes, c, 4, 4, generator=gen)

    def upsample(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)

    # std of each upsampled prototype without upsampling it: the field is linear in its 4 x 4 values, f = U z,
    # so sum f = (U^T 1) . z and sum f^2 = z^T (U^T U) z (float64, from the 16 upsampled basis fields)
    basis = upsample(torch.eye(16, dtype=torch.float32).view(16, 1, 4, 4)).double().flatten(1)  # (16, h*w)
    ones, gram = basis.sum(1), basis @ basis.T
    zc = low.double().flatten(2)  # (k*modes, c, 16)
    n_px = c * h * w
    total = (zc @ ones).sum(1)
    squares = torch.einsum("pci,ij,pcj->p", zc, gram, zc)
    scale = ((squares - total**2 / n_px) / (n_px - 1)).clamp_min(0).sqrt().float()
    freqs = class_frequencies(k, imbalance)

    table = None  # all prototypes upsampled once when that is small (< 64M values), else upsampled when drawn
    if low.shape[0] * c * h * w < 64_000_000:
        table = upsample(low) / scale[:, None, None, None]

    def protos(cls: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        i = cls * modes + mode
        return table[i] if table is not None else upsample(low[i]) / scale[i][:, None, None, None]

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.multinomial(freqs, n, replacement=True, generator=gen)
        m = torch.randint(0, modes, (n,), generator=gen)
        other = (y + torch.randint(1, max(k, 2), (n,), generator=gen)) % k
        om = torch.randint(0, modes, (n,), generator=gen)
        x = protos(y, m) + distractor * protos(other, om)
        x = x + noise * 0.7 * _smooth(gen, n, c, h, w, low=8) + noise * 0.5 * torch.randn(n, c, h, w, generator=gen)
        # Random translation (cyclic), per image, by up to `shift` pixels on each axis.
        dy = torch.randint(-shift, shift + 1, (n,), generator=gen)
        dx = torch.randint(-shift, shift + 1, (n,), generator=gen)
        rows = (torch.arange(h)[None, :] - dy[:, None]) % h
        cols = (torch.arange(w)[None, :] - dx[:, None]) % w
        x = x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]
        img = (128 + 40 * x).round().clamp(0, 255).to(torch.uint8)
        return img, y.long()

    train_x, train_y = draw(train_size)
    test_x, test_y = draw(test_size)
    return train_x, train_y, test_x, test_y
