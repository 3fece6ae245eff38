"""SSD's batched training augmentation (repro/data/ssd_augment.py): properties of each step and of the whole."""

from __future__ import annotations

import colorsys
from collections import Counter

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import box_iou

from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.ssd_augment import (
    CROP_MODES,
    PERMUTATIONS,
    Expand,
    expand_crop,
    flip,
    hsv_to_rgb,
    permutation,
    photometric_distort,
    rgb_to_hsv,
    sample_crops,
    sample_expand,
    sample_flip,
    ssd_augment,
    to_canvas,
)
from repro.spec.params import load_params, parse_params
from repro.spec.schema import ConfigError
from tests.conftest import ROOT, tiny_params

MEAN = (0.48235, 0.45882, 0.40784)
seeds, batches, sizes, rows = (st.integers(0, 2**31 - 1), st.integers(1, 4), st.sampled_from([32, 48, 96]),
                               st.integers(0, 5))


def _batch(seed: int, b: int, size: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and (b, m, 6) boxes on a quarter-pixel grid, >= 1 px wide and high, ~1/4 difficult, padding
    rows anywhere; some images have no box."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    boxes = torch.full((b, m, 6), -1.0)
    for i in range(b):
        for j in torch.randperm(m, generator=g)[: int(torch.randint(0, m + 1, (1,), generator=g))]:
            lo = torch.rand(2, generator=g) * (size - 1)
            hi = lo + 1 + torch.rand(2, generator=g) * (size - 1 - lo)
            xy = (torch.cat([lo, hi]) * 4).floor() / 4
            cls = torch.randint(0, 20, (1,), generator=g).float()
            boxes[i, j] = torch.cat([xy, cls, (torch.rand(1, generator=g) < 0.25).float()])
    return x, boxes


@given(seeds, batches, sizes, rows)
def test_augment_output_properties(seed, b, size, m):
    x, boxes = _batch(seed, b, size, m)
    rng = torch.get_rng_state()
    out, moved = ssd_augment(x, boxes, torch.Generator().manual_seed(seed), MEAN)
    assert torch.equal(torch.get_rng_state(), rng)  # no draw from torch's global generator
    torch.manual_seed(seed + 1)
    again = ssd_augment(x, boxes, torch.Generator().manual_seed(seed), MEAN)
    assert torch.equal(out, again[0]) and torch.equal(moved, again[1])
    assert out.dtype == torch.float32 and out.shape == x.shape and moved.shape == boxes.shape
    assert out.min() >= 0 and out.max() <= 255
    pad = moved[..., 4] < 0
    assert (moved[pad] == -1).all() and pad[boxes[..., 4] < 0].all()  # padding rows stay padding, all -1
    kept = moved[~pad]
    assert (kept[:, :4] >= 0).all() and (kept[:, :4] <= size).all()
    assert (kept[:, 2] > kept[:, 0]).all() and (kept[:, 3] > kept[:, 1]).all()
    assert torch.equal(kept[:, 4:], boxes[~pad][:, 4:])  # a kept row keeps its class and difficult flag
    for i in range(b):
        before = Counter(boxes[i, boxes[i, :, 4] >= 0, 4].tolist())
        after = Counter(moved[i, ~pad[i], 4].tolist())
        assert after <= before


@given(seeds, batches, sizes, rows)
def test_sampled_expand_and_crops(seed, b, size, m):
    x, boxes = _batch(seed, b, size, m)
    gen = torch.Generator().manual_seed(seed)
    e = sample_expand(b, size, gen, x.device)
    side = e.ratio * size
    assert ((e.ratio >= 1) & (e.ratio <= 4)).all()
    assert (e.offset >= 0).all() and (e.offset <= (side - size)[:, None] + 1e-3).all()
    canvas_boxes = to_canvas(boxes, e.offset)
    c = sample_crops(canvas_boxes, side, gen)
    modes = torch.tensor(CROP_MODES)  # float32, as sampled
    assert ((c.min_iou[:, None] == modes) | (c.min_iou.isnan()[:, None] & modes.isnan())).any(1).all()
    assert torch.equal(c.fallback, c.uncropped & ~torch.isnan(c.min_iou))
    _, moved = expand_crop(x.float(), boxes, e, c.rect, c.uncropped, torch.zeros(1, 3, 1, 1))
    for i in range(b):
        rect, s = c.rect[i], float(side[i])
        if c.uncropped[i]:
            assert torch.equal(rect, torch.tensor([0.0, 0.0, s, s]))
            assert ((moved[i, :, 4] >= 0) == (boxes[i, :, 4] >= 0)).all()  # uncropped: every box kept
            continue
        w, h = float(rect[2] - rect[0]), float(rect[3] - rect[1])
        assert 0.3 * s - 1e-3 <= w <= s + 1e-3 and 0.3 * s - 1e-3 <= h <= s + 1e-3 and 0.5 <= h / w <= 2
        assert rect[:2].min() >= 0 and rect[2:].max() <= s + 1e-3
        obj = (boxes[i, :, 4] >= 0) & (boxes[i, :, 5] < 0.5)
        iou = box_iou(rect[None], canvas_boxes[i, obj, :4])
        assert (iou >= c.min_iou[i] - 1e-5).all()  # the sampled minimum against every object
        centre = (canvas_boxes[i, :, :2] + canvas_boxes[i, :, 2:4]) / 2
        inside = ((centre > rect[:2]) & (centre < rect[2:])).all(1)
        assert not obj.any() or (inside & obj).any()
        assert torch.equal(moved[i, :, 4] >= 0, inside & (boxes[i, :, 4] >= 0))  # kept = centre inside the crop


@given(seeds, batches, sizes, rows)
def test_flip_is_an_involution(seed, b, size, m):
    x, boxes = _batch(seed, b, size, m)
    mask = sample_flip(b, torch.Generator().manual_seed(seed), x.device)
    once = flip(x.float(), boxes, mask)
    twice = flip(*once, mask)
    assert torch.equal(twice[0], x.float()) and torch.equal(twice[1], boxes)
    pad = boxes[..., 4] < 0
    assert (once[1][pad] == -1).all()
    real = once[1][~pad]
    assert (real[:, 2] > real[:, 0]).all() and (real[:, :4] >= 0).all() and (real[:, :4] <= size).all()


def test_flip_geometry():
    x = torch.arange(100.0).expand(2, 3, 100, 100)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0, 3.0, 0.0], [-1.0] * 6]).expand(2, 2, 6)
    img, out = flip(x, boxes, torch.tensor([True, False]))
    assert torch.equal(img[0, :, :, 0], torch.full((3, 100), 99.0)) and torch.equal(img[1], x[1])
    assert torch.equal(out[0], torch.tensor([[50.0, 20.0, 90.0, 60.0, 3.0, 0.0], [-1.0] * 6]))
    assert torch.equal(out[1], boxes[1])


