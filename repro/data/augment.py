"""Batched on-device augmentation drawn from the same distribution as the papers' torchvision pipelines.

Operates on raw uint8 batches (B, C, H, W) and returns normalized float batches, so padding and rotation
fill are zero in raw pixel space (as torchvision pads the PIL image before `Normalize`).

- `crop224`: RandomCrop(224) of images stored at 256 x 256 (MAL Sec. 4.1: "resized to 256 and then
            random-cropped to 224"): per-image offsets uniform over 0..(H - 224) and 0..(W - 224), no padding;
            applied first. On images already 224 x 224 (the synthetic stand-ins) it is the identity (no draws).
- `frame_crop`: fyu/drn's RandomCrop of stored frames (Cityscapes at 1024 x 2048) to the model's input (688 x 688),
            the same window for the mask; `frame_center`: the fixed centre window (DAAL trains without augmentation).
- `crop`:   RandomCrop(H, padding=4): per-image offsets uniform over 0..8 in each axis, zero padding.
- `flip`:   RandomHorizontalFlip(p=0.5), independent per image.
- `rotate`: RandomRotation(15): angle uniform in [-15, 15] degrees about the centre, nearest-neighbour,
            zero fill, no expansion; applied after crop and flip (MCDAL reference order).
- `ssd`:    SSD's training augmentation of images with their boxes (repro/data/ssd_augment.py: photometric
            distortion, expand, min-IoU crop, flip).

Evaluation (`Augmenter.eval`, which the trainer's test accuracy and every query path call) takes the centre
224 x 224 crop of a batch stored at 256 x 256 (specs.RESIZE_SIZE, the ImageNet-scale datasets' stored size),
whatever the augmentation list (the loop builds its evaluation Augmenter with none); so does training without
`crop224`, so the model always sees 224 x 224 on these datasets. Batches of any other size pass unchanged:
segmentation is evaluated and queried on full stored frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from repro.data.ssd_augment import ssd_augment
from repro.spec.datasets import CROP_SIZE, RESIZE_SIZE
from repro.spec.recipe import (  # AUGMENTATIONS: also the order applied
    AUGMENTATIONS,
    FRAME_CROPS,
    TASK_AUGMENTATIONS,
)

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


def _gather_crops(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Each image's h x w window at (oy, ox) ((B,) device tensors): one gather for the batch; images (B, C, H, W)
    or masks (B, H, W)."""
    rows = oy[:, None] + torch.arange(h, device=x.device)
    cols = ox[:, None] + torch.arange(w, device=x.device)
    bi = torch.arange(len(x), device=x.device)
    if x.dim() == 3:
        return x[bi[:, None, None], rows[:, :, None], cols[:, None, :]]
    ci = torch.arange(x.shape[1], device=x.device)
    return x[bi[:, None, None, None], ci[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def crop_offsets(x: torch.Tensor, gen: torch.Generator, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image window offsets uniform over 0..H-h and 0..W-w (torchvision's / fyu/drn's RandomCrop), drawn from
    `gen` on x's device."""
    (h, w), (hh, ww) = size, x.shape[-2:]
    if hh < h or ww < w:
        raise ValueError(f"cannot crop {h}x{w} from images of {hh}x{ww}")
    oy = torch.randint(0, hh - h + 1, (len(x),), generator=gen, device=x.device)
    ox = torch.randint(0, ww - w + 1, (len(x),), generator=gen, device=x.device)
    return oy, ox


def random_crop_to(x: torch.Tensor, gen: torch.Generator, size: int = CROP_SIZE) -> torch.Tensor:
    """Per-image random size x size crop (no padding): `frame_crop`'s window; images already size x size (the
    synthetic stand-ins) pass unchanged, with no draws."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"crop224 needs images of at least {size}x{size}, got {h}x{w}")
    return frame_crop(x, None, gen, (size, size))[0]


def center_crop(x: torch.Tensor, size: int | tuple[int, int] = CROP_SIZE) -> torch.Tensor:
    """The centre crop of every image or mask (torchvision's CenterCrop offsets: round((H - h) / 2))."""
    h, w = (size, size) if isinstance(size, int) else size
    hh, ww = x.shape[-2:]
    top, left = int(round((hh - h) / 2.0)), int(round((ww - w) / 2.0))
    return x[..., top : top + h, left : left + w]


def frame_crop(x: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator, size: tuple[int, int]):
    """fyu/drn's RandomCrop of frames (and their masks, the same window): (x, y) cropped to `size`."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x, y
    oy, ox = crop_offsets(x, gen, size)
    return _gather_crops(x, oy, ox, *size), None if y is None else _gather_crops(y, oy, ox, *size)


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
    """A fixed augmentation list + normalization, applied to raw uint8 batches on their device. `input_size`:
    the model's (H, W) input, what frame_crop / frame_center crop stored frames to."""

    def __init__(self, names: Sequence[str], mean: Sequence[float], std: Sequence[float], device,
                 input_size: tuple[int, int] | None = None):
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; allowed: {list(AUGMENTATIONS)}")
        # Always in the reference order (crop224 ->) crop -> flip -> rotate, whatever order the list gives.
        self.names = tuple(n for n in AUGMENTATIONS if n in names)
        if any(n in FRAME_CROPS for n in self.names) and input_size is None:
            raise ValueError(f"{[n for n in self.names if n in FRAME_CROPS]} needs the model's input size")
        self.input_size = None if input_size is None else tuple(input_size)
        self.mean_values = tuple(float(m) for m in mean)  # host copy (ssd's fill) so no step reads the device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)

    def _frames(self, x: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator):
        """Stored frames cropped to the input: a random window (frame_crop) or the centre one (frame_center)."""
        if "frame_crop" in self.names:
            return frame_crop(x, y, gen, self.input_size)
        if "frame_center" in self.names:
            return center_crop(x, self.input_size), None if y is None else center_crop(y, self.input_size)
        return x, y

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if "crop224" in self.names:
            x = random_crop_to(x, gen)
        elif _stored_resized(x):
            x = center_crop(x)
        x = self._frames(x, None, gen)[0]
        if "crop" in self.names:
            x = random_crop(x, gen)
        if "flip" in self.names:
            x = random_flip(x, gen)
        if "rotate" in self.names:
            x = random_rotate(x, gen)
        if "ssd" in self.names:  # images without their boxes (unlabeled batches): no object constrains the crop
            none = torch.full((len(x), 1, 6), -1.0, device=x.device)
            x = ssd_augment(x, none, gen, self.mean_values)[0]
        return normalize(x, self.mean, self.std)

    def train_pair(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, task: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """An augmented labeled batch with its targets transformed alike: classification labels pass unchanged
        (exactly `train`); segmentation masks take their frames' crops and flips, detection boxes their flips or
        SSD's augmentation (TASK_AUGMENTATIONS says which a task takes)."""
        if task == "classification":
            return self.train(x, gen), y
        unsupported = [n for n in self.names if n not in TASK_AUGMENTATIONS[task]]
        if unsupported:
            raise ValueError(f"augmentation(s) {unsupported} are not defined for {task} targets; allowed: "
                             f"{list(TASK_AUGMENTATIONS[task])}")
        x, y = self._frames(x, y, gen)
        if "ssd" in self.names:
            x, y = ssd_augment(x, y, gen, self.mean_values)
        if "flip" in self.names:
            flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = flip_targets(y, flip, x.shape[-1], task)
        return normalize(x, self.mean, self.std), y

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        """What a model is evaluated and queried on: the centre 224 crop of 256-stored images; any other batch
        whole (segmentation frames at their stored size: full frames)."""
        if _stored_resized(x):
            x = center_crop(x)
        return normalize(x, self.mean, self.std)
