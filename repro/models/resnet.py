"""CIFAR ResNet-18 of MCDAL's reference (weiaicunzai/pytorch-cifar100): 3x3 stride-1 stem, no max-pool,
stages 64/128/256/512 (x width), strides 1/2/2/2, two BasicBlocks each, 1x1 projection shortcuts,
global average pool, Linear(512, C). 11,173,962 parameters for 10 classes at width 1.

`ResNet18ImageNet` (backbone `resnet18-imagenet`, MAL's ImageNet / iNaturalist task model): the same body
with torchvision's ImageNet stem (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool) for 224 x 224 inputs;
11,689,512 parameters for 1,000 classes at width 1, torchvision's resnet18."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.base import Backbone, ModelOutput, classifier_head


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(Backbone):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.stem = self.make_stem(in_channels, widths[0])
        stages, cin = [], widths[0]
        for cout, stride in zip(widths, (1, 2, 2, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.feature_dim = widths[-1]
        self.head = classifier_head(self.feature_dim, num_classes, dropout)

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        """CIFAR stem: 3x3 stride-1 conv, BN, ReLU (no down-sampling)."""
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        out, outs = self.stem(x), []
        for stage in self.stages:
            out = stage(out)
            outs.append(out)
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1), tuple(outs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x)[0]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features, stages = self._trunk(x)
        return ModelOutput(self.head(features), features, stages)


class ResNet18ImageNet(ResNet18):
    """ResNet-18 with torchvision's ImageNet stem (He et al. 2016, Table 1): 224 x 224 inputs reach the first
    stage at 56 x 56. Same stages, head, width, dropout and ModelOutput (logits, features, stages) as ResNet18."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0):
        super().__init__(num_classes, in_channels, width, dropout)

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        """7x7 stride-2 conv (padding 3), BN, ReLU, 3x3 stride-2 max-pool (padding 1), as torchvision's resnet18."""
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 7, 2, 3, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
