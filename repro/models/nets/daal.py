"""DAAL's networks (Wang et al., Sec. 3.1) on the task model's penultimate features.

- ScoreNet (image selector): a 5-layer MLP with Xavier initialisation, feature -> score s_u in (0, 1).
- FeatureVAE: 7-layer MLP encoder (feature -> mean and log-variance) and 7-layer MLP decoder (latent ->
  feature); dropout 0.4 "at the end of each MLP layer" (here after every hidden layer, not on the outputs).
- Discriminator (uDis, rDis): the ScoreNet's architecture without dropout; its last hidden layer is the
  feature space of the reconstruction loss (Eq. 3).
- FeatureStandardiser: the features every DAAL network (and the DPP kernel) sees, standardised per dimension
  with the pool's mean and std; the paper gives no scale, and on raw post-ReLU features the encoder's
  log-variance under dropout 0.4 overflows exp() within a few steps (`standardise: false` feeds raw features).
Widths the paper does not state: every hidden layer `hidden` wide (512 by default, VAAL's discriminator
width) and a `latent`-dimensional code (32 by default, VAAL's z); ReLU activations; Xavier init everywhere.
Alg. 1's losses and step on these networks: repro/al/losses/daal_alg1.py.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers sizes[0] -> ... -> sizes[-1], ReLU (+ dropout) after each hidden layer, Xavier init."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class FeatureStandardiser(nn.Module):
    """(x - mean) / std per feature dimension; the statistics are buffers (saved with the state, no gradient)."""

    def __init__(self, in_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, x: torch.Tensor, momentum: float | None = None) -> None:
        """Set the statistics to x's (momentum None), or move them by `momentum` towards x's (the first call
        sets them); no host sync."""
        x = x.float()
        m, s = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
        if momentum is not None:
            first = self.seen == 0
            m = torch.where(first, m, torch.lerp(self.mean, m, momentum))
            s = torch.where(first, s, torch.lerp(self.std, s, momentum))
        self.mean.copy_(m)
        self.std.copy_(s)
        self.seen += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class ScoreNet(nn.Module):
    """The image selector: 5 linear layers, feature_dim -> hidden x4 -> 1; forward gives s_u in (0, 1), (N,)."""

    def __init__(self, in_features: int, hidden: int = 512, dropout: float = 0.4):
        super().__init__()
        self.net = mlp([in_features] + [hidden] * 4 + [1], dropout)

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(x).float())


class Discriminator(nn.Module):
    """uDis / rDis: the ScoreNet's 5 linear layers without dropout; `hidden_and_logit` gives the last hidden
    layer (phi of Eq. 3) and the logit; forward gives the probability D(x) in (0, 1), (N,)."""

    def __init__(self, in_features: int, hidden: int = 512):
        super().__init__()
        body = mlp([in_features] + [hidden] * 4 + [1])
        self.body, self.out = body[:-1], body[-1]

    def hidden_and_logit(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.out(h).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.hidden_and_logit(x)[1].float())


class FeatureVAE(nn.Module):
    """7-layer MLP encoder (feature -> 2 x latent: mean, log-variance) and 7-layer MLP decoder."""

    def __init__(self, in_features: int, hidden: int = 512, latent: int = 32, dropout: float = 0.4):
        super().__init__()
        self.latent = latent
        self.encoder = mlp([in_features] + [hidden] * 6 + [2 * latent], dropout)
        self.decoder = mlp([latent] + [hidden] * 6 + [in_features], dropout)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).float().chunk(2, dim=-1)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mu, logvar); the code is sampled by the reparameterisation trick."""
        mu, logvar = self.encode(x)
        e = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(e), mu, logvar
