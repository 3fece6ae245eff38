"""One `Task` per kind of target: classification, segmentation, detection.

A task owns what differs between them: how targets are stored and augmented with their images, the training
loss, the per-example loss (Learning Loss's target), `evaluate() -> {metric: value}`, how a per-position
acquisition score reduces to one number per image, and how features pool to one vector per image. The trainer,
the loop and the strategies go through it; classification keeps exactly the operations it always ran.

Dense outputs keep classes on dimension 1: segmentation logits (N, C, H, W), features (N, D, h, w); detection
class logits (N, A, C + 1) per anchor (SSD), the background column first.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from repro.core.device import autocast, device_layout
from repro.core.infer import accuracy, map_outputs
from repro.core.metrics import DetectionMeter, SegmentationMeter
from repro.spec.datasets import IGNORE_INDEX, TASKS
from repro.spec.params import TASK_METRICS


class Task:
    """The classification task (the base behaviour); dense tasks override what differs."""

    name: ClassVar[str] = "classification"

    @property
    def metrics(self) -> tuple[str, ...]:
        return TASK_METRICS[self.name]

    # ---- training ----
    def loss(self, model, out, y: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch's model output (fp32)."""
        return F.cross_entropy(out.logits.float(), y)

    def per_example_loss(self, model, out, y: torch.Tensor) -> torch.Tensor:
        """(N,) each example's own loss (Learning Loss's regression target)."""
        return F.cross_entropy(out.logits.float(), y, reduction="none")

    # ---- acquisition ----
    def class_last(self, probs: torch.Tensor) -> torch.Tensor:
        """Per-position class distributions with the classes last: (N, C) stays; (N, C, *S) -> (N, *S, C)."""
        return probs if probs.dim() == 2 else probs.movedim(1, -1)

    def reduce(self, scores: torch.Tensor) -> torch.Tensor:
        """(N, *S) per-position scores -> (N,) per image: the mean over positions (baal's heuristics' reduction);
        (N,) stays."""
        return scores if scores.dim() == 1 else scores.flatten(1).mean(1)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D, *S) feature maps -> (N, D) per-image vectors (global average pooling); (N, D) stays."""
        return features if features.dim() == 2 else features.flatten(2).mean(2)

    def embeddings(self, model, images, indices, augmenter, batch_size: int = 1024, bf16: bool = True) -> torch.Tensor:
        """(N, D) fp32 per-image features of images[indices] in eval mode: the penultimate features
        (classification), dense feature maps pooled per image (`pool`)."""
        return map_outputs(model, images, indices, augmenter, lambda out: self.pool(out.features.float()), batch_size,
                           bf16)

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C) per-image class distribution: the softmax, averaged over positions for dense outputs (MCDAL
        Sec. 4.2: "the dimension is reduced from (N, C, H, W) to (N, C) by averaging the mask")."""
        p = torch.softmax(logits.float(), dim=1)
        return p if p.dim() == 2 else p.flatten(2).mean(2)

    # ---- evaluation ----
    def evaluate(self, model, images: torch.Tensor, targets: torch.Tensor, augmenter, batch_size: int,
                 bf16: bool) -> dict[str, float]:
        return {"accuracy": accuracy(model, images, targets, None, augmenter, batch_size, bf16)}

    def class_counts(self, targets: torch.Tensor, num_classes: int) -> list[int]:
        """How many selected examples belong to each class (dense: images showing each class)."""
        return torch.bincount(targets, minlength=num_classes).tolist()

    def check_targets(self, targets: torch.Tensor, n: int, num_classes: int, where: str) -> None:
        if targets.dtype != torch.int64 or targets.shape != (n,):
            raise ValueError(f"{where}: classification targets must be int64 of shape ({n},), got "
                             f"{targets.dtype} {tuple(targets.shape)}")


