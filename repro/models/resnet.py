"""CIFAR ResNet-18 of MCDAL's reference (weiaicunzai/pytorch-cifar100): 3x3 stride-1 stem, no max-pool,
stages 64/128/256/512 (x width), strides 1/2/2/2, two BasicBlocks each, 1x1 projection shortcuts,
global average pool, Linear(512, C). 11,173,962 parameters for 10 classes at width 1."""

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
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, cin = [], widths[0]
        for cout, stride in zip(widths, (1, 2, 2, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.feature_dim = widths[-1]
        self.head = classifier_head(self.feature_dim, num_classes, dropout)

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
