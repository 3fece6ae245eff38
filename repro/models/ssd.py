"""SSD300-VGG16 (Liu et al. 2016) on torchvision's implementation with SSD300's VOC prior boxes, and a reduced
SSD for CPU smoke runs.

`build_ssd(num_classes, width=1.0, size=300)` builds `torchvision.models.detection.ssd300_vgg16(weights=None,
weights_backbone=None, num_classes=num_classes + 1)` (nothing is downloaded) and replaces its anchor generator.
Equal to amdegroot/ssd.pytorch's SSD300 for VOC: the layer layout (VGG16 conv1_1 ..
conv5_3, dilated fc6 / 1x1 fc7, the L2-normalised conv4_3 with a learned per-channel scale starting at 20,
extras conv8 .. conv11), 4/6/6/6/4/4 boxes per location, the parameter count (26,285,486 for VOC's 20 classes +
background) and the prior boxes: ssd.pytorch's `voc` config (data/config.py: min_sizes 30, 60, 111, 162, 213,
264, max_sizes 60 .. 315, steps 8, 16, 32, 64, 100, 300, clip) as `VOC_SCALES` (min_k / 300 and 315 / 300; the
extra square box sqrt(s_k s_k+1) = sqrt(min_k max_k) / 300), 8,732 of them, checked box by box against
ssd.pytorch's `PriorBox` formula in tests/test_ssd_anchors.py. torchvision's own: the initialisation (VGG convs
Kaiming-normal (fan_out), fc6 / fc7, extras and heads Xavier-uniform with zero bias), the matcher, box coder,
loss and post-processing that `SSDNet` calls. torchvision's stock `ssd300_vgg16` anchors are COCO's (scales
0.07 .. 1.05) and clip only the widths / heights; `PriorBoxGenerator` clips centres too, as `PriorBox` does.

Any other width or size builds the reduced SSD from torchvision's `SSD` and `SSDHead` around `ScaledVGGExtractor`:
the same VGG16-SSD layout with every channel count x width, fc6's dilation scaled with the input (6 at 300, 2 at
96, 1 at 64), and the four extra blocks' 3x3 convs at stride 2 (padding 1) for the first two and, for the last
two, stride 1 without padding while the map is >= 3 (SSD300's 5 -> 3 -> 1) else stride 2 padding 1 (-> 1). Six
feature maps: 96 -> 12, 6, 3, 2, 1, 1; 64 -> 8, 4, 2, 1, 1, 1 (300 -> SSD300's 38, 19, 10, 5, 3, 1). Prior
boxes: the same VOC scales and aspect ratios, centred on each map's own grid (SSD300's steps are tied to 300).

`SSDNet` bypasses torchvision's GeneralizedRCNNTransform: inputs are already-normalised (N, 3, S, S) batches
(SSD_MEAN / SSD_STD in repro/spec/datasets.py is that transform's normalisation), targets are already in input
pixels, and the backbone, head, anchors, matcher, loss and post-processing are called directly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

SSD300_VOC_PARAMS = 26_285_486  # torchvision ssd300_vgg16, 21 classes == ssd.pytorch's SSD300 VOC count
ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
VOC_SCALES = [0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05]  # ssd.pytorch voc: min_sizes 30 .. 264, then 315; / 300
VOC_STEPS = [8, 16, 32, 64, 100, 300]  # SSD300's pixels per cell of each map
VGG_CONV4 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512))  # conv1_1 .. conv4_3, a max-pool after each
# but the last; the third pool rounds up (ceil_mode), as torchvision patches for SSD300's 38 x 38 conv4_3
VGG_CONV5, FC, EXTRAS = (512, 512, 512), 1024, ((256, 512), (128, 256), (128, 256), (128, 256))
MIN_SIZE = 32


class DetectionOutput(NamedTuple):
    cls_logits: torch.Tensor  # (N, A, C + 1) per-anchor class logits, background first
    bbox_regression: torch.Tensor  # (N, A, 4) box offsets encoded against the anchors (weights 10, 10, 5, 5)
    features: torch.Tensor  # (N, D) global average of the first (highest-resolution) feature map
    feature_maps: tuple[torch.Tensor, ...]  # the backbone's 6 maps (what a loss-prediction module reads)
    anchors: list[torch.Tensor]  # per image (A, 4) x1, y1, x2, y2 in input pixels

    @property
    def logits(self) -> torch.Tensor:
        """`cls_logits` under ModelOutput's name (the task code reads `out.logits`)."""
        return self.cls_logits

    @property
    def stages(self) -> tuple[torch.Tensor, ...]:
        """`feature_maps` under ModelOutput's name."""
        return self.feature_maps


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class ScaledVGGExtractor(nn.Module):
    """torchvision's SSDFeatureExtractorVGG with channels x width and extras sized for a `size` x `size` input
    (layout in the module docstring). Returns an OrderedDict of 6 maps; the first is conv4_3, L2-normalised and
    rescaled by a learned per-channel weight (initially 20)."""

    def __init__(self, width: float = 1.0, size: int = 300, in_channels: int = 3):
        super().__init__()
        if size < MIN_SIZE:
            raise ValueError(f"the reduced SSD needs inputs of at least {MIN_SIZE} x {MIN_SIZE}, got {size}")

        def c(n: int) -> int:
            return max(1, int(round(n * width)))

        layers: list[nn.Module] = []
        cin = in_channels
        for i, block in enumerate(VGG_CONV4):
            if i:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=i == 3))
            for n in block:
                layers += [nn.Conv2d(cin, c(n), 3, padding=1), nn.ReLU(inplace=True)]
                cin = c(n)
        self.features = nn.Sequential(*layers)  # up to conv4_3 + ReLU
        self.scale_weight = nn.Parameter(torch.full((cin,), 20.0))
        out_channels = [cin]
        conv5: list[nn.Module] = [nn.MaxPool2d(2, 2)]
        for n in VGG_CONV5:
            conv5 += [nn.Conv2d(cin, c(n), 3, padding=1), nn.ReLU(inplace=True)]
            cin = c(n)
        for m in [*layers, *conv5]:  # torchvision VGG's own init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        d = max(1, round(6 * size / 300))  # fc6's atrous rate, 6 at SSD300
        fc = nn.Sequential(
            nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, c(FC), 3, padding=d, dilation=d), nn.ReLU(inplace=True),
            nn.Conv2d(c(FC), c(FC), 1), nn.ReLU(inplace=True),
        )
        _xavier(fc)
        blocks: list[nn.Module] = [nn.Sequential(*conv5, fc)]
        cin, hw = c(FC), self._fc7_size(size)
        out_channels.append(cin)
        for i, (mid, cout) in enumerate(EXTRAS):
            stride, pad = (1, 0) if i >= 2 and hw >= 3 else (2, 1)
            block = nn.Sequential(nn.Conv2d(cin, c(mid), 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(c(mid), c(cout), 3, stride, pad), nn.ReLU(inplace=True))
            _xavier(block)
            blocks.append(block)
            cin, hw = c(cout), (hw + 2 * pad - 3) // stride + 1
            out_channels.append(cin)
        self.extra = nn.ModuleList(blocks)
        self.out_channels = out_channels

    @staticmethod
    def _fc7_size(size: int) -> int:
        s = size // 2 // 2  # pools 1, 2
        s = math.ceil(s / 2)  # pool 3 (ceil_mode)
        return s // 2  # pool 4

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.features(x)
        out = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]
        for block in self.extra:
            x = block(x)
            out.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(out))


