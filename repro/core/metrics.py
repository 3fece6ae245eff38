"""Evaluation metrics of the dense tasks: segmentation mIoU and detection mAP@0.5.

Segmentation (`SegmentationMeter`): the Cityscapes benchmark's IoU (Cordts et al. 2016, "The Cityscapes Dataset
for Semantic Urban Scene Understanding", CVPR, pixel-level task metric; cityscapesScripts
evalPixelLevelSemanticLabeling.py): per class IoU = TP / (TP + FP + FN) with the counts accumulated over the
WHOLE evaluation set (not a mean of per-image IoUs), pixels labelled 255 left out, and the mean taken over the
classes whose IoU is defined (TP + FP + FN > 0; the script's NaN classes are skipped). The reduction is
torchmetrics' own (`MulticlassJaccardIndex(num_classes=C, ignore_index=255, average="macro")`, whose
`compute()` calls `_jaccard_index_reduce`): since torchmetrics 1.0 its macro average gives weight 0 to a class
absent from both predictions and targets, which is the Cityscapes rule (such a class counts neither as 0 nor as
1, so `zero_division` has no effect on the mean); a class absent from the targets but predicted somewhere has
IoU 0 and is counted, as in Cityscapes. Only the counting is done here: `MulticlassJaccardIndex.update` keeps the
non-ignored pixels with a boolean mask and counts with `torch.bincount`, and on CUDA both read a size back to
the host (a sync per batch; under deterministic mode its bincount fallback allocates pixels x C^2);
`SegmentationMeter.update` adds the same confusion counts with `index_add_`, which stays on the device.
tests/test_metrics.py checks the result against `MulticlassJaccardIndex` itself.

Detection (`DetectionMeter`): two numbers from the same detections.
- `map50_voc07`: PASCAL VOC 2007's AP (Everingham et al. 2010, "The PASCAL Visual Object Classes (VOC)
  Challenge", IJCV 88(2), Sec. 4: interpolated AP, the detection overlap criterion, "difficult" objects; the
  VOC2007 devkit's VOCevaldet.m and its Python port `voc_eval(..., use_07_metric=True)` in py-faster-rcnn and
  ssd.pytorch). Detections of a class are ranked by score over all images; each is assigned the ground truth
  of its class in its image with the largest IoU (difficult and already detected ones included); IoU > 0.5
  with a non-difficult box not yet detected: TP; with one already detected: FP (duplicate); with a difficult
  box: ignored (neither TP nor FP; a difficult box can absorb any number of detections); IoU <= 0.5: FP.
  Recall counts the non-difficult boxes only. AP is the 11-point interpolated average: the mean over r in
  {0, 0.1, ..., 1} of the largest precision at a rank whose recall is >= r (0 when no rank reaches r).
  "recall >= r" is decided exactly (10 * TP >= k * npos in integers); the Python port's
  `np.arange(0, 1.1, 0.1)` makes 0.3, 0.6 and 0.7 slightly larger than k/10 and so misses a recall of exactly
  0.3 / 0.6 / 0.7 - a float artifact, not the definition. IoU on continuous coordinates (intersection / union,
  no "+1" pixel), as in ssd.pytorch's port and in torchvision; the devkit's "+1" belongs to integer, 1-based
  pixel boxes, which resized 300 x 300 float boxes are not.
- `map50_coco101`: torchmetrics' `MeanAveragePrecision` (backend faster_coco_eval, else pycocotools) at IoU
  0.5: COCO's 101-point interpolated AP with COCO's matching, difficult boxes passed as `iscrowd=1` (COCO's
  own mark for boxes that neither count in recall nor make a detection a FP). `rec_thresholds` is passed as
  exactly j / 100: torchmetrics' default (a float32 linspace) puts e.g. 0.6 and 0.8 above their float64 value
  and pycocotools' own float64 linspace puts 0.35 and 0.7 above theirs, so a recall of exactly that value
  would be skipped. The per-image cap on detections is lifted (`max_detection_thresholds[-1]` >= the largest
  count), so both numbers see the same detections; VOC has no cap.

Crowd vs difficult (pycocotools `COCOeval.evaluateImg` / `computeIoU` / `accumulate` read against VOCevaldet):
  the same - a detection matched to a crowd box is ignored (neither TP nor FP), several detections may match
  one crowd box (all ignored), crowd boxes are not in the recall denominator (`npig`), and a class with only
  crowd boxes has no AP (precision -1, left out of the mean).
  different - (1) the IoU with a crowd box is intersection / detection area (`maskUtils.iou` with iscrowd),
  never smaller than the VOC IoU, so a small detection inside a large difficult box is ignored by COCO but a
  FP for VOC; (2) COCO matches a detection to the best still unmatched, non-crowd box with IoU >= t and
  falls back to a crowd box only when there is none, while VOC judges it against the one box of largest IoU:
  a detection whose best box is difficult is ignored by VOC, and one whose best box is already detected is a
  VOC FP, even when another free box overlaps it by more than 0.5 (COCO: a TP on that box); (3) COCO's test
  is IoU >= 0.5, VOC's IoU > 0.5. So `iscrowd` does not reproduce VOC07's rule, and the VOC07 number comes
  from `voc_average_precision` below (checked against a literal port of the devkit's loop). Without difficult
  boxes and with no detection overlapping two boxes of its class, both protocols match alike; then the
  11-point AP equals the mean of torchmetrics' `precision` (pycocotools' monotone envelope read at the first
  rank whose recall >= each threshold, 0 past the last) at indices 0, 10, ..., 100, and the 101-point AP
  equals `voc_average_precision(..., recall_points=101)`: tests/test_metrics.py checks both. Score ties are
  broken by image, then detection order (stable sorts) in both.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np
import torch

from repro.spec.datasets import IGNORE_INDEX

__all__ = ["SegmentationMeter", "DetectionMeter", "ImageBoxes", "voc_average_precision",
           "coco_average_precision", "coco_backend", "interpolated_ap"]


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(sum(defined) / len(defined)) if defined else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------------------
class SegmentationMeter:
    """Cityscapes mIoU (Cordts et al. 2016) over a whole evaluation set, accumulated on the device.

    `update(logits_or_preds, target)`: logits (N, C, H, W) (argmax taken on the device) or class ids
    (N, H, W); target uint8 / int64 (N, H, W) with 255 ignored. Nothing is read back to the host until
    `compute()`. A target value outside 0..C-1 that is not 255 (or a predicted id outside 0..C-1) is counted
    apart and makes `compute()` raise.
    """

    def __init__(self, num_classes: int, device: torch.device | str):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.device = torch.device(device)
        c = self.num_classes
        # bins 0 .. C*C-1: confusion counts (row = target, column = prediction); C*C: ignored pixels;
        # C*C + 1: invalid labels or predictions
        self._counts = torch.zeros(c * c + 2, dtype=torch.int64, device=self.device)

    def update(self, logits_or_preds: torch.Tensor, target: torch.Tensor) -> None:
        c = self.num_classes
        x = logits_or_preds.detach()
        if x.dim() == 4:
            if x.shape[1] != c:
                raise ValueError(f"logits have {x.shape[1]} classes on dimension 1, the meter {c}")
            preds = x.to(self.device).argmax(1)
        elif x.dim() == 3 and not x.is_floating_point():
            preds = x.to(self.device)
        else:
            raise ValueError(f"expected logits (N, C, H, W) or integer class ids (N, H, W), got "
                             f"{x.dtype} {tuple(x.shape)}")
        if target.dim() != 3 or tuple(target.shape) != tuple(preds.shape) or target.is_floating_point():
            raise ValueError(f"target must be integer (N, H, W) matching the predictions {tuple(preds.shape)}, "
                             f"got {target.dtype} {tuple(target.shape)}")
        t = target.to(self.device).long().flatten()
        p = preds.long().flatten()
        valid = (t >= 0) & (t < c) & (p >= 0) & (p < c)
        bins = torch.where(t == IGNORE_INDEX, torch.full_like(t, c * c),
                           torch.where(valid, t * c + p, torch.full_like(t, c * c + 1)))
        # index_add_ with a broadcast 1: no host sync (torch.bincount reads the maximum back on CUDA)
        self._counts.index_add_(0, bins, torch.ones((), dtype=torch.int64, device=self.device).expand(len(bins)))

    @property
    def confusion_matrix(self) -> torch.Tensor:
        """(C, C) int64 counts over the pixels seen so far, rows = target class, columns = predicted class."""
        c = self.num_classes
        return self._counts[: c * c].view(c, c)

    def _checked_confmat(self) -> torch.Tensor:
        counts = self._counts.cpu()
        bad = int(counts[-1])
        if bad:
            raise ValueError(f"{bad} pixels had a target outside 0..{self.num_classes - 1} (other than "
                             f"{IGNORE_INDEX}) or a predicted class outside that range")
        c = self.num_classes
        return counts[: c * c].view(c, c)

    def per_class(self) -> list[float]:
        """Each class's IoU (Cordts et al. 2016); NaN for a class absent from both predictions and targets."""
        from torchmetrics.functional.classification.jaccard import _jaccard_index_reduce

        confmat = self._checked_confmat()
        iou = _jaccard_index_reduce(confmat, average="none", ignore_index=IGNORE_INDEX)
        defined = (confmat.sum(0) + confmat.sum(1)) > 0
        return [float(v) if d else float("nan") for v, d in zip(iou.tolist(), defined.tolist())]

    def compute(self) -> float:
        """mIoU in [0, 1]: torchmetrics' macro reduction of the whole-set confusion matrix (the mean over the
        classes present in the predictions or the targets, Cityscapes' rule); NaN when no pixel was counted."""
        from torchmetrics.functional.classification.jaccard import _jaccard_index_reduce

        confmat = self._checked_confmat()
        if int(confmat.sum()) == 0:
            return float("nan")
        return float(_jaccard_index_reduce(confmat, average="macro", ignore_index=IGNORE_INDEX))


