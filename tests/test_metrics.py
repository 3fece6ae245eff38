"""repro.core.metrics: Cityscapes mIoU over the whole set; VOC07 11-point and COCO 101-point mAP@0.5."""

from __future__ import annotations

import importlib.util
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision

from repro.core.metrics import (
    DetectionMeter,
    ImageBoxes,
    SegmentationMeter,
    coco_average_precision,
    voc_average_precision,
)

IGNORE = 255


# ------------------------------------------------------------------------------------------------ segmentation
def iou_from_counts(targets, preds, num_classes):
    """Cordts et al. 2016: per class TP / (TP + FP + FN) over all pixels together (255 left out); the mean over
    the classes with TP + FP + FN > 0."""
    t = np.concatenate([np.asarray(x).ravel() for x in targets]).astype(np.int64)
    p = np.concatenate([np.asarray(x).ravel() for x in preds]).astype(np.int64)
    keep = t != IGNORE
    t, p = t[keep], p[keep]
    ious = []
    for c in range(num_classes):
        tp = int(np.sum((t == c) & (p == c)))
        fp = int(np.sum((t != c) & (p == c)))
        fn = int(np.sum((t == c) & (p != c)))
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return sum(ious) / len(ious)


def torchmetrics_miou(targets, preds, num_classes):
    m = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE, average="macro")
    for t, p in zip(targets, preds):
        m.update(torch.as_tensor(p).long(), torch.as_tensor(t).long())
    return float(m.compute())


def test_miou_accumulates_over_the_set_not_per_image():
    # image 1: all class 0, predicted right (per-image mIoU 1: class 1 absent there)
    # image 2: targets [0, 1, 1, 1], all predicted 1 (per-image IoU: class 0 -> 0, class 1 -> 3/4)
    t1, p1 = np.zeros((1, 2, 2), np.uint8), np.zeros((1, 2, 2), np.int64)
    t2, p2 = np.array([[[0, 1], [1, 1]]], np.uint8), np.ones((1, 2, 2), np.int64)
    per_image = (iou_from_counts([t1], [p1], 2) + iou_from_counts([t2], [p2], 2)) / 2
    whole = iou_from_counts([t1, t2], [p1, p2], 2)
    assert per_image == pytest.approx((1 + 3 / 8) / 2)  # 0.6875
    assert whole == pytest.approx((4 / 5 + 3 / 4) / 2)  # 0.775: class 0 4/(4+1), class 1 3/(3+1)
    meter = SegmentationMeter(2, "cpu")
    meter.update(torch.from_numpy(p1), torch.from_numpy(t1))
    meter.update(torch.from_numpy(p2), torch.from_numpy(t2))
    assert meter.compute() == pytest.approx(whole, abs=1e-6)
    assert abs(meter.compute() - per_image) > 0.05


def test_miou_ignores_255_pixels_and_takes_logits():
    t = torch.tensor([[[0, 1, IGNORE], [2, IGNORE, 1]]], dtype=torch.uint8)
    p = torch.tensor([[[0, 1, 2], [2, 0, 0]]])
    expected = iou_from_counts([t.numpy()], [p.numpy()], 3)
    # the ignored pixels' predictions count for nothing: changing them leaves the value alone
    p_other = p.clone()
    p_other[t == IGNORE] = 1
    logits = torch.nn.functional.one_hot(p, 3).permute(0, 3, 1, 2).float() * 5.0 + torch.rand(1, 3, 2, 3)
    for preds in (p, p_other, logits):
        meter = SegmentationMeter(3, "cpu")
        meter.update(preds, t)
        assert meter.compute() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)  # classes 0, 1: 1 / 2; class 2: 1
    assert int(meter.confusion_matrix.sum()) == 4


def test_absent_class_is_left_out_not_scored_0_or_1():
    """A class absent from both predictions and targets over the whole set is out of the mean (Cityscapes:
    NaN, skipped); torchmetrics' macro average does the same. A class only predicted counts with IoU 0."""
    t = torch.tensor([[[0, 0, 1, 1]]], dtype=torch.uint8)
    p = torch.tensor([[[0, 0, 1, 2]]])  # class 2 predicted, never in the target; class 3 nowhere
    meter = SegmentationMeter(4, "cpu")
    meter.update(p, t)
    per_class = meter.per_class()
    assert per_class[:3] == pytest.approx([1.0, 0.5, 0.0]) and math.isnan(per_class[3])
    assert meter.compute() == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3: not /4 (class 3 as 0), not 0.625 (as 1)
    assert torchmetrics_miou([t], [p], 4) == pytest.approx(0.5)