class PriorBoxGenerator(DefaultBoxGenerator):
    """torchvision's DefaultBoxGenerator (per location: s_k, sqrt(s_k s_k+1), then (s_k sqrt(ar), s_k / sqrt(ar))
    and its transpose per aspect ratio; centres (j + 0.5) * step / S) with ssd.pytorch's clipping: the whole
    (cx, cy, w, h) into [0, 1], not only w, h. It differs at SSD300's 10 x 10 map, whose step 32 puts the last
    row / column of centres at 304 px; ssd.pytorch's `PriorBox` clips them to 300."""

    def _grid_default_boxes(self, grid_sizes, image_size, dtype=torch.float32) -> torch.Tensor:
        boxes = super()._grid_default_boxes(grid_sizes, image_size, dtype=dtype)
        return boxes.clamp(0, 1) if self.clip else boxes


def build_ssd(num_classes: int = 20, width: float = 1.0, size: int = 300) -> SSDNet:
    """SSD for `num_classes` object classes (background excluded). Width 1, size 300: torchvision's SSD300-VGG16
    with ssd.pytorch's VOC prior boxes; otherwise the reduced SSD (module docstring)."""
    if width == 1.0 and size == 300:
        ssd = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)
        ssd.anchor_generator = PriorBoxGenerator(ASPECT_RATIOS, scales=VOC_SCALES, steps=VOC_STEPS)
    else:
        backbone = ScaledVGGExtractor(width, size)
        ssd = SSD(backbone, PriorBoxGenerator(ASPECT_RATIOS, scales=VOC_SCALES), (size, size), num_classes + 1)
    return SSDNet(ssd, num_classes, size)


