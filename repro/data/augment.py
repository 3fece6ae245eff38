"""Batched on-device augmentation drawn from the same distribution as the papers' torchvision pipelines.

Operates on raw uint8 batches (B, C, H, W) and returns normalized float batches, so padding and rotation
fill are zero in raw pixel space (as torchvision pads the PIL image before `Normalize`).

- `crop224`: RandomCrop(224) of images stored at 256 x 256 (MAL Sec. 4.1: "resized to 256 and then
            random-cropped to 224"): per-image offsets uniform over 0..(H - 224) and 0..(W - 224), no padding;
            applied first. On images already 224 x 224 (the synthetic stand-ins) it is the identity (no draws).
- `crop`:   RandomCrop(H, padding=4): per-image offsets uniform over 0..8 in each axis, zero padding.
- `flip`:   RandomHorizontalFlip(p=0.5), independent per image.
- `rotate`: RandomRotation(15): angle uniform in [-15, 15] degrees about the centre, nearest-neighbour,
            zero fill, no expansion; applied after crop and flip (MCDAL reference order).

Evaluation (`Augmenter.eval`, which the trainer's test accuracy and every query path call) takes the centre
224 x 224 crop of a batch stored at 256 x 256 (specs.RESIZE_SIZE, the ImageNet-scale datasets' stored size),
whatever the augmentation list (the loop builds its evaluation Augmenter with none); so does training without
`crop224`, so the model always sees 224 x 224 on these datasets. Batches of any other size pass unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from repro.data.specs import CROP_SIZE, RESIZE_SIZE
from repro.recipe import AUGMENTATIONS  # noqa: F401  (also the order they are applied in)

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


def random_crop_to(x: torch.Tensor, gen: torch.Generator, size: int = CROP_SIZE) -> torch.Tensor:
    """Per-image random size x size crop (no padding): offsets uniform over 0..H-size and 0..W-size, drawn from
    `gen` on x's device; one gather for the batch."""
    b, c, h, w = x.shape
    if h < size or w < size:
        raise ValueError(f"crop224 needs images of at least {size}x{size}, got {h}x{w}")
    if h == size and w == size:  # already the crop size (the synthetic stand-ins): nothing to draw
        return x
    oy = torch.randint(0, h - size + 1, (b,), generator=gen, device=x.device)
    ox = torch.randint(0, w - size + 1, (b,), generator=gen, device=x.device)
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, None, :, None]  # (B,1,S,1)
    cols = (ox[:, None] + ar)[:, None, None, :]  # (B,1,1,S)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return x[bi, ci, rows, cols]


def center_crop(x: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """The centre size x size crop of every image (torchvision's CenterCrop offsets: round((H - size) / 2))."""
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def _stored_resized(x: torch.Tensor) -> bool:
    """Whether a batch is held at the ImageNet-scale stored size (256 x 256) and so is cropped to 224."""
    return tuple(x.shape[-2:]) == (RESIZE_SIZE, RESIZE_SIZE)


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


def flip_targets(y: torch.Tensor, flip: torch.Tensor, width: int, task: str) -> torch.Tensor:
    """Targets of horizontally flipped images (`flip`: (B,) bool): masks (B, H, W) mirrored; boxes (B, M, 6)
    x1' = W - x2, x2' = W - x1 on real rows (padding rows, class -1, stay -1)."""
    if task == "segmentation":
        return torch.where(flip[:, None, None], y.flip(-1), y)
    if task == "detection":
        mirrored = y.clone()
        mirrored[..., 0], mirrored[..., 2] = width - y[..., 2], width - y[..., 0]
        keep = (~flip)[:, None, None] | (y[..., 4:5] < 0)
        return torch.where(keep, y, mirrored)
    raise ValueError(f"unknown task {task!r}")


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1] -> (x - mean) / std, per channel. mean/std are (C,) tensors on x's device."""
    return (x.float() / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]


class Augmenter:
    """A fixed augmentation list + normalization, applied to raw uint8 batches on their device."""

    def __init__(self, names: Sequence[str], mean: Sequence[float], std: Sequence[float], device):
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; allowed: {list(AUGMENTATIONS)}")
        # Always in the reference order (crop224 ->) crop -> flip -> rotate, whatever order the list gives.
        self.names = tuple(n for n in AUGMENTATIONS if n in names)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if "crop224" in self.names:
            x = random_crop_to(x, gen)
        elif _stored_resized(x):
            x = center_crop(x)
        if "crop" in self.names:
            x = random_crop(x, gen)
        if "flip" in self.names:
            x = random_flip(x, gen)
        if "rotate" in self.names:
            x = random_rotate(x, gen)
        return normalize(x, self.mean, self.std)

    def train_pair(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, task: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """An augmented labeled batch with its targets transformed alike: classification labels pass unchanged
        (exactly `train`); segmentation masks and detection boxes take the same horizontal flips as their images.
        Dense tasks accept `flip` only (MAL Sec. 4.2: flips; DAAL: no augmentation)."""
        if task == "classification":
            return self.train(x, gen), y
        unsupported = [n for n in self.names if n != "flip"]
        if unsupported:
            raise ValueError(f"augmentation(s) {unsupported} are not defined for {task} targets; use [flip] or []")
        if "flip" in self.names:
            flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = flip_targets(y, flip, x.shape[-1], task)
        return normalize(x, self.mean, self.std), y

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        if _stored_resized(x):
            x = center_crop(x)
        return normalize(x, self.mean, self.std)