class SegmentationTask(Task):
    """Per-pixel classification: pixel-average cross-entropy ignoring 255; mIoU over the whole test set."""

    name = "segmentation"

    def loss(self, model, out, y):
        return F.cross_entropy(out.logits.float(), y.long(), ignore_index=IGNORE_INDEX)

    def per_example_loss(self, model, out, y):
        """Each image's mean cross-entropy over its labeled pixels (0 for an image with none)."""
        y = y.long()
        ce = F.cross_entropy(out.logits.float(), y, ignore_index=IGNORE_INDEX, reduction="none")
        valid = (y != IGNORE_INDEX).flatten(1)
        return ce.flatten(1).sum(1) / valid.sum(1).clamp_min(1)

    def evaluate(self, model, images, targets, augmenter, batch_size, bf16):
        device = images.device
        meter = SegmentationMeter(model_classes(model, targets), device)
        model.eval()
        with torch.no_grad():
            for chunk in torch.arange(len(images), device=device).split(batch_size):
                x = device_layout(augmenter.eval(images[chunk]), device)
                with autocast(device, bf16):
                    logits = model(x).logits
                meter.update(logits.float(), targets[chunk])
        return {"miou": meter.compute()}

    def class_counts(self, targets, num_classes):
        t = targets.long().flatten(1)
        present = torch.zeros(len(t), num_classes + 1, dtype=torch.bool, device=t.device)
        present.scatter_(1, t.clamp(max=num_classes), True)
        return present[:, :num_classes].sum(0).tolist()

    def check_targets(self, targets, n, num_classes, where):
        if targets.dtype != torch.uint8 or targets.dim() != 3 or len(targets) != n:
            raise ValueError(f"{where}: segmentation targets must be uint8 (N, H, W) masks, got "
                             f"{targets.dtype} {tuple(targets.shape)}")


class DetectionTask(Task):
    """Boxes with classes (SSD300): the detector's own MultiBox loss; VOC07 11-point mAP@0.5 (and the COCO-style
    101-point value beside it). Per-anchor scores reduce by the mean over anchors unless a method says otherwise."""

    name = "detection"

    def loss(self, model, out, y):
        losses = model.loss_from_output(out, y)
        return sum(losses.values())

    def per_example_loss(self, model, out, y):
        return model.per_image_loss_from_output(out, y)

    def class_probs(self, logits):
        """(N, C) per image: the anchors' softmax over the object classes (background column dropped), averaged."""
        p = torch.softmax(logits.float(), dim=-1)[..., 1:]
        return p.mean(1)

    def class_last(self, probs):
        return probs  # already (N, A, C + 1)

    def evaluate(self, model, images, targets, augmenter, batch_size, bf16):
        device = images.device
        meter = DetectionMeter(model.num_classes, device)
        model.eval()
        with torch.no_grad():
            for chunk in torch.arange(len(images), device=device).split(batch_size):
                x = device_layout(augmenter.eval(images[chunk]), device)
                with autocast(device, bf16):
                    detections = model.detect(x)
                meter.update(detections, targets[chunk])
        result = meter.compute()
        return {k: float(result[k]) for k in self.metrics}

    def class_counts(self, targets, num_classes):
        cls = targets[..., 4].long()
        return torch.bincount(cls[cls >= 0], minlength=num_classes).tolist()

    def check_targets(self, targets, n, num_classes, where):
        if targets.dtype != torch.float32 or targets.dim() != 3 or targets.shape[-1] != 6 or len(targets) != n:
            raise ValueError(f"{where}: detection targets must be float32 (N, M, 6) rows [x1, y1, x2, y2, class, "
                             f"difficult], got {targets.dtype} {tuple(targets.shape)}")


def model_classes(model, targets) -> int:
    n = getattr(model, "num_classes", None)
    if n is None:
        raise ValueError("segmentation evaluation needs the model's num_classes")
    return int(n)


_TASKS: dict[str, Task] = {t.name: t for t in (Task(), SegmentationTask(), DetectionTask())}
assert tuple(_TASKS) == TASKS


def get_task(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; allowed: {list(_TASKS)}") from None


def task_of(data: Any) -> Task:
    """The task of an ImageData (its spec's `task`); plain feature data are classification."""
    spec = getattr(data, "spec", None)
    return get_task(spec.task if spec is not None else "classification")
