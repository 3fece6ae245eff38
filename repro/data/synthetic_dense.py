"""Deterministic synthetic stand-ins for the dense datasets (Cityscapes / BDD100K segmentation, VOC detection).

Every class owns a look: a base colour, a stripe texture (its own frequency, orientation and colour direction) and,
for detection, a shape (rectangle, ellipse or triangle). Half the classes take a colour close to another class's,
so colour alone does not separate them; per-image colour jitter, smooth and pixel noise blur the rest.
- segmentation: 2-3 wavy horizontal bands of "stuff" classes (road / building / sky-like layouts) under 2-6 random
  shapes (rectangles, ellipses, triangles) of any class; the mask is each pixel's class, and about half of the
  pixels on class boundaries are IGNORE_INDEX (like Cityscapes' unlabeled borders).
- detection: a smooth cluttered background with 1-4 objects, each its class's shape and look filling a random box
  (15%-60% of the side); a few boxes are pushed over the image edge and clipped, and those with under half their
  area visible are marked difficult (about 5% of the objects). Rows [x1, y1, x2, y2, class, difficult] in pixels
  (x2 / y2 exclusive edges), padded with -1 rows to the split's largest count.

The looks come from a torch.Generator seeded with crc32(spec.name), each split from crc32(f"{name}/{split}"), so
the train split does not depend on test_size; torch's global RNG is never used. Vectorised; images are rendered in
fixed chunks of CHUNK (memory bounded for any split size, the result independent of it).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repro.spec.datasets import IGNORE_INDEX, DatasetSpec

CHUNK = 256  # images rendered at once
MAX_SHAPES = 6  # segmentation: shapes per image (2..MAX_SHAPES)
MAX_OBJECTS = 4  # detection: objects per image (1..MAX_OBJECTS)
IGNORE_SHARE = 0.5  # share of class-boundary pixels set to IGNORE_INDEX
TRUNCATE_SHARE = 0.12  # detection: share of boxes pushed over the image edge
DIFFICULT_VISIBLE = 0.5  # detection: a box with less than this share of its area inside the image is difficult

Parts = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _generator(*key: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32("/".join(key).encode()))


def _uniform(gen: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


@dataclass
class Looks:
    """Per-class appearance: colour (k, c) in 0..1, texture colour direction (k, c), texture amplitude (k,),
    stripe frequency (k,, radians per pixel) and orientation (k,); shape kind (k,) 0 rect, 1 ellipse, 2 triangle."""

    colour: torch.Tensor
    tex_dir: torch.Tensor
    tex_amp: torch.Tensor
    freq: torch.Tensor
    angle: torch.Tensor
    kind: torch.Tensor


def class_looks(spec: DatasetSpec) -> Looks:
    k, c = spec.num_classes, spec.channels
    gen = _generator(spec.name)
    colour = _uniform(gen, (k, c), 0.12, 0.88)
    half = k // 2  # the second half of the classes borrow 60% of the colour of the first half's classes
    partner = torch.randint(0, max(half, 1), (k - half,), generator=gen)
    colour[half:] = 0.6 * colour[partner] + 0.4 * colour[half:]
    tex_dir = torch.randn(k, c, generator=gen)
    tex_dir = tex_dir / tex_dir.norm(dim=1, keepdim=True).clamp_min(1e-6)
    tex_amp = _uniform(gen, (k,), 0.05, 0.16)
    cycles = _uniform(gen, (k,), 1.5, 6.0)  # stripes per image side
    freq = 2 * math.pi * cycles / min(spec.stored_shape[1:])
    angle = _uniform(gen, (k,), 0.0, math.pi)
    kind = torch.arange(k) % 3
    return Looks(colour, tex_dir, tex_amp, freq, angle, kind)


def _pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ys (1, h, 1), xs (1, 1, w)."""
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    return ys.view(1, h, 1), xs.view(1, 1, w)


