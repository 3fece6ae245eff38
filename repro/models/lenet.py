"""LeNet of DAL's reference code (Keras): Conv(32, 3x3)-ReLU-MaxPool2 -> Conv(64, 3x3)-ReLU-MaxPool2 -> Flatten
-> Dense 128 (the embedding Psi) -ReLU -> Dropout 0.5 -> Dense C. 225,034 parameters for 1x28x28 and 10 classes."""

from __future__ import annotations

import torch
from torch import nn

from repro.models.base import Backbone, classifier_head


class LeNet(Backbone):
    cpu_channels_last = True  # NHWC weights on a CPU too: oneDNN's max-pool and small convolutions ~2x faster
    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0, dropout: float = 0.5,
        image_size: tuple[int, int] = (28, 28),
    ):
        super().__init__()
        c1, c2, hidden = (max(1, int(round(c * width))) for c in (32, 64, 128))
        # max-pool before ReLU: the same function and gradient as ReLU then pool (ReLU is monotone; a window
        # whose max is <= 0 passes no gradient either way), with a quarter of the ReLU work
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True), nn.Flatten(),
        )
        h, w = image_size
        h, w = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
        if h < 1 or w < 1:
            raise ValueError(f"LeNet needs images of at least 10x10, got {image_size}")
        self.embedding = nn.Sequential(nn.Linear(c2 * h * w, hidden), nn.ReLU(inplace=True))
        self.feature_dim = hidden
        self.head = classifier_head(hidden, num_classes, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.trunk(x))
