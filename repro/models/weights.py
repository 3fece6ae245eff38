"""Pretrained backbones the dense papers start from, loaded from files the user places under data/weights/ (never
downloaded). Each file is pinned by the SHA-256 prefix its publisher put in its name (the torch.hub naming rule
`<name>-<first 8 hex digits of the sha256>.pth`), checked before loading.

- `drn_d_22`: fyu/drn's ImageNet DRN-D-22 (`drn_d_22-4bd2f8ea.pth`, http://dl.yf.io/drn/), into DRNSeg's body.
- `ssd300`: torchvision's `VGG16_Weights.IMAGENET1K_FEATURES` (`vgg16_features-amdegroot-88682ab5.pth`,
  https://download.pytorch.org/models/; "ported from amdegroot/ssd.pytorch" in torchvision's source), ImageNet
  VGG-16 features: its 13 convolutions into SSD300's conv1_1 .. conv5_3 (fc6 / fc7 and the extras stay freshly
  initialised, as torchvision's `ssd300_vgg16(weights_backbone=...)` builds them) and conv1 frozen
  (torchvision's default of 4 trainable backbone stages with weights). ssd.pytorch itself starts from
  `vgg16_reducedfc.pth`, which also holds the subsampled fc6 / fc7 (Liu et al. Sec. 3); this file has no fc6 /
  fc7, so they are not pretrained here. The prior boxes are ssd.pytorch's VOC ones (repro/models/ssd.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from repro.models.drn import load_pretrained


@dataclass(frozen=True)
class WeightsFile:
    file: str
    sha256_prefix: str
    source: str


PRETRAINED = {
    "drn_d_22": WeightsFile("drn_d_22-4bd2f8ea.pth", "4bd2f8ea", "fyu/drn, http://dl.yf.io/drn/drn_d_22-4bd2f8ea.pth"),
    "ssd300": WeightsFile("vgg16_features-amdegroot-88682ab5.pth", "88682ab5",
                          "torchvision VGG16_Weights.IMAGENET1K_FEATURES, "
                          "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth"),
}


class WeightsError(RuntimeError):
    """A pretrained-weights file is absent or is not the pinned one (one line: the file, the source, the fix)."""


def weights_path(backbone: str, data_dir: Path | str) -> Path:
    if backbone not in PRETRAINED:
        raise WeightsError(f"{backbone} has no pretrained weights here; allowed: {sorted(PRETRAINED)}")
    w = PRETRAINED[backbone]
    path = Path(data_dir) / "weights" / w.file
    if not path.is_file():
        raise WeightsError(f"{path}: missing; place {w.source} there (sha256 {w.sha256_prefix}...), or set the "
                           f"experiment's `pretrained: false`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(w.sha256_prefix):
        raise WeightsError(f"{path}: sha256 {digest[:16]}... is not the pinned {w.sha256_prefix}...; place the "
                           f"file from {w.source}")
    return path


def load_pretrained_backbone(model: nn.Module, backbone: str, data_dir: Path | str) -> nn.Module:
    """Load the pinned ImageNet weights into a freshly built full-width `model` (DRNSeg or SSDNet)."""
    path = weights_path(backbone, data_dir)
    if backbone == "drn_d_22":

        load_pretrained(model, path, PRETRAINED[backbone].sha256_prefix)
        return model
    state = torch.load(path, map_location="cpu", weights_only=True)
    keys = sorted((k for k in state if k.startswith("features.") and k.endswith(".weight")),
                  key=lambda k: int(k.split(".")[1]))
    convs, biases = [state[k] for k in keys], [state[k.replace(".weight", ".bias")] for k in keys]
    ext = model.ssd.backbone
    targets = [m for m in ext.features if isinstance(m, nn.Conv2d)] + \
              [m for m in ext.extra[0] if isinstance(m, nn.Conv2d)][:3]
    if len(convs) != 13 or len(targets) != 13 or any(c.shape != t.weight.shape for c, t in zip(convs, targets)):
        raise WeightsError(f"{path}: not VGG-16's 13 convolutions for SSD300 (a full-width, 300-px ssd300 is needed)")
    with torch.no_grad():
        for w, b, t in zip(convs, biases, targets):
            t.weight.copy_(w)
            t.bias.copy_(b)
    for t in targets[:2]:  # conv1_1, conv1_2: torchvision freezes the first stage when it loads backbone weights
        t.requires_grad_(False)
    return model
