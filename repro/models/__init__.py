"""Backbones by name. Every model returns ModelOutput(logits, features[, stages])."""

from __future__ import annotations

from repro.models.base import Backbone, ModelOutput, count_parameters, final_linear
from repro.models.lenet import LeNet
from repro.models.resnet import ResNet18, ResNet18ImageNet
from repro.models.vgg import VGG16
from repro.models.wrn import WideResNet28_2

BACKBONES = {"resnet18": ResNet18, "resnet18-imagenet": ResNet18ImageNet, "vgg16": VGG16, "lenet": LeNet,
             "wrn28_2": WideResNet28_2}


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
    if name == "lenet":
        kwargs["image_size"] = tuple(image_size)
    return BACKBONES[name](**kwargs)


__all__ = ["BACKBONES", "Backbone", "ModelOutput", "build_model", "count_parameters", "final_linear"]
