"""SSD300's prior boxes equal ssd.pytorch's VOC `PriorBox` (amdegroot/ssd.pytorch layers/functions/prior_box.py with
data/config.py's `voc`), recomputed here independently of torchvision's DefaultBoxGenerator."""

from __future__ import annotations

import itertools
import math

import torch

from repro.models.ssd import build_ssd

# ssd.pytorch data/config.py, `voc`
FEATURE_MAPS = [38, 19, 10, 5, 3, 1]
STEPS = [8, 16, 32, 64, 100, 300]
MIN_SIZES = [30, 60, 111, 162, 213, 264]
MAX_SIZES = [60, 111, 162, 213, 264, 315]
ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
IMAGE_SIZE = 300


def reference_priors() -> torch.Tensor:
    """(8732, 4) float64 (cx, cy, w, h) in [0, 1], in `PriorBox.forward`'s order, clipped as it clips."""
    mean = []
    for k, f in enumerate(FEATURE_MAPS):
        for i, j in itertools.product(range(f), repeat=2):
            f_k = IMAGE_SIZE / STEPS[k]
            cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
            s_k = MIN_SIZES[k] / IMAGE_SIZE
            mean.append([cx, cy, s_k, s_k])
            s_prime = math.sqrt(s_k * (MAX_SIZES[k] / IMAGE_SIZE))
            mean.append([cx, cy, s_prime, s_prime])
            for ar in ASPECT_RATIOS[k]:
                mean.append([cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)])
                mean.append([cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)])
    return torch.tensor(mean, dtype=torch.float64).clamp(0, 1)


def _corners_px(cxcywh: torch.Tensor) -> torch.Tensor:
    return torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1) * IMAGE_SIZE


def test_ssd300_priors_equal_ssd_pytorch_voc():
    model = build_ssd(20).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 300, 300))
    anchors = out.anchors[0].double()
    reference = _corners_px(reference_priors())
    assert anchors.shape == reference.shape == (8732, 4)
    assert (anchors - reference).abs().max() < 1e-4  # in order, x1 y1 x2 y2 in input pixels


def test_reference_differs_from_coco_scales():
    """The check above tells VOC's priors from torchvision's stock COCO ones (scales 0.07 .. 1.05, centres
    unclipped) and from VOC scales without ssd.pytorch's centre clipping."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList

    reference = _corners_px(reference_priors())
    maps = [torch.empty(0, 0, f, f) for f in FEATURE_MAPS]
    images = ImageList(torch.empty(0, 0, 300, 300), [(300, 300)])
    for scales in ([0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], [0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05]):
        stock = DefaultBoxGenerator(ASPECT_RATIOS, scales=scales, steps=STEPS)(images, maps)[0].double()
        assert stock.shape == reference.shape and (stock - reference).abs().max() > 1


def test_reduced_ssd_uses_voc_scales():
    model = build_ssd(20, width=0.125, size=96)
    assert model.ssd.anchor_generator.scales == [0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05]
    out = model(torch.zeros(1, 3, 96, 96))
    a = out.anchors[0]
    assert a.shape == (878, 4)
    first = a[0]  # 12 x 12 map, cell (0, 0): centre 4 px, side 0.1 x 96
    torch.testing.assert_close(first, torch.tensor([4 - 4.8, 4 - 4.8, 4 + 4.8, 4 + 4.8]))
