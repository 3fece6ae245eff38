"""SSD's training augmentation (Liu et al. 2016 Sec. 2.2 "Data augmentation"; amdegroot/ssd.pytorch
utils/augmentations.py `SSDAugmentation`), batched on the images' device.

In ssd.pytorch's order: `photometric_distort` (`PhotometricDistort`), expand (`Expand`, `sample_expand`), min-IoU
random crop (`RandomSampleCrop`, `sample_crops`), the resize back to S x S (`expand_crop`: one bilinear
`grid_sample` per image composing expand and crop) and the horizontal flip (`RandomMirror`, `flip`). Every draw
comes from the caller's generator on the images' device, every image draws independently, and nothing waits on
the device (no `.item()`, no data-dependent shapes, no branching on tensor values, and no constant tables copied
from the host: a pageable host -> device copy synchronises the stream).

What differs from ssd.pytorch:
- images are stored at S x S, so the crop is resampled from the stored image, not from the original resolution;
  expand and crop are continuous (ssd.pytorch truncates the offsets and crop corners to integers);
- a crop mode whose 50 trials all fail leaves the image uncropped (the expanded canvas, as mode "whole image");
  ssd.pytorch draws another mode and retries, a loop of data-dependent length that would need host syncs;
- the crop constraint is the paper's: IoU >= the mode's minimum with every object (ssd.pytorch's
  `overlap.min() < min_iou and max_iou < overlap.max()` never rejects, as max_iou is inf), and the crop offsets
  are uniform over [0, side - w] (ssd.pytorch's numpy `random.uniform(width - w)` draws between 1 and width - w);
- "objects" (the IoU and centre constraints) are the non-difficult boxes: ssd.pytorch's VOC loader drops
  difficult ones (keep_difficult=False) before augmenting; here they ride along, kept iff their centre is inside;
- images are clamped to [0, 255] before the HSV conversion and after the photometric steps (ssd.pytorch's float
  image is never clamped); HSV is OpenCV's float convention (H in degrees [0, 360), S in [0, 1], V = max).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

BRIGHTNESS_DELTA, CONTRAST, SATURATION, HUE_DELTA = 32.0, (0.5, 1.5), (0.5, 1.5), 18.0
PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # identity first
MAX_EXPAND = 4.0
CROP_MODES = (math.nan, 0.1, 0.3, 0.7, 0.9, -math.inf)  # ssd.pytorch's (whole, min IoU, free); the paper adds 0.5
CROP_TRIALS, CROP_MIN_SCALE, CROP_ASPECT = 50, 0.3, (0.5, 2.0)


class Expand(NamedTuple):
    ratio: torch.Tensor  # (B,) canvas side / S, 1 where not expanded
    offset: torch.Tensor  # (B, 2) x, y of the image's top-left corner in the canvas, pixels


class Crop(NamedTuple):
    rect: torch.Tensor  # (B, 4) x1, y1, x2, y2 in canvas pixels (the whole canvas where `uncropped`)
    min_iou: torch.Tensor  # (B,) the mode's minimum IoU: nan = whole image, -inf = no constraint
    uncropped: torch.Tensor  # (B,) bool: mode "whole image" or no valid trial (the fallback)
    fallback: torch.Tensor  # (B,) bool: a constrained mode none of whose trials was valid


def _coin(b: int, gen: torch.Generator, device: torch.device, p: float = 0.5) -> torch.Tensor:
    return torch.rand(b, generator=gen, device=device) < p


def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator, device: torch.device):
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 255] -> H in degrees [0, 360), S in [0, 1], V in [0, 255] (OpenCV's float HSV)."""
    r, g, b = x.unbind(1)
    v, mn = x.amax(1), x.amin(1)
    d = v - mn
    dd = d.clamp_min(1e-12)
    h = torch.where(v == r, ((g - b) / dd) % 6, torch.where(v == g, (b - r) / dd + 2, (r - g) / dd + 4))
    h = torch.where(d > 0, h * 60.0, torch.zeros_like(h))
    s = torch.where(v > 0, d / v.clamp_min(1e-12), torch.zeros_like(v))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`: channel n of (R, G, B) = V - V S clamp(min(k, 4 - k), 0, 1), k = (n + H / 60) mod 6
    with n = 5, 3, 1 (OpenCV's sector formula in closed form; S above 1 gives values below 0, as OpenCV)."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.arange(5, 0, -2, device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)  # 5, 3, 1
    k = (n + h / 60.0) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def permutation(k: torch.Tensor) -> torch.Tensor:
    """(B,) indices into PERMUTATIONS -> (B, 3) channel orders, computed on k's device (no host -> device copy,
    which would wait on the device): the first channel k // 2, then the other two in order, swapped for odd k."""
    first, odd = k // 2, (k % 2).bool()
    r0, r1 = (first == 0).long(), 2 - (first == 2).long()  # the two channels other than `first`, ascending
    return torch.stack([first, torch.where(odd, r1, r0), torch.where(odd, r0, r1)], 1)


def photometric_distort(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """ssd.pytorch `PhotometricDistort` per image on float (B, 3, H, W) in [0, 255]: brightness +U[-32, 32] (p 0.5);
    contrast x U[0.5, 1.5] (p 0.5) before the HSV steps or (p 0.5) after them; saturation x U[0.5, 1.5] (p 0.5);
    hue + U[-18, 18] degrees mod 360 (p 0.5); a random channel permutation of the 6 (p 0.5). Output in [0, 255]."""
    b, dev = x.shape[0], x.device
    col = (b, 1, 1, 1)
    bright = _coin(b, gen, dev).view(col) * _uniform(col, -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, gen, dev)
    contrast = torch.where(_coin(b, gen, dev).view(col), _uniform(col, *CONTRAST, gen, dev), 1.0)
    contrast_first = _coin(b, gen, dev).view(col)
    sat = torch.where(_coin(b, gen, dev).view(col), _uniform(col, *SATURATION, gen, dev), 1.0)
    hue = _coin(b, gen, dev).view(col) * _uniform(col, -HUE_DELTA, HUE_DELTA, gen, dev)
    perm = torch.randint(len(PERMUTATIONS), (b,), generator=gen, device=dev) * _coin(b, gen, dev)

    x = x + bright
    x = torch.where(contrast_first, x * contrast, x).clamp(0, 255)
    hsv = rgb_to_hsv(x)
    hsv = torch.cat([(hsv[:, 0:1] + hue) % 360.0, hsv[:, 1:2] * sat, hsv[:, 2:3]], 1)
    x = hsv_to_rgb(hsv)
    x = torch.where(contrast_first, x, x * contrast)
    order = permutation(perm)  # (B, 3)
    x = x.gather(1, order[:, :, None, None].expand_as(x))
    return x.clamp(0, 255)


def sample_expand(b: int, size: int, gen: torch.Generator, device: torch.device, p: float = 0.5) -> Expand:
    """ssd.pytorch `Expand`: with probability p a canvas of side ratio x S, ratio ~ U[1, 4], the image at an offset
    uniform over [0, (ratio - 1) S] in each axis; otherwise ratio 1, offset 0."""
    on = _coin(b, gen, device, p)
    ratio = torch.where(on, _uniform((b,), 1.0, MAX_EXPAND, gen, device), 1.0)
    offset = (ratio - 1)[:, None] * size * torch.rand((b, 2), generator=gen, device=device)
    return Expand(ratio, offset)


def to_canvas(boxes: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, M, 6) image-pixel boxes -> canvas pixels: corners shifted by the image's (B, 2) offset."""
    return torch.cat([boxes[..., :4] + offset.repeat(1, 2)[:, None], boxes[..., 4:]], -1)


def box_iou_batched(rects: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of (B, T, 4) rectangles with (B, M, 4) boxes -> (B, T, M); rectangles have positive area."""
    r, q = rects[:, :, None], boxes[:, None]
    wh = (torch.minimum(r[..., 2:], q[..., 2:]) - torch.maximum(r[..., :2], q[..., :2])).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area_r = (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    area_q = ((q[..., 2] - q[..., 0]) * (q[..., 3] - q[..., 1])).clamp_min(0)
    return inter / (area_r + area_q - inter)


def centres_inside(rects: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, T, M): box m's centre strictly inside rectangle t (ssd.pytorch's test); rects (B, T, 4), boxes (B, M, 4)."""
    c = (boxes[..., :2] + boxes[..., 2:4])[:, None] / 2
    return ((c > rects[:, :, None, :2]) & (c < rects[:, :, None, 2:])).all(-1)


def sample_crops(boxes: torch.Tensor, canvas: torch.Tensor, gen: torch.Generator) -> Crop:
    """ssd.pytorch `RandomSampleCrop` on (B, M, 6) boxes in canvas pixels and canvases of side `canvas` (B,): a mode
    of CROP_MODES per image, CROP_TRIALS trials of w, h ~ U[0.3, 1] x side with h / w in [0.5, 2] and offsets
    uniform inside the canvas; valid when every object's IoU with it is >= the minimum and at least one object's
    centre is inside; the first valid trial is taken, none valid = uncropped (module docstring). An image without
    objects takes its first trial of the right aspect."""
    b, dev = boxes.shape[0], boxes.device
    mode = torch.randint(len(CROP_MODES), (b,), generator=gen, device=dev)
    min_iou = torch.full((b,), CROP_MODES[0], device=dev)
    for k, v in enumerate(CROP_MODES[1:], 1):  # a lookup without a host -> device copy of the table
        min_iou = torch.where(mode == k, v, min_iou)
    u = torch.rand((b, CROP_TRIALS, 4), generator=gen, device=dev)
    side = canvas[:, None]
    w, h = (side[..., None] * (CROP_MIN_SCALE + (1 - CROP_MIN_SCALE) * u[..., :2])).unbind(-1)
    left, top = (side - w) * u[..., 2], (side - h) * u[..., 3]
    rects = torch.stack([left, top, left + w, top + h], -1)  # (B, T, 4)
    obj = ((boxes[..., 4] >= 0) & (boxes[..., 5] < 0.5))[:, None]  # (B, 1, M)
    iou_ok = ((box_iou_batched(rects, boxes[..., :4]) >= min_iou[:, None, None]) | ~obj).all(-1)
    centre_ok = (centres_inside(rects, boxes) & obj).any(-1) | ~obj.any(-1)
    aspect = h / w
    valid = iou_ok & centre_ok & (aspect >= CROP_ASPECT[0]) & (aspect <= CROP_ASPECT[1])  # (B, T)
    first = valid.to(torch.uint8).argmax(1)  # the first valid trial (argmax returns the first maximum)
    whole = torch.isnan(min_iou)
    fallback = ~whole & ~valid.any(1)
    uncropped = whole | fallback
    zero = torch.zeros_like(canvas)
    full = torch.stack([zero, zero, canvas, canvas], -1)
    rect = torch.where(uncropped[:, None], full, rects[torch.arange(b, device=dev), first])
    return Crop(rect, min_iou, uncropped, fallback)


def expand_crop(x: torch.Tensor, boxes: torch.Tensor, expand: Expand, rect: torch.Tensor, uncropped: torch.Tensor,
                mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample float (B, 3, S, S) images and (B, M, 6) image-pixel boxes through an expand and a crop `rect`
    (canvas pixels) back to S x S. Pixels outside the image take `mean` (B or 1, 3, 1, 1); bilinear inside. Boxes
    whose centre is not strictly inside the crop become padding, unless `uncropped` (every real box is kept);
    kept boxes are clipped to the crop and scaled to S."""
    size = x.shape[-1]
    wh = rect[:, 2:] - rect[:, :2]  # (B, 2)
    # output pixel u (normalised) -> image point: x = x1 - ox + (u + 1) / 2 * w, normalised 2 x / S - 1
    theta = torch.zeros((x.shape[0], 2, 3), device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = wh[:, 0] / size, wh[:, 1] / size
    theta[:, :, 2] = (2 * (rect[:, :2] - expand.offset) + wh) / size - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - mean, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + mean
    out = out.clamp(0, 255)  # convex mixes of pixels and the mean, up to rounding

    real = boxes[..., 4] >= 0
    shifted = to_canvas(boxes, expand.offset)[..., :4]
    keep = real & (centres_inside(rect[:, None], shifted)[:, 0] | uncropped[:, None])
    lo = torch.maximum(shifted[..., :2], rect[:, None, :2]) - rect[:, None, :2]
    hi = torch.minimum(shifted[..., 2:], rect[:, None, 2:]) - rect[:, None, :2]
    scale = (size / wh).repeat(1, 2)[:, None]
    moved = torch.cat([(torch.cat([lo, hi], -1) * scale).clamp(0, size), boxes[..., 4:]], -1)
    return out, torch.where(keep[..., None], moved, torch.full_like(moved, -1.0))


def sample_flip(b: int, gen: torch.Generator, device: torch.device, p: float = 0.5) -> torch.Tensor:
    """(B,) bool: which images ssd.pytorch's `RandomMirror` flips."""
    return _coin(b, gen, device, p)


def flip(x: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal flip of the images where `mask` (B,): x1' = S - x2, x2' = S - x1; padding rows untouched."""
    size = x.shape[-1]
    x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    mirrored = torch.stack([size - boxes[..., 2], boxes[..., 1], size - boxes[..., 0], boxes[..., 3]], -1)
    on = mask[:, None, None] & (boxes[..., 4:5] >= 0)
    return x, torch.cat([torch.where(on, mirrored, boxes[..., :4]), boxes[..., 4:]], -1)


def ssd_augment(x: torch.Tensor, boxes: torch.Tensor, gen: torch.Generator,
                mean: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD's training augmentation of uint8 (B, 3, S, S) images and float (B, M, 6) boxes [x1, y1, x2, y2, class,
    difficult] in pixels (padding rows -1), all draws from `gen` on x's device: photometric distortion, expand
    (canvas filled with `mean`, given in [0, 1] per channel), min-IoU crop, resize to S x S, flip. Returns float
    images on the 0..255 scale (not normalised) and the boxes in the same padded layout."""
    b, size, dev = x.shape[0], x.shape[-1], x.device
    if x.shape[-2] != size:
        raise ValueError(f"ssd_augment takes square images, got {tuple(x.shape)}")
    boxes = boxes.float()
    fill = torch.cat([torch.full((1,), 255.0 * m, device=dev) for m in mean]).view(1, 3, 1, 1)  # no H2D copy
    img = photometric_distort(x.float(), gen)
    expand = sample_expand(b, size, gen, dev)
    crop = sample_crops(to_canvas(boxes, expand.offset), expand.ratio * size, gen)
    img, boxes = expand_crop(img, boxes, expand, crop.rect, crop.uncropped, fill)
    return flip(img, boxes, sample_flip(b, gen, dev))