def test_bad_labels_raise_and_empty_is_nan():
    meter = SegmentationMeter(3, "cpu")
    assert math.isnan(meter.compute())
    meter.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7, dtype=torch.uint8))
    with pytest.raises(ValueError, match="outside"):
        meter.compute()
    with pytest.raises(ValueError):
        meter.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.uint8))  # 4 logits for 3 classes


@st.composite
def label_maps(draw):
    c = draw(st.integers(2, 4))
    n = draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    cells = n * h * w
    t = draw(st.lists(st.sampled_from([*range(c), IGNORE]), min_size=cells, max_size=cells))
    p = draw(st.lists(st.integers(0, c - 1), min_size=cells, max_size=cells))
    return c, np.array(t, np.uint8).reshape(n, h, w), np.array(p, np.int64).reshape(n, h, w)


@given(label_maps(), st.randoms(use_true_random=False))
@settings(max_examples=40)
def test_miou_matches_formula_and_torchmetrics_whatever_the_order(data, rnd):
    c, t, p = data
    if not (t != IGNORE).any():
        return
    expected = iou_from_counts([t], [p], c)
    assert torchmetrics_miou([t], [p], c) == pytest.approx(expected, abs=1e-6)
    order = list(range(len(t)))
    rnd.shuffle(order)
    cut = rnd.randint(0, len(t))
    meter = SegmentationMeter(c, "cpu")
    for chunk in (order[:cut], order[cut:]):  # permuted images, split over two update calls
        if chunk:
            meter.update(torch.from_numpy(p[chunk]), torch.from_numpy(t[chunk]))
    assert meter.compute() == pytest.approx(expected, abs=1e-6)


# -------------------------------------------------------------------------------------------------- detection
def box(x, y, w=10.0, h=10.0):
    return [x, y, x + w, y + h]


def targets_tensor(per_image):
    """float32 (N, M, 6) rows [x1, y1, x2, y2, class, difficult], padded with -1 rows."""
    m = max(1, max(len(rows) for rows in per_image))
    out = torch.full((len(per_image), m, 6), -1.0)
    for i, rows in enumerate(per_image):
        if rows:
            out[i, : len(rows)] = torch.tensor(rows, dtype=torch.float32)
    return out


def dets(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.long)}


def ap_from_definition(outcomes, npos, points):
    """Everingham et al. 2010 (Sec. 4) on a ranked list of 'tp' / 'fp': mean over r in {0, 1/n, .., 1} of
    the max precision at ranks with recall >= r (0 if none), in exact fractions."""
    tp = fp = 0
    pr = []
    for o in outcomes:  # 'ignored' (a difficult box's detection) moves neither count
        tp, fp = tp + (o == "tp"), fp + (o == "fp")
        pr.append((Fraction(tp, tp + fp) if tp + fp else Fraction(0), Fraction(tp, npos)))
    n = points - 1
    return float(sum(max([p for p, r in pr if r >= Fraction(k, n)], default=0) for k in range(points)) / points)


def test_perfect_detections_score_one():
    meter = DetectionMeter(3, "cpu")
    rows = [[[*box(0, 0), 0, 0], [*box(50, 50, 30, 20), 2, 0]], [[*box(10, 10, 40, 40), 1, 0]]]
    meter.update([dets([r[:4] for r in rows[0]], [0.9, 0.8], [0, 2]), dets([rows[1][0][:4]], [0.7], [1])],
                 targets_tensor(rows))
    out = meter.compute()
    assert out["map50_voc07"] == pytest.approx(1.0) and out["map50_coco101"] == pytest.approx(1.0)
    assert out["per_class"] == pytest.approx([1.0, 1.0, 1.0])


