"""Backbones by name. Every model returns ModelOutput(logits, features[, stages])."""

from __future__ import annotations

from torch import nn

from repro.models.base import Backbone, ModelOutput, count_parameters, final_linear
from repro.models.drn import DRNSeg
from repro.models.lenet import LeNet
from repro.models.resnet import ResNet18, ResNet18ImageNet
from repro.models.vgg import VGG16
from repro.models.weights import load_pretrained_backbone
from repro.models.wrn import WideResNet28_2


def _ssd300(num_classes: int, in_channels: int, width: float, image_size: tuple[int, int], dropout=None):
    if in_channels != 3 or image_size[0] != image_size[1]:
        raise ValueError(f"ssd300 takes square RGB images, got {in_channels} x {image_size}")
    if dropout is not None:
        raise ValueError("ssd300 has no dropout option")
    from repro.models.ssd import (
        build_ssd,  # torchvision's detection package takes ~2 s to import: only when used
    )

    return build_ssd(num_classes, width, image_size[0])


# segmentation: DRNSeg (logits (N, C, H, W)); detection: torchvision's SSD300 (repro.models.ssd)
BACKBONES = {"resnet18": ResNet18, "resnet18-imagenet": ResNet18ImageNet, "vgg16": VGG16, "lenet": LeNet,
             "wrn28_2": WideResNet28_2, "drn_d_22": DRNSeg, "ssd300": _ssd300}


def build_model(
    name: str, num_classes: int, in_channels: int, image_size: tuple[int, int], width: float = 1.0,
    dropout: float | None = None,
) -> Backbone:
    """A freshly initialised backbone (initialisation follows the global torch seed)."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; allowed: {sorted(BACKBONES)}")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels, "width": width}
    if dropout is not None:
        kwargs["dropout"] = dropout
    if name in ("lenet", "ssd300"):
        kwargs["image_size"] = tuple(image_size)
    model = BACKBONES[name](**kwargs)
    model.build_args = (name, num_classes, in_channels, tuple(image_size), width, dropout)
    return model


def rebuild_model(model: nn.Module) -> nn.Module:
    """A fresh model of the same architecture as one `build_model` built (initialised from the global torch
    seed), e.g. a committee member; a method's `adapt_model` changes are not repeated. Where the model's backbone
    was loaded from pinned weights (`pretrained_from`, set by `loop.build_task_model`), so is the new one's: only
    what the file leaves out (e.g. DRNSeg's head) is freshly drawn."""
    args = getattr(model, "build_args", None)
    if args is None:
        raise ValueError("rebuild_model: the model was not built by build_model")
    new = build_model(*args)
    pretrained = getattr(model, "pretrained_from", None)
    if pretrained is not None:

        backbone, data_dir = pretrained
        load_pretrained_backbone(new, backbone, data_dir)
        new.pretrained_from = pretrained
    return new


__all__ = ["BACKBONES", "Backbone", "ModelOutput", "build_model", "count_parameters", "final_linear", "rebuild_model"]