def test_permutation_table():
    assert permutation(torch.arange(6)).tolist() == [list(p) for p in PERMUTATIONS]


def test_known_expand_and_crop():
    """One 100 x 100 image, a painted box [20, 30, 60, 70], expanded x2 with the image at (50, 10) in the canvas."""
    x = torch.zeros(1, 3, 100, 100)
    x[..., 30:70, 20:60] = 200.0
    boxes = torch.tensor([[[20.0, 30.0, 60.0, 70.0, 5.0, 0.0], [-1.0] * 6]])
    mean = torch.tensor([51.0, 102.0, 153.0]).view(1, 3, 1, 1)
    e = Expand(torch.tensor([2.0]), torch.tensor([[50.0, 10.0]]))
    no = torch.tensor([False])
    # a 100 x 100 crop at (60, 20): output pixel (u, v) is image pixel (u + 10, v + 10), the image ending at 90
    # (up to float rounding of the sampling grid)
    img, out = expand_crop(x, boxes, e, torch.tensor([[60.0, 20.0, 160.0, 120.0]]), no, mean)
    torch.testing.assert_close(out[0, 0], torch.tensor([10.0, 20.0, 50.0, 60.0, 5.0, 0.0]))
    assert (out[0, 1] == -1).all()
    torch.testing.assert_close(img[..., :90, :90], x[..., 10:, 10:], atol=1e-2, rtol=0)
    torch.testing.assert_close(img[..., 90:, :], mean.expand(1, 3, 10, 100), atol=1e-2, rtol=0)
    torch.testing.assert_close(img[..., :, 90:], mean.expand(1, 3, 100, 10), atol=1e-2, rtol=0)
    # a 50 x 50 crop at (60, 30): x2 magnification, the box clipped at the crop's right / bottom edge
    img, out = expand_crop(x, boxes, e, torch.tensor([[60.0, 30.0, 110.0, 80.0]]), no, mean)
    torch.testing.assert_close(out[0, 0], torch.tensor([20.0, 20.0, 100.0, 100.0, 5.0, 0.0]))
    assert ((img[..., 22:98, 22:98] - 200).abs() < 1e-2).all()  # inside the painted box
    assert (img[..., :18, :].abs() < 1e-2).all() and (img[..., :, :18].abs() < 1e-2).all()  # above / left of it
    # a crop whose box centre (canvas 90, 60) lies outside drops the box
    _, out = expand_crop(x, boxes, e, torch.tensor([[100.0, 20.0, 180.0, 100.0]]), no, mean)
    assert (out == -1).all()


