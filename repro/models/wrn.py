"""WRN-28-2 (Zagoruyko & Komodakis 2016), DAAL's CIFAR task model: pre-activation wide ResNet, depth 28
(4 blocks per group), widen factor 2: a 3x3 stem of 16 channels, groups of 32/64/128 channels (x width) with
strides 1/2/2, convolutions without bias, 1x1 projection shortcuts where the shape changes, a final BN + ReLU,
global average pool, Linear(128, C). 1,467,610 parameters for 10 classes, 1,479,220 for 100 (tests/test_models.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.base import Backbone, classifier_head

DEPTH, WIDEN = 28, 2


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3; a projecting shortcut reads the pre-activated input (as in WRN)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return out + (x if self.shortcut is None else self.shortcut(o))


class WideResNet28_2(Backbone):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        blocks_per_group = (DEPTH - 4) // 6
        stem, *groups = [max(1, int(round(c * width))) for c in (16, 16 * WIDEN, 32 * WIDEN, 64 * WIDEN)]
        self.stem = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        layers, cin = [], stem
        for cout, stride in zip(groups, (1, 2, 2)):
            for i in range(blocks_per_group):
                layers.append(PreActBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.feature_dim = cin
        self.head = classifier_head(cin, num_classes, dropout)
        for m in self.modules():  # WRN's initialisation: He-normal convolutions, zero linear bias
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