def test_crafted_ranking_11_point_vs_101_point():
    # one class, 4 boxes in 4 images (1 never found); ranking TP FP TP FP FP TP
    outcomes = ["tp", "fp", "tp", "fp", "fp", "tp"]
    gts = [box(0, 0), box(100, 0), box(0, 100), box(100, 100)]
    rows = [[[*g, 0, 0]] for g in gts]
    found = iter(range(3))
    per_image = [[] for _ in gts]
    for rank, o in enumerate(outcomes):
        i = next(found) if o == "tp" else rank % 4
        b = gts[i] if o == "tp" else box(200 + 20 * rank, 200)  # a FP far from every box
        per_image[i].append((b, 1.0 - 0.1 * rank))
    detections = [dets([b for b, _ in d], [s for _, s in d], [0] * len(d)) for d in per_image]
    meter = DetectionMeter(1, "cpu")
    meter.update(detections[:2], targets_tensor(rows[:2]))
    meter.update(detections[2:], targets_tensor(rows[2:]))
    out = meter.compute()
    ap11, ap101 = ap_from_definition(outcomes, 4, 11), ap_from_definition(outcomes, 4, 101)
    assert ap11 == pytest.approx(6 / 11)  # (3 * 1 + 3 * 2/3 + 2 * 1/2 + 3 * 0) / 11
    assert ap101 == pytest.approx((26 + 25 * 2 / 3 + 25 / 2) / 101)
    assert abs(ap11 - ap101) > 5e-4
    assert out["map50_voc07"] == pytest.approx(ap11, abs=1e-12)
    assert out["map50_coco101"] == pytest.approx(ap101, abs=1e-9)


def test_difficult_box_detection_is_neither_tp_nor_fp():
    rows = [[[*box(0, 0), 0, 0], [*box(50, 50), 0, 1]]]  # one normal, one difficult box
    # two detections on the difficult box (both ignored) ranked above the one on the normal box
    d = dets([box(50, 50), box(51, 50), box(0, 0)], [0.9, 0.85, 0.8], [0, 0, 0])
    meter = DetectionMeter(1, "cpu")
    meter.update([d], targets_tensor(rows))
    out = meter.compute()
    # were they FPs, precision at full recall would be 1/3; were the difficult box a positive, recall 1/2
    assert out["map50_voc07"] == pytest.approx(1.0) and out["map50_coco101"] == pytest.approx(1.0)
    images = meter.images()
    images[0].gt_difficult[:] = False  # the same boxes without the difficult flag: a FP duplicate and a miss
    assert voc_average_precision(images, 1)[0] < 0.9


def test_difficult_rule_differs_from_coco_crowd():
    """COCO's crowd IoU is intersection / detection area: a small detection inside a large difficult box is
    ignored as crowd, while VOC07 (IoU 0.04 <= 0.5) counts it a FP."""
    rows = [[[*box(0, 0), 0, 0], [*box(50, 50, 100, 100), 0, 1]]]
    d = dets([box(60, 60, 20, 20), box(0, 0)], [0.9, 0.8], [0, 0])
    meter = DetectionMeter(1, "cpu")
    meter.update([d], targets_tensor(rows))
    out = meter.compute()
    assert out["map50_voc07"] == pytest.approx(ap_from_definition(["fp", "tp"], 1, 11))  # 1/2
    assert out["map50_coco101"] == pytest.approx(1.0)


def test_duplicate_and_best_box_rule():
    """VOC07: a detection is judged against its single best-IoU box; if that box is taken it is a FP even
    when it overlaps another free box by > 0.5 (COCO would match it to the free box)."""
    a, b = box(0, 0, 10, 10), box(2, 0, 10, 10)  # IoU(a, b) = 80 / 120
    rows = [[[*a, 0, 0], [*b, 0, 0]]]
    d = dets([a, a], [0.9, 0.8], [0, 0])  # the second is a duplicate on a (IoU 1) though IoU with b is 2/3
    images = [ImageBoxes.make(d["boxes"].numpy(), d["scores"].numpy(), d["labels"].numpy(),
                              np.array([r[:4] for r in rows[0]]), [0, 0])]
    assert voc_average_precision(images, 1)[0] == pytest.approx(ap_from_definition(["tp", "fp"], 2, 11))
    assert coco_average_precision(images, 1)[0] == pytest.approx(1.0)


def test_class_with_only_difficult_boxes_is_out_of_the_mean():
    rows = [[[*box(0, 0), 0, 0], [*box(50, 50), 1, 1]]]  # class 1: only a difficult box; class 2: none
    d = dets([box(0, 0), box(50, 50), box(100, 100)], [0.9, 0.8, 0.7], [0, 1, 2])
    meter = DetectionMeter(3, "cpu")
    meter.update([d], targets_tensor(rows))
    out = meter.compute()
    assert out["per_class"][0] == pytest.approx(1.0)
    assert math.isnan(out["per_class"][1]) and math.isnan(out["per_class"][2])
    assert math.isnan(out["per_class_coco101"][1]) and math.isnan(out["per_class_coco101"][2])
    assert out["map50_voc07"] == pytest.approx(1.0) and out["map50_coco101"] == pytest.approx(1.0)