def test_box_free_images():
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    for boxes in (torch.zeros(3, 0, 6), torch.full((3, 2, 6), -1.0)):
        out, moved = ssd_augment(x, boxes, torch.Generator().manual_seed(0), MEAN)
        assert out.shape == x.shape and moved.shape == boxes.shape and (moved == -1).all()


def test_photometric_distort():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 16, 16), generator=g).float()
    y = photometric_distort(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    assert torch.equal(y, photometric_distort(x, torch.Generator().manual_seed(1)))
    changed = (y - x).abs().flatten(1).amax(1) > 1
    assert 0.7 < changed.float().mean() < 1  # 1 - 1/2^6 of the images draw at least one change


def test_hsv_matches_colorsys_and_round_trips():
    x = torch.randint(0, 256, (1, 3, 8, 8), generator=torch.Generator().manual_seed(0)).float()
    x[0, :, 0, 0] = torch.tensor([7.0, 7.0, 7.0])  # grey: hue 0, saturation 0
    x[0, :, 0, 1] = 0.0  # black
    hsv = rgb_to_hsv(x)
    for r, g, b, h, s, v in torch.cat([x, hsv], 1).flatten(2)[0].T.tolist():
        eh, es, ev = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        assert abs(h - eh * 360) < 1e-3 and abs(s - es) < 1e-5 and abs(v - ev * 255) < 1e-3
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-2, rtol=0)


def test_draw_frequencies():
    """Over 4,000 images: expand, flip and each crop mode at their probabilities (5 standard errors), constrained
    modes rarely falling back on images with one mid-sized object."""
    b, size = 4000, 32
    gen = torch.Generator().manual_seed(0)
    e = sample_expand(b, size, gen, torch.device("cpu"))
    assert abs((e.ratio > 1).float().mean() - 0.5) < 0.04
    assert abs(sample_flip(b, gen, torch.device("cpu")).float().mean() - 0.5) < 0.04
    boxes = torch.tensor([8.0, 8.0, 24.0, 24.0, 1.0, 0.0]).expand(b, 1, 6)
    c = sample_crops(to_canvas(boxes, e.offset), e.ratio * size, gen)
    modes = torch.where(torch.isnan(c.min_iou), -1.0, c.min_iou)
    for v in (-1.0, *CROP_MODES[1:]):
        assert abs((modes == v).float().mean() - 1 / 6) < 0.03
    assert c.fallback[modes == CROP_MODES[1]].float().mean() < 0.15  # 0.08 at this seed


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        ssd_augment(torch.zeros(1, 3, 32, 48, dtype=torch.uint8), torch.zeros(1, 0, 6), torch.Generator(), MEAN)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_on_cuda():
    x, boxes = _batch(0, 8, 96, 4)
    x, boxes = x.cuda(), boxes.cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, moved = ssd_augment(x, boxes, gen, MEAN)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and moved.shape == boxes.shape


def test_the_ads_recipe_trains_ssd_with_it():
    """Wired in: `ssd` in a detection recipe transforms images with their boxes (boxes stay valid); the paper
    recipe names it; `ssd` with a second flip is refused."""
    assert load_params(ROOT / "params.yaml", "paper").recipe("ads_ssd").augment == ("ssd",)
    data = load_dataset("synthetic-voc", train_size=8, test_size=2)
    aug = Augmenter(["ssd"], data.spec.mean, data.spec.std, "cpu")
    x, y = aug.train_pair(data.train_x, data.train_y, torch.Generator().manual_seed(0), "detection")
    plain = Augmenter([], data.spec.mean, data.spec.std, "cpu").eval(data.train_x)
    assert x.shape == plain.shape and not torch.equal(x, plain)
    real = y[..., 4] >= 0
    assert real.any() and not torch.equal(y, data.train_y)
    assert ((y[real][:, :4] >= 0) & (y[real][:, :4] <= 96)).all()
    assert (y[real][:, 2] > y[real][:, 0]).all() and (y[real][:, 3] > y[real][:, 1]).all()
    raw = tiny_params(ROOT, dataset="synthetic-voc", backbone="ssd300", metric="map50_voc07")
    raw["recipes"]["tiny"]["augment"] = ["ssd", "flip"]
    with pytest.raises(ConfigError, match="ssd already flips"):
        parse_params(raw)