class SSDNet(nn.Module):
    """A torchvision `SSD` driven directly on normalised (N, 3, S, S) batches (module docstring).

    Targets: float (N, M, 6) rows [x1, y1, x2, y2, class 0..C-1, difficult 0/1] in input pixels, padded with
    rows of -1. Training drops padding rows, boxes marked difficult (amdegroot's VOC loader, keep_difficult=False;
    VOC07 mAP ignores them too) and zero-area boxes; labels shift by +1 (0 is the background). Matching, box
    encoding, Smooth-L1 + hard-negative-mined (3:1) cross-entropy are torchvision's. An image without boxes has no
    positives and so no mined negatives: its loss is 0 (as in torchvision and amdegroot)."""

    def __init__(self, ssd: SSD, num_classes: int, size: int):
        super().__init__()
        self.ssd = ssd
        self.num_classes = num_classes
        self.size = size
        self.feature_dim = ssd.head.classification_head.module_list[0].in_channels
        self._anchor_cache: dict[tuple, torch.Tensor] = {}

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"this SSD takes (N, C, {self.size}, {self.size}) batches, got {tuple(x.shape)}")

    def _anchors(self, x: torch.Tensor, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Default boxes in fp32 (also under autocast), computed once per grid layout and device."""
        key = (tuple(tuple(m.shape[-2:]) for m in maps), x.device)
        if key not in self._anchor_cache:
            probes = [torch.empty((0, 0, *m.shape[-2:]), device=x.device) for m in maps]  # shapes / dtype only
            images = ImageList(torch.empty((0, 0, *x.shape[-2:]), device=x.device), [tuple(x.shape[-2:])])
            self._anchor_cache[key] = self.ssd.anchor_generator(images, probes)[0]
        return [self._anchor_cache[key]] * len(x)

    def forward(self, x: torch.Tensor) -> DetectionOutput:
        self._check(x)
        maps = list(self.ssd.backbone(x).values())
        head = self.ssd.head(maps)
        return DetectionOutput(head["cls_logits"], head["bbox_regression"], maps[0].mean((2, 3)), tuple(maps),
                               self._anchors(x, maps))

    # ---- training ----
    @staticmethod
    def target_list(targets: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Padded (N, M, 6) rows -> torchvision's [{boxes (K, 4) float, labels (K,) int64 1..C}] (see class doc)."""
        out = []
        for rows in targets.float():
            keep = (rows[:, 4] >= 0) & (rows[:, 5] < 0.5) & (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1])
            out.append({"boxes": rows[keep, :4], "labels": rows[keep, 4].long() + 1})
        return out

    def match(self, out: DetectionOutput, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, A) anchor classes (0 background, 1..C) and (N, A, 4) encoded box targets: torchvision's matcher
        (IoU 0.5, every box's best anchor kept) against the training boxes of `target_list`."""
        n, a = out.cls_logits.shape[:2]
        cls_t = torch.zeros((n, a), dtype=torch.int64, device=out.cls_logits.device)
        reg_t = torch.zeros((n, a, 4), dtype=torch.float32, device=out.cls_logits.device)
        for i, t in enumerate(self.target_list(targets)):
            if not len(t["boxes"]):
                continue
            anchors = out.anchors[i]
            matched = self.ssd.proposal_matcher(box_iou(t["boxes"], anchors))
            fg = torch.where(matched >= 0)[0]
            cls_t[i, fg] = t["labels"][matched[fg]]
            reg_t[i, fg] = self.ssd.box_coder.encode_single(t["boxes"][matched[fg]], anchors[fg])
        return cls_t, reg_t

    def map_channels(self) -> list[int]:
        """Channels of the backbone's feature maps (what a head over them takes)."""
        return [m.in_channels for m in self.ssd.head.classification_head.module_list]

    def anchors_per_location(self) -> list[int]:
        return self.ssd.anchor_generator.num_anchors_per_location()

    def _loss_terms(self, out: DetectionOutput, targets: torch.Tensor):
        """Per image (box Smooth-L1 sum, mined classification CE sum, positive count), as torchvision's
        `SSD.compute_loss` computes them before normalising by the batch's positives. One corner differs: where
        3 x positives exceed an image's negatives, torchvision's mining mask also takes positives and counts their
        cross-entropy twice; here every anchor counts once."""
        cls_logits, reg = out.cls_logits.float(), out.bbox_regression.float()
        n, a, k = cls_logits.shape
        cls_t, reg_t = self.match(out, targets)
        pos = cls_t > 0
        box = torch.where(pos, F.smooth_l1_loss(reg, reg_t, reduction="none").sum(-1), 0.0).sum(1)
        ce = F.cross_entropy(cls_logits.reshape(-1, k), cls_t.reshape(-1), reduction="none").view(n, a)
        num_pos = pos.sum(1)
        neg = ce.detach().masked_fill(pos, -float("inf"))  # hard negatives: the top 3 x num_pos losses
        rank = neg.sort(1, descending=True)[1].sort(1)[1]
        mined = rank < self.ssd.neg_to_pos_ratio * num_pos[:, None]
        return box, torch.where(pos | mined, ce, 0.0).sum(1), num_pos

    def loss_from_output(self, out: DetectionOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """torchvision's SSD losses of a batch: each summed over the batch / the batch's positives (min 1)."""
        box, cls, num_pos = self._loss_terms(out, targets)
        norm = num_pos.sum().clamp_min(1)
        return {"bbox_regression": box.sum() / norm, "classification": cls.sum() / norm}

    def per_image_loss_from_output(self, out: DetectionOutput, targets: torch.Tensor) -> torch.Tensor:
        """(N,) each image's own SSD loss: (box + classification) / its own positives (min 1); LL4AL's target."""
        box, cls, num_pos = self._loss_terms(out, targets)
        return (box + cls) / num_pos.clamp_min(1)

    def losses(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss_from_output(self(x), targets)

    def per_image_losses(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.per_image_loss_from_output(self(x), targets)

    # ---- inference ----
    def detections_from_output(self, out: DetectionOutput, score_thresh: float = 0.01, nms_thresh: float = 0.45,
                               detections_per_img: int = 200) -> list[dict[str, torch.Tensor]]:
        """torchvision's post-processing (softmax, per-class score threshold, top-400, class-wise NMS, top
        `detections_per_img`); labels 0..C-1, boxes in input pixels."""
        ssd, saved = self.ssd, (self.ssd.score_thresh, self.ssd.nms_thresh, self.ssd.detections_per_img)
        ssd.score_thresh, ssd.nms_thresh, ssd.detections_per_img = score_thresh, nms_thresh, detections_per_img
        try:
            head = {"cls_logits": out.cls_logits.float(), "bbox_regression": out.bbox_regression.float()}
            dets = ssd.postprocess_detections(head, out.anchors, [(self.size, self.size)] * len(out.cls_logits))
        finally:
            ssd.score_thresh, ssd.nms_thresh, ssd.detections_per_img = saved
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1} for d in dets]

    def detect(self, x: torch.Tensor, score_thresh: float = 0.01, nms_thresh: float = 0.45,
               detections_per_img: int = 200) -> list[dict[str, torch.Tensor]]:
        return self.detections_from_output(self(x), score_thresh, nms_thresh, detections_per_img)