# ---------------------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ImageBoxes:
    """One image's detections and ground truth (numpy, xyxy on continuous coordinates)."""

    det_boxes: np.ndarray  # (K, 4) float64
    det_scores: np.ndarray  # (K,) float64
    det_labels: np.ndarray  # (K,) int64, 0..C-1
    gt_boxes: np.ndarray  # (G, 4) float64
    gt_labels: np.ndarray  # (G,) int64, 0..C-1
    gt_difficult: np.ndarray  # (G,) bool

    def __post_init__(self):
        k, g = len(self.det_boxes), len(self.gt_boxes)
        if self.det_boxes.shape != (k, 4) or self.det_scores.shape != (k,) or self.det_labels.shape != (k,):
            raise ValueError(f"detections: boxes {self.det_boxes.shape}, scores {self.det_scores.shape}, "
                             f"labels {self.det_labels.shape} disagree")
        if self.gt_boxes.shape != (g, 4) or self.gt_labels.shape != (g,) or self.gt_difficult.shape != (g,):
            raise ValueError(f"ground truth: boxes {self.gt_boxes.shape}, labels {self.gt_labels.shape}, "
                             f"difficult {self.gt_difficult.shape} disagree")

    @classmethod
    def make(cls, det_boxes=(), det_scores=(), det_labels=(), gt_boxes=(), gt_labels=(), gt_difficult=None):
        gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        diff = np.zeros(len(gt_labels), bool) if gt_difficult is None else np.asarray(gt_difficult, bool)
        return cls(np.asarray(det_boxes, np.float64).reshape(-1, 4), np.asarray(det_scores, np.float64).reshape(-1),
                   np.asarray(det_labels, np.int64).reshape(-1), np.asarray(gt_boxes, np.float64).reshape(-1, 4),
                   gt_labels, diff.reshape(-1))


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, G) intersection over union of xyxy boxes on continuous coordinates (VOC's overlap criterion,
    Everingham et al. 2010 Sec. 4, without the devkit's integer-pixel "+1"); 0 where the union is empty."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def interpolated_ap(tp: np.ndarray, fp: np.ndarray, npos: int, recall_points: int = 11) -> float:
    """Interpolated AP of one ranked list (Everingham et al. 2010 Sec. 4, the VOC2007 devkit's 11-point AP
    for `recall_points=11`; COCO's 101-point version for 101): the mean over r in
    {0, 1/n, ..., 1} (n = recall_points - 1) of max{precision at ranks whose recall >= r}, 0 where no rank
    reaches r. `tp`, `fp`: 0/1 per rank in score order (a rank ignored by the difficult rule has both 0);
    `npos`: the non-difficult ground truths. Recall >= k/n is tested exactly as n * TP >= k * npos."""
    if npos <= 0:
        raise ValueError("AP is undefined without a positive")
    n = recall_points - 1
    tpc = np.cumsum(np.asarray(tp, np.int64))
    fpc = np.cumsum(np.asarray(fp, np.int64))
    if len(tpc) == 0:
        return 0.0
    precision = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # max precision at this rank or later
    first = np.searchsorted(tpc * n, np.arange(recall_points) * npos, side="left")
    values = np.where(first < len(envelope), envelope[np.minimum(first, len(envelope) - 1)], 0.0)
    return float(values.mean())


def voc_average_precision(images: list[ImageBoxes], num_classes: int, iou_threshold: float = 0.5,
                          recall_points: int = 11) -> list[float]:
    """Per-class AP by PASCAL VOC 2007's rules (Everingham et al. 2010 Sec. 4; VOC2007 devkit VOCevaldet.m):
    greedy matching in score order, each detection against its class's box of largest IoU in its image
    (IoU > `iou_threshold`), duplicates FP, detections on difficult boxes ignored, recall over non-difficult
    boxes; AP by `interpolated_ap` (11 points: VOC07). NaN for a class without a non-difficult box."""
    labels, scores, ovmax, gt_id, gt_diff_hit = [], [], [], [], []
    npos = np.zeros(num_classes, np.int64)
    offset = 0
    for im in images:
        if len(im.gt_labels):
            if im.gt_labels.min() < 0 or im.gt_labels.max() >= num_classes:
                raise ValueError(f"ground-truth class outside 0..{num_classes - 1}")
            npos += np.bincount(im.gt_labels[~im.gt_difficult], minlength=num_classes)
        k = len(im.det_labels)
        if k:
            if im.det_labels.min() < 0 or im.det_labels.max() >= num_classes:
                raise ValueError(f"detection class outside 0..{num_classes - 1}")
            if len(im.gt_labels):
                iou = _box_iou(im.det_boxes, im.gt_boxes)
                iou[im.det_labels[:, None] != im.gt_labels[None, :]] = -np.inf
                j = iou.argmax(1)  # first box among equals, as np.argmax in the devkit's port
                ov = iou[np.arange(k), j]
                diff = im.gt_difficult[j]
            else:
                j, ov, diff = np.zeros(k, np.int64), np.full(k, -np.inf), np.zeros(k, bool)
            labels.append(im.det_labels)
            scores.append(im.det_scores)
            ovmax.append(ov)
            gt_id.append(offset + j)
            gt_diff_hit.append(diff)
        offset += len(im.gt_labels)
    def cat(xs: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0, dtype)

    labels, scores, ovmax = cat(labels, np.int64), cat(scores, np.float64), cat(ovmax, np.float64)
    gt_id, gt_diff_hit = cat(gt_id, np.int64), cat(gt_diff_hit, bool)

    aps = []
    for c in range(num_classes):
        if npos[c] == 0:
            aps.append(float("nan"))
            continue
        sel = np.flatnonzero(labels == c)
        sel = sel[np.argsort(-scores[sel], kind="stable")]
        hit = ovmax[sel] > iou_threshold
        candidate = hit & ~gt_diff_hit[sel]  # IoU > t with a non-difficult box
        tp = np.zeros(len(sel), np.int64)
        cand_idx = np.flatnonzero(candidate)
        _, first = np.unique(gt_id[sel][cand_idx], return_index=True)  # the first detection of each box
        tp[cand_idx[first]] = 1
        fp = (~hit | (candidate & (tp == 0))).astype(np.int64)  # missed, or a duplicate
        aps.append(interpolated_ap(tp, fp, int(npos[c]), recall_points))
    return aps


def coco_backend() -> str:
    """torchmetrics' COCO backend: faster_coco_eval (a C++ COCOeval, ~4x faster on a VOC07-test-sized set)
    when installed, else pycocotools; tests/test_metrics.py checks both give the same APs."""
    return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") is not None else "pycocotools"


def coco_average_precision(images: list[ImageBoxes], num_classes: int, iou_threshold: float = 0.5,
                           backend: str | None = None) -> list[float]:
    """Per-class COCO-style 101-point AP at one IoU threshold (Lin et al. 2014, pycocotools COCOeval), from
    torchmetrics' `MeanAveragePrecision`: difficult boxes as `iscrowd=1`, recall thresholds exactly j/100,
    no per-image detection cap. NaN for a class without a non-crowd box."""
    from torchmetrics.detection import MeanAveragePrecision

    npos = np.zeros(num_classes, np.int64)
    for im in images:
        if len(im.gt_labels):
            npos += np.bincount(im.gt_labels[~im.gt_difficult], minlength=num_classes)
    if not images or npos.sum() == 0:
        return [float("nan")] * num_classes
    max_det = max([100] + [len(im.det_labels) for im in images])
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[float(iou_threshold)],
                                  rec_thresholds=[j / 100 for j in range(101)],
                                  max_detection_thresholds=[1, 10, max_det], extended_summary=True,
                                  backend=backend or coco_backend())
    preds = [{"boxes": torch.from_numpy(im.det_boxes), "scores": torch.from_numpy(im.det_scores),
              "labels": torch.from_numpy(im.det_labels)} for im in images]
    target = [{"boxes": torch.from_numpy(im.gt_boxes), "labels": torch.from_numpy(im.gt_labels),
               "iscrowd": torch.from_numpy(im.gt_difficult.astype(np.int64))} for im in images]
    metric.update(preds, target)
    result = metric.compute()
    # precision: (T=1, R=101, K, A, M); K follows result["classes"]; area "all" is 0, the largest cap is last
    precision = result["precision"][0, :, :, 0, -1]
    aps = [float("nan")] * num_classes
    for k, c in enumerate(result["classes"].reshape(-1).tolist()):
        column = precision[:, k]
        if 0 <= c < num_classes and bool((column >= 0).all()):  # -1: no non-crowd box of this class
            aps[c] = float(column.double().mean())
    return aps


