"""DRN-D / DRNSeg (fyu/drn) and SSD300-VGG16 (torchvision) plus the reduced SSD: pinned parameter counts, shapes,
the frozen bilinear up-sampler, losses, detection and a few optimisation steps at smoke sizes."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
from torchvision.ops import box_iou

from repro.models.base import count_parameters
from repro.models.drn import DRN, DRNSeg, load_pretrained
from repro.models.ssd import SSD300_VOC_PARAMS, ScaledVGGExtractor, build_ssd


# ---------------------------------------------------------------- DRN
def test_drn_parameter_counts():
    with torch.device("meta"):  # counts only: no memory, no init cost
        assert count_parameters(DRN(num_classes=1000)) == 16_393_752  # DRN-D-22 ImageNet classifier
        seg = DRNSeg(19)
        d38 = DRNSeg(19, arch="drn_d_38")
    assert count_parameters(seg.base) == 15_880_752
    assert count_parameters(seg) == 15_890_499
    assert count_parameters(seg, trainable_only=False) == 15_895_363
    assert count_parameters(d38) == 25_998_659


@pytest.mark.parametrize("hw", [(32, 64), (32, 32)])
def test_drnseg_shapes(hw):
    torch.manual_seed(0)
    model = DRNSeg(19, width=0.125).eval()
    x = torch.randn(2, 3, *hw)
    out = model(x)
    h, w = hw
    assert out.logits.shape == (2, 19, h, w)
    assert out.features.shape == (2, model.feature_dim, h // 8, w // 8) and model.feature_dim == 64
    assert [tuple(s.shape[1:]) for s in out.stages] == [(8, h // 4, w // 4), (16, h // 8, w // 8),
                                                         (32, h // 8, w // 8), (64, h // 8, w // 8)]
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.embed(x)), out.logits)


def test_drnseg_full_size_shapes_on_meta():
    with torch.device("meta"):
        model = DRNSeg(19)
        out = model(torch.empty(1, 3, 688, 688))
    assert out.logits.shape == (1, 19, 688, 688) and out.features.shape == (1, 512, 86, 86)


def test_drnseg_rejects_sizes_not_multiple_of_8():
    model = DRNSeg(19, width=0.125)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 3, 30, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        model.embed(torch.randn(1, 3, 32, 60))


def test_drnseg_up_is_frozen_bilinear():
    model = DRNSeg(5, width=0.125, dropout=0.1)
    assert isinstance(model.head[0], torch.nn.Dropout2d) and model.head[1] is model.seg and model.head[2] is model.up
    assert not model.up.weight.requires_grad
    assert all(p is not model.up.weight for p in model.parameters() if p.requires_grad)
    const = torch.full((1, 5, 4, 8), 0.7)
    with torch.no_grad():
        y = model.up(const)
    assert y.shape == (1, 5, 32, 64)
    torch.testing.assert_close(y[..., 4:-4, 4:-4], torch.full_like(y[..., 4:-4, 4:-4], 0.7))  # 4-pixel border


def test_drnseg_training_decreases_loss():
    torch.manual_seed(0)
    model = DRNSeg(4, width=0.125)
    up = model.up.weight.clone()
    x = torch.randn(4, 3, 32, 32)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    y[:, :2] = 255  # ignored pixels
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x).logits, y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert torch.equal(model.up.weight, up)


def test_load_pretrained(tmp_path):
    torch.manual_seed(0)
    src = DRN(width=0.125, num_classes=1000)
    path = tmp_path / "drn.pth"
    torch.save({k: v for k, v in src.state_dict().items() if "num_batches_tracked" not in k}, path)  # as fyu's
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model = DRNSeg(19, width=0.125)
    load_pretrained(model, path, digest)
    torch.testing.assert_close(model.base.layer8[0].weight, src.layer8[0].weight)
    load_pretrained(model, path, digest[:8])  # a torch.hub-style prefix is enough
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(model, path, "0" * 64)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained(model, tmp_path / "missing.pth", digest)
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(DRNSeg(19, width=0.25), path, digest)


# ---------------------------------------------------------------- SSD
def _boxes(n: int, size: int, seed: int = 0, max_boxes: int = 4) -> torch.Tensor:
    """Padded (n, max_boxes, 6) targets; the last image has none, one box per image is marked difficult."""
    g = torch.Generator().manual_seed(seed)
    t = torch.full((n, max_boxes, 6), -1.0)
    for i in range(n - 1):
        for j in range(1 + i % max_boxes):
            xy = torch.rand(2, generator=g) * size * 0.6
            wh = size * (0.15 + 0.3 * torch.rand(2, generator=g))
            cls = torch.randint(20, (1,), generator=g).float()
            t[i, j] = torch.cat([xy, (xy + wh).clamp(max=size), cls, torch.tensor([float(j == 3)])])
    return t


def test_ssd300_count_equals_torchvision():
    with torch.device("meta"):
        model = build_ssd(20)
        reference = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)
        mirror = ScaledVGGExtractor(1.0, 300)
    out = model(torch.empty(2, 3, 300, 300, device="meta"))  # outside the context: anchors are built on the CPU
    assert isinstance(model.ssd.backbone, SSDFeatureExtractorVGG)
    assert count_parameters(model) == count_parameters(reference) == SSD300_VOC_PARAMS == 26_285_486
    assert count_parameters(model, trainable_only=False) == SSD300_VOC_PARAMS
    assert count_parameters(mirror) == count_parameters(reference.backbone)  # the reduced layout at width 1
    assert [m.shape[-1] for m in out.feature_maps] == [38, 19, 10, 5, 3, 1]
    assert out.cls_logits.shape == (2, 8732, 21) and out.anchors[0].shape == (8732, 4)
    assert out.features.shape == (2, 512) and model.feature_dim == 512


@pytest.mark.parametrize("size,grids,anchors", [(96, [12, 6, 3, 2, 1, 1], 878), (64, [8, 4, 2, 1, 1, 1], 390)])
def test_reduced_ssd_shapes(size, grids, anchors):
    model = build_ssd(20, width=0.125, size=size)
    out = model(torch.randn(3, 3, size, size))
    assert [m.shape[-1] for m in out.feature_maps] == grids
    assert out.cls_logits.shape == (3, anchors, 21) and out.bbox_regression.shape == (3, anchors, 4)
    assert out.logits is out.cls_logits and out.stages is out.feature_maps
    assert out.features.shape == (3, model.feature_dim) and model.feature_dim == 64
    assert len(out.anchors) == 3 and out.anchors[0].shape == (anchors, 4) and out.anchors[0].dtype == torch.float32


def test_ssd_rejects_wrong_size():
    with pytest.raises(ValueError, match=r"\(N, C, 96, 96\)"):
        build_ssd(20, width=0.125, size=96)(torch.randn(1, 3, 64, 64))


def test_ssd_losses_match_torchvision_and_per_image():
    torch.manual_seed(0)
    model = build_ssd(20, width=0.125, size=96)
    x, t = torch.randn(6, 3, 96, 96), _boxes(6, 96)
    out = model(x)
    losses = model.loss_from_output(out, t)
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    targets = model.target_list(t)
    assert [len(d["boxes"]) for d in targets] == [1, 2, 3, 3, 1, 0]  # difficult (4th) boxes and padding dropped
    assert targets[0]["labels"].min() >= 1  # 0 is the background
    matched = [model.ssd.proposal_matcher(box_iou(d["boxes"], a)) if len(d["boxes"])
               else torch.full((len(a),), -1) for d, a in zip(targets, out.anchors)]
    head = {"cls_logits": out.cls_logits, "bbox_regression": out.bbox_regression}
    reference = model.ssd.compute_loss(targets, head, out.anchors, matched)
    for k in reference:
        torch.testing.assert_close(losses[k], reference[k])
    per_image = model.per_image_losses(x, t)
    assert per_image.shape == (6,) and per_image[-1] == 0 and (per_image[:-1] > 0).all()
    with torch.no_grad():
        single = sum(model.losses(x[1:2], t[1:2]).values())
    torch.testing.assert_close(per_image[1].detach(), single)


def test_ssd_empty_targets():
    model = build_ssd(20, width=0.125, size=64)
    x = torch.randn(2, 3, 64, 64)
    for t in (torch.full((2, 3, 6), -1.0), torch.zeros((2, 0, 6))):
        losses = model.losses(x, t)
        total = sum(losses.values())
        assert torch.isfinite(total) and total == 0
        total.backward()
        assert torch.equal(model.per_image_losses(x, t), torch.zeros(2))


def test_ssd_detect():
    torch.manual_seed(0)
    model = build_ssd(20, width=0.125, size=96).eval()
    with torch.no_grad():
        dets = model.detect(torch.randn(3, 3, 96, 96), score_thresh=0.02, detections_per_img=50)
    assert len(dets) == 3
    for d in dets:
        assert len(d["boxes"]) == len(d["scores"]) == len(d["labels"]) <= 50
        assert (d["scores"] > 0.02).all() and d["labels"].min() >= 0 and d["labels"].max() < 20
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 96).all()
    assert model.ssd.score_thresh == 0.01 and model.ssd.detections_per_img == 200  # defaults restored


def test_ssd_training_decreases_loss():
    torch.manual_seed(0)
    model = build_ssd(20, width=0.125, size=96)
    x, t = torch.randn(8, 3, 96, 96), _boxes(8, 96, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = sum(model.losses(x, t).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
