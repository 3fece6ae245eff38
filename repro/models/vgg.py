"""VGG-16 with batch norm, CIFAR layout: 13 conv3x3-BN-ReLU layers in 5 blocks (64, 128, 256, 512, 512, x width)
with 2x2 max-pools, global average pool to a 512-d feature, Linear(512, C). 14,728,266 parameters for 10 classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.base import Backbone, classifier_head

CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(Backbone):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in CFG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                cout = max(1, int(round(v * width)))
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.feature_dim = cin
        self.head = classifier_head(cin, num_classes, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