def test_meter_edge_cases():
    meter = DetectionMeter(2, "cpu")
    out = meter.compute()
    assert math.isnan(out["map50_voc07"]) and math.isnan(out["map50_coco101"])
    meter.update([dets([], [], []), dets([], [], [])], targets_tensor([[[*box(0, 0), 1, 0]], []]))
    out = meter.compute()  # a box, no detection at all: AP 0 for its class
    assert out["map50_voc07"] == 0.0 and out["map50_coco101"] == 0.0
    assert math.isnan(out["per_class"][0])
    with pytest.raises(ValueError):
        meter.update([dets([], [], [])], targets_tensor([[], []]))


def voc07_reference(images, num_classes):
    """The VOC2007 devkit's loop (VOCevaldet.m; ssd.pytorch's voc_eval port), one detection at a time."""
    aps = []
    for c in range(num_classes):
        gts = [(im.gt_boxes[im.gt_labels == c], im.gt_difficult[im.gt_labels == c]) for im in images]
        npos = sum(int((~d).sum()) for _, d in gts)
        if npos == 0:
            aps.append(float("nan"))
            continue
        found = [np.zeros(len(d), bool) for _, d in gts]
        ranked = sorted(((-s, i, k) for i, im in enumerate(images) for k, s in enumerate(im.det_scores)
                         if im.det_labels[k] == c))
        outcomes = []
        for _, i, k in ranked:
            bb, (bbgt, difficult) = images[i].det_boxes[k], gts[i]
            ovmax, jmax = -np.inf, -1
            for j, g in enumerate(bbgt):
                iw = max(min(bb[2], g[2]) - max(bb[0], g[0]), 0.0)
                ih = max(min(bb[3], g[3]) - max(bb[1], g[1]), 0.0)
                uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih
                if iw * ih / uni > ovmax:
                    ovmax, jmax = iw * ih / uni, j
            if ovmax > 0.5:
                if difficult[jmax]:
                    outcomes.append("ignored")
                elif not found[i][jmax]:
                    found[i][jmax] = True
                    outcomes.append("tp")
                else:
                    outcomes.append("fp")
            else:
                outcomes.append("fp")
        aps.append(ap_from_definition(outcomes, npos, 11))
    return aps