class DetectionMeter:
    """VOC07 11-point mAP@0.5 and COCO-style 101-point mAP@0.5 over a whole evaluation set.

    `update(detections, targets)`: `detections` a list (one per image) of dicts with boxes (K, 4) xyxy,
    scores (K,), labels (K,) in 0..C-1; `targets` float32 (N, M, 6) rows [x1, y1, x2, y2, class, difficult]
    padded with rows of -1. `update` only keeps references (no host sync); `compute()` moves everything to
    the CPU once and returns {"map50_voc07", "map50_coco101", "per_class", "per_class_coco101"}: the means
    over the classes with at least one non-difficult box (as VOC), and the per-class APs (NaN: no such box).
    """

    def __init__(self, num_classes: int, device: torch.device | str):
        self.num_classes = int(num_classes)
        self.device = torch.device(device)
        self._detections: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._targets: list[torch.Tensor] = []

    def update(self, detections: list[dict[str, torch.Tensor]], targets: torch.Tensor) -> None:
        if targets.dim() != 3 or targets.shape[-1] != 6:
            raise ValueError(f"targets must be (N, M, 6), got {tuple(targets.shape)}")
        if len(detections) != len(targets):
            raise ValueError(f"{len(detections)} detection dicts for {len(targets)} target rows")
        for d in detections:
            boxes, scores, labels = d["boxes"].detach(), d["scores"].detach(), d["labels"].detach()
            if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != (len(boxes),) \
                    or labels.shape != (len(boxes),):
                raise ValueError(f"detections need boxes (K, 4), scores (K,), labels (K,); got "
                                 f"{tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(labels.shape)}")
            self._detections.append((boxes, scores, labels))
        self._targets.append(targets.detach())

    def images(self) -> list[ImageBoxes]:
        """What the meter has seen, one `ImageBoxes` per image, on the CPU."""
        if not self._detections:
            return []
        counts = [len(s) for _, s, _ in self._detections]
        boxes = torch.cat([b.reshape(-1, 4).double() for b, _, _ in self._detections]).cpu().numpy()
        scores = torch.cat([s.double() for _, s, _ in self._detections]).cpu().numpy()
        labels = torch.cat([lab.long() for _, _, lab in self._detections]).cpu().numpy()
        rows = [t.double().cpu().numpy() for t in self._targets]
        out, start = [], 0
        for t in rows:
            for r in t:
                k = counts[len(out)]
                r = r[r[:, 4] >= 0]
                out.append(ImageBoxes(boxes[start:start + k], scores[start:start + k], labels[start:start + k],
                                      r[:, :4].copy(), r[:, 4].astype(np.int64), r[:, 5] > 0.5))
                start += k
        return out

    def compute(self) -> dict:
        images = self.images()
        voc = voc_average_precision(images, self.num_classes, 0.5, recall_points=11)
        coco = coco_average_precision(images, self.num_classes, 0.5)
        return {"map50_voc07": _nanmean(voc), "map50_coco101": _nanmean(coco), "per_class": voc,
                "per_class_coco101": coco}