def _inside(kind: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """(n, h, w): whether each pixel lies in a shape of `kind` (n,) given the column offsets dx (n, 1, w) and row
    offsets dy (n, h, 1) from its centre in half-extents: rectangle |dx|, |dy| <= 1; ellipse dx^2 + dy^2 <= 1;
    triangle (apex up) |dy| <= 1 and 2 |dx| - dy <= 1; nowhere where `active` (n,) is False. Written as
    a(dx) + b(dy) <= 1 within the box so that only three operations touch every pixel."""
    kind = kind.view(-1, 1, 1)
    a = torch.where(kind == 1, dx.square(), torch.where(kind == 2, 2 * dx.abs(), torch.zeros_like(dx)))
    b = torch.where(kind == 1, dy.square(), torch.where(kind == 2, -dy, torch.zeros_like(dy)))
    in_x = (dx.abs() <= 1) & active.view(-1, 1, 1)
    return (a + b <= 1) & in_x & (dy.abs() <= 1)


def _upsampler(low: int, size: int) -> torch.Tensor:
    """(size, low): the matrix of 1-D linear upsampling from low to size samples (align_corners=False)."""
    basis = F.interpolate(torch.eye(low).view(1, low, low), size=size, mode="linear", align_corners=False)
    return basis[0].T.contiguous()


def smooth_fields(gen: torch.Generator, n: int, c: int, h: int, w: int, low: int, scale: float = 1.0) -> torch.Tensor:
    """n smooth random fields (n, c, h, w) of standard deviation about `scale`: low x low Gaussian noise upsampled
    bilinearly, computed as two small matrix products (bilinear upsampling is separable; equal to F.interpolate up
    to rounding, several times faster)."""
    z = torch.randn(n, c, low, low, generator=gen).mul_(scale)
    return _upsampler(low, h) @ z @ _upsampler(low, w).T


def _render(labels: torch.Tensor, looks: Looks, gen: torch.Generator, channels: int) -> torch.Tensor:
    """float (n, c, h, w) images of class maps `labels` (n, h, w): each pixel its class's colour plus its class's
    stripes (a phase per image and class)."""
    n, h, w = labels.shape
    k = looks.colour.shape[0]
    ys, xs = _pixel_grid(h, w)
    phase = _uniform(gen, (n, k), 0.0, 2 * math.pi)
    kx, ky = looks.freq * torch.cos(looks.angle), looks.freq * torch.sin(looks.angle)
    arg = kx.take(labels) * xs + ky.take(labels) * ys + phase.take(labels + k * torch.arange(n).view(n, 1, 1))
    stripes = torch.sin(arg) * looks.tex_amp.take(labels)
    return torch.stack([looks.colour[:, i].take(labels) + stripes * looks.tex_dir[:, i].take(labels)
                        for i in range(channels)], 1)


def _finish(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 of float images in 0..1 (modified in place) after per-image colour and brightness jitter, smooth and
    pixel noise."""
    n, c, h, w = img.shape
    jitter = 0.06 * torch.randn(n, c, 1, 1, generator=gen) + 0.04 * torch.randn(n, 1, 1, 1, generator=gen)
    img.add_(smooth_fields(gen, n, c, h, w, low=8, scale=0.05).add_(jitter))
    img.add_(torch.randn(n, c, h, w, generator=gen).mul_(0.05))
    return img.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


# ---- segmentation ----------------------------------------------------------------------------------------------

def _segmentation(spec: DatasetSpec, looks: Looks, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k, (c, h, w) = spec.num_classes, spec.stored_shape
    stuff = max(2, min(k, round(k * 11 / 19)))  # band classes: the first 11 of 19, like Cityscapes' road..sky
    side = min(h, w)
    # Layout parameters of the whole split, drawn first (the chunks below only render)
    three = torch.rand(n, generator=gen) < 0.5
    b1 = _uniform(gen, (n,), 0.25, 0.55) * h
    b2 = torch.where(three, _uniform(gen, (n,), 0.6, 0.85) * h, torch.full((n,), 2.0 * h))
    wave_amp = _uniform(gen, (n, 2), 0.0, 0.06) * h
    wave_freq = _uniform(gen, (n, 2), 0.5, 2.0) * 2 * math.pi / w
    wave_phase = _uniform(gen, (n, 2), 0.0, 2 * math.pi)
    band_cls = torch.randint(0, stuff, (n, 3), generator=gen)
    count = torch.randint(2, MAX_SHAPES + 1, (n,), generator=gen)
    kind = torch.randint(0, 3, (n, MAX_SHAPES), generator=gen)
    cls = torch.randint(0, k, (n, MAX_SHAPES), generator=gen)
    cy, cx = torch.rand(n, MAX_SHAPES, generator=gen) * h, torch.rand(n, MAX_SHAPES, generator=gen) * w
    half_h = _uniform(gen, (n, MAX_SHAPES), 0.08, 0.25) * side
    half_w = _uniform(gen, (n, MAX_SHAPES), 0.08, 0.25) * side
    ys, xs = _pixel_grid(h, w)
    xs_flat = xs.view(1, w)
    images = torch.empty((n, c, h, w), dtype=torch.uint8)
    masks = torch.empty((n, h, w), dtype=torch.uint8)
    for lo in range(0, n, CHUNK):
        s = slice(lo, min(n, lo + CHUNK))
        m = s.stop - s.start
        edge = (wave_amp[s, :, None] * torch.sin(wave_freq[s, :, None] * xs_flat[:, None] + wave_phase[s, :, None])
                + torch.stack([b1[s], b2[s]], 1)[:, :, None])  # (m, 2, w) boundary heights
        band = (ys >= edge[:, 0:1]).long() + (ys >= edge[:, 1:2]).long()  # (m, h, w) in 0..2
        labels = band_cls[s].gather(1, band.flatten(1)).view(m, h, w)
        for j in range(MAX_SHAPES):
            dx = (xs - cx[s, j, None, None]) / half_w[s, j, None, None]
            dy = (ys - cy[s, j, None, None]) / half_h[s, j, None, None]
            inside = _inside(kind[s, j], dx, dy, count[s] > j)
            labels = torch.where(inside, cls[s, j, None, None], labels)
        images[s] = _finish(_render(labels, looks, gen, c), gen)
        boundary = torch.zeros((m, h, w), dtype=torch.bool)
        boundary[:, :, 1:] |= labels[:, :, 1:] != labels[:, :, :-1]
        boundary[:, 1:, :] |= labels[:, 1:, :] != labels[:, :-1, :]
        ignore = boundary & (torch.rand(m, h, w, generator=gen) < IGNORE_SHARE)
        masks[s] = labels.masked_fill(ignore, IGNORE_INDEX).to(torch.uint8)
    return images, masks


# ---- detection -------------------------------------------------------------------------------------------------

def _detection(spec: DatasetSpec, looks: Looks, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k, (c, h, w) = spec.num_classes, spec.stored_shape
    count = torch.randint(1, MAX_OBJECTS + 1, (n,), generator=gen)
    active = torch.arange(MAX_OBJECTS) < count[:, None]  # (n, O)
    cls = torch.randint(0, k, (n, MAX_OBJECTS), generator=gen)
    bw = (_uniform(gen, (n, MAX_OBJECTS), 0.15, 0.6) * w).round().clamp_min(2)
    bh = (_uniform(gen, (n, MAX_OBJECTS), 0.15, 0.6) * h).round().clamp_min(2)
    x1 = (torch.rand(n, MAX_OBJECTS, generator=gen) * (w - bw + 1)).floor()
    y1 = (torch.rand(n, MAX_OBJECTS, generator=gen) * (h - bh + 1)).floor()
    # A few boxes pushed over an edge: their left / right / top / bottom 20%-70% leaves the image
    truncate = torch.rand(n, MAX_OBJECTS, generator=gen) < TRUNCATE_SHARE
    side = torch.randint(0, 4, (n, MAX_OBJECTS), generator=gen)
    out = _uniform(gen, (n, MAX_OBJECTS), 0.2, 0.7)
    x1 = torch.where(truncate & (side == 0), -(out * bw).round(), x1)
    x1 = torch.where(truncate & (side == 1), w - bw + (out * bw).round(), x1)
    y1 = torch.where(truncate & (side == 2), -(out * bh).round(), y1)
    y1 = torch.where(truncate & (side == 3), h - bh + (out * bh).round(), y1)
    x2, y2 = x1 + bw, y1 + bh
    cx1, cy1, cx2, cy2 = x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)
    visible = (cx2 - cx1) * (cy2 - cy1) / (bw * bh)
    difficult = (visible < DIFFICULT_VISIBLE).float()
    # Painted largest first (small objects stay visible on top); rows in painting order, absent objects last
    area = torch.where(active, bw * bh, torch.full_like(bw, -1.0))
    order = area.argsort(dim=1, descending=True, stable=True)
    rows = torch.stack([cx1, cy1, cx2, cy2, cls.float(), difficult], -1)  # (n, O, 6)
    rows = rows.gather(1, order[..., None].expand(-1, -1, 6))
    active = active.gather(1, order)
    boxes = (x1, y1, bw, bh, cls)
    x1, y1, bw, bh, cls = (t.gather(1, order) for t in boxes)
    m_max = int(count.max()) if n else 1
    targets = rows.masked_fill(~active[..., None], -1.0)[:, :m_max].contiguous()

    phase = _uniform(gen, (n, MAX_OBJECTS), 0.0, 2 * math.pi)
    kx, ky = looks.freq * torch.cos(looks.angle), looks.freq * torch.sin(looks.angle)

    ys, xs = _pixel_grid(h, w)
    images = torch.empty((n, c, h, w), dtype=torch.uint8)
    for lo in range(0, n, CHUNK):
        s = slice(lo, min(n, lo + CHUNK))
        m = s.stop - s.start
        img = smooth_fields(gen, m, c, h, w, low=4, scale=0.16).add_(smooth_fields(gen, m, c, h, w, low=12, scale=0.1))
        img.add_(0.5)
        for j in range(MAX_OBJECTS):  # each object its class's shape, colour and stripes (an object per image)
            cj = cls[s, j]
            dx = (xs - (x1[s, j] + bw[s, j] / 2).view(m, 1, 1)) / (bw[s, j] / 2).view(m, 1, 1)
            dy = (ys - (y1[s, j] + bh[s, j] / 2).view(m, 1, 1)) / (bh[s, j] / 2).view(m, 1, 1)
            inside = _inside(looks.kind[cj], dx, dy, active[s, j])
            stripes = torch.sin(kx[cj].view(m, 1, 1) * xs + (ky[cj].view(m, 1, 1) * ys + phase[s, j].view(m, 1, 1)))
            stripes = stripes.mul_(looks.tex_amp[cj].view(m, 1, 1)).unsqueeze(1)
            look = looks.colour[cj].view(m, c, 1, 1) + stripes * looks.tex_dir[cj].view(m, c, 1, 1)
            img = torch.where(inside.unsqueeze(1), look, img)
        images[s] = _finish(img, gen)
    return images, targets


TASK_GENERATORS = {"segmentation": _segmentation, "detection": _detection}


def make_synthetic_dense(spec: DatasetSpec, train_size: int, test_size: int) -> Parts:
    """(train_x uint8 (N, C, H, W), train_y, test_x, test_y) of a segmentation or detection stand-in at spec's
    (height, width); targets in the task's format (repro/spec/datasets.py). Same inputs, same tensors."""
    if spec.task not in TASK_GENERATORS:
        raise ValueError(f"{spec.name}: task {spec.task!r} has no dense generator; allowed: {list(TASK_GENERATORS)}")
    looks = class_looks(spec)
    draw = TASK_GENERATORS[spec.task]
    return (*draw(spec, looks, train_size, _generator(spec.name, "train")),
            *draw(spec, looks, test_size, _generator(spec.name, "test")))