def cluttered_scene(seed, num_classes=3):
    """Overlapping boxes, duplicates, difficult boxes: everything the VOC07 rule has to decide."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(rng.integers(1, 4)):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 60, (n, 2))
        gb = np.c_[xy, xy + rng.uniform(10, 40, (n, 2))]
        gl = rng.integers(0, num_classes, n)
        src = rng.integers(0, n, int(rng.integers(0, 10))) if n else np.zeros(0, np.int64)
        db = gb[src] + rng.normal(0, 4, (len(src), 4))
        extra = rng.uniform(0, 80, (int(rng.integers(0, 3)), 2))
        db = np.vstack([db, np.c_[extra, extra + 20]])
        dl = np.r_[np.where(rng.uniform(size=len(src)) < 0.8, gl[src],
                            rng.integers(0, num_classes, len(src))), rng.integers(0, num_classes, len(extra))]
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        images.append(ImageBoxes.make(db, rng.uniform(0, 1, len(db)), dl, gb, gl, rng.uniform(size=n) < 0.25))
    return images


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=40)
def test_voc07_matches_the_devkit_loop(seed):
    images = cluttered_scene(seed)
    np.testing.assert_allclose(voc_average_precision(images, 3), voc07_reference(images, 3), atol=1e-12)


def random_scene(seed, num_classes=3, difficult=False, grid=4):
    """Images whose boxes sit in separate grid cells, each detection within one cell: no detection overlaps
    two boxes, so VOC's and COCO's matching agree (given no difficult box)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(rng.integers(1, 4)):
        cells = rng.permutation(grid * grid)
        n_gt = int(rng.integers(0, 5))
        n_fp = int(rng.integers(0, 4))
        gb, gl, db, dl = [], [], [], []
        for cell in cells[:n_gt]:
            x, y = 100.0 * (cell % grid) + rng.uniform(0, 20), 100.0 * (cell // grid) + rng.uniform(0, 20)
            g = [x, y, x + rng.uniform(20, 60), y + rng.uniform(20, 60)]
            gb.append(g)
            gl.append(int(rng.integers(0, num_classes)))
            for _ in range(rng.integers(0, 3)):  # hits, near misses and duplicates
                j = rng.normal(0, 0.15, 4) * (g[2] - g[0])
                db.append(np.clip(np.array(g) + j, [100.0 * (cell % grid), 100.0 * (cell // grid)] * 2,
                                  [100.0 * (cell % grid) + 99, 100.0 * (cell // grid) + 99] * 2))
                dl.append(gl[-1] if rng.uniform() < 0.85 else int(rng.integers(0, num_classes)))
        for cell in cells[n_gt:n_gt + n_fp]:  # detections on empty cells
            x, y = 100.0 * (cell % grid) + 5, 100.0 * (cell // grid) + 5
            db.append([x, y, x + 30, y + 30])
            dl.append(int(rng.integers(0, num_classes)))
        images.append(ImageBoxes.make(np.array(db).reshape(-1, 4), rng.uniform(0, 1, len(db)), dl,
                                      np.array(gb).reshape(-1, 4), gl,
                                      rng.uniform(size=len(gl)) < (0.3 if difficult else 0.0)))
    return images


def torchmetrics_precision(images, num_classes):
    """torchmetrics' precision envelope at recall j/100, per class (NaN column: no box)."""
    m = MeanAveragePrecision(iou_thresholds=[0.5], rec_thresholds=[j / 100 for j in range(101)],
                             max_detection_thresholds=[1, 10, 1000], extended_summary=True)
    m.update([{"boxes": torch.from_numpy(i.det_boxes), "scores": torch.from_numpy(i.det_scores),
               "labels": torch.from_numpy(i.det_labels)} for i in images],
             [{"boxes": torch.from_numpy(i.gt_boxes), "labels": torch.from_numpy(i.gt_labels)} for i in images])
    r = m.compute()
    out = np.full((101, num_classes), np.nan)
    for k, c in enumerate(r["classes"].reshape(-1).tolist()):
        col = r["precision"][0, :, k, 0, -1].double().numpy()
        if (col >= 0).all():
            out[:, c] = col
    return out


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_voc07_equals_coco_envelope_at_every_tenth_recall_without_difficult(seed):
    """Without difficult boxes and with unambiguous matching, VOC07's 11-point AP is the mean of COCO's
    precision envelope at recall 0, 0.1, .., 1 (indices 0, 10, .., 100), and the 101-point AP over the VOC
    matching equals torchmetrics' AP."""
    images = random_scene(seed)
    voc11 = voc_average_precision(images, 3)
    voc101 = voc_average_precision(images, 3, recall_points=101)
    coco = coco_average_precision(images, 3)
    env = torchmetrics_precision(images, 3)
    for c in range(3):
        if math.isnan(voc11[c]):
            assert math.isnan(coco[c])
            continue
        assert voc11[c] == pytest.approx(env[::10, c].mean(), abs=1e-9)
        assert voc101[c] == pytest.approx(coco[c], abs=1e-9)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2), st.booleans())
@settings(max_examples=30)
def test_ap_bounds_and_a_lowest_false_positive_never_helps(seed, cls, difficult):
    images = random_scene(seed, difficult=difficult)
    before = [voc_average_precision(images, 3), coco_average_precision(images, 3)]
    for aps in before:
        assert all(0.0 <= a <= 1.0 for a in aps if not math.isnan(a))
    low = min([s for i in images for s in i.det_scores], default=1.0) - 0.01
    im = images[0]
    images[0] = ImageBoxes(np.vstack([im.det_boxes, [[1000.0, 1000.0, 1040.0, 1040.0]]]),
                           np.append(im.det_scores, low), np.append(im.det_labels, cls),
                           im.gt_boxes, im.gt_labels, im.gt_difficult)
    after = [voc_average_precision(images, 3), coco_average_precision(images, 3)]
    for b, a in zip(before, after):
        for x, y in zip(b, a):
            assert math.isnan(x) == math.isnan(y)
            assert math.isnan(x) or y <= x + 1e-12


@pytest.mark.skipif(not (importlib.util.find_spec("faster_coco_eval") and importlib.util.find_spec("pycocotools")),
                    reason="needs both COCO backends")
def test_coco_backends_agree():
    for seed in range(5):
        images = random_scene(seed, difficult=True) + random_scene(seed + 100)
        a = coco_average_precision(images, 3, backend="pycocotools")
        b = coco_average_precision(images, 3, backend="faster_coco_eval")
        assert np.allclose(a, b, equal_nan=True, atol=1e-12)
