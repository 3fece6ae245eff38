"""VAAL's and SRAAL's networks: the convolutional VAE for 32x32 images, its MLP twin on task-model features
(DAAL's "VAAL + TF"), SRAAL's split-latent VAE with its label classifier, and the latent discriminators.

Shapes and layer counts follow the reference implementations (sinhasam/vaal@67263f3 model.py; Beichen1996/SRAAL@274539c); `width`
scales every convolution's channel count (1 = the papers' networks; smaller only for tests and smoke runs).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 32  # the VAAL VAE is built for 32x32 inputs; other sizes are resized to it (VAAL issues #5, #21)
CHANNELS = (128, 256, 512, 1024)  # VAAL encoder widths; the decoder mirrors them


class VAEOutput(NamedTuple):
    recon: torch.Tensor  # the decoder's reconstruction, the target's shape
    z: torch.Tensor  # the sampled latent mu + eps * exp(logvar / 2)
    mu: torch.Tensor
    logvar: torch.Tensor
    target: torch.Tensor  # what `recon` reconstructs: the input, resized to 32x32 for images
    logits: torch.Tensor | None = None  # SRAAL's label classifier (STI) on the second latent half


def reference_init_(seq: nn.Module) -> None:
    """The VAAL/SRAAL codes' `weight_init` as it behaves: kaiming-normal weights and zero biases for the
    Linear/Conv2d layers inside the Sequential blocks (ConvTranspose2d and fc_mu/fc_logvar keep PyTorch's
    default initialisation), BatchNorm weight 1 and bias 0."""
    for m in seq.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def scaled(width: float) -> tuple[int, ...]:
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return tuple(max(1, round(c * width)) for c in CHANNELS)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, I) (the reparameterisation trick; sampled in every mode, as
    the reference codes do)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def resize_to(x: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Bilinear resize of an image batch to size x size (antialiased when shrinking); unchanged if it fits."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = x.shape[-2] > size or x.shape[-1] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def conv_encoder(channels: int, width: float = 1.0) -> nn.Sequential:
    """Four Conv(k4, s2, p1, no bias)-BN-ReLU blocks, 32 -> 2 pixels, flattened (4096 values at width 1)."""
    layers, c_in = [], channels
    for c in scaled(width):
        layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten())


class Unflatten(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


def conv_decoder(latent: int, channels: int, width: float = 1.0) -> nn.Sequential:
    """Linear(latent, 1024*4*4) -> (1024, 4, 4) -> three ConvT(k4, s2, p1, no bias)-BN-ReLU blocks, 4 -> 32
    pixels -> ConvT(128 -> channels, k1, with bias); no output activation."""
    widths = scaled(width)[::-1]
    layers: list[nn.Module] = [nn.Linear(latent, widths[0] * 4 * 4), Unflatten((widths[0], 4, 4))]
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
    return nn.Sequential(*layers, nn.ConvTranspose2d(widths[-1], channels, 1))


class ConvVAE(nn.Module):
    """VAAL's VAE (Sinha et al. 2019, Sec. 3; `VAE(z_dim=32, nc=3)` of the reference): 22,835,139 parameters
    for z = 32 and 3 channels. Inputs of another size are resized to 32x32 first (VAAL issues #5, #21:
    the VAE only supports 32x32); the reconstruction target is the resized input."""

    def __init__(self, channels: int = 3, latent_dim: int = 32, width: float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = conv_encoder(channels, width)
        flat = scaled(width)[-1] * 2 * 2
        self.fc_mu, self.fc_logvar = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.decoder = conv_decoder(self.decoder_latent(), channels, width)
        reference_init_(self.encoder)
        reference_init_(self.decoder)

    def decoder_latent(self) -> int:
        return self.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the resized input."""
        h = self.encoder(resize_to(x))
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        target = resize_to(x)
        h = self.encoder(target)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = reparameterize(mu, logvar)
        return VAEOutput(self.decoder(z), z, mu, logvar, target)


class SplitLatentVAE(ConvVAE):
    """SRAAL's unified representation generator (Zhang et al. 2020; official `VAE(z_dim, nc,
    num_classes)`): VAAL's encoder; the sampled latent is split in halves, the first decoded into the image
    (unsupervised image reconstructor, UIR: VAAL's decoder from z/2), the second classified (supervised
    target learner, STI: Linear(z/2, 1024)-ReLU-Linear(1024, 256)-ReLU-Linear(256, C)).
    The official decoder lacks the ReLU after its first BatchNorm; we keep VAAL's block (same parameters)."""

    def __init__(self, channels: int = 3, latent_dim: int = 32, num_classes: int = 10, width: float = 1.0):
        if latent_dim % 2:
            raise ValueError(f"SRAAL splits the latent in halves: latent_dim must be even, got {latent_dim}")
        super().__init__(channels, latent_dim, width)
        self.classifier = nn.Sequential(nn.Linear(latent_dim // 2, 1024), nn.ReLU(True), nn.Linear(1024, 256),
                                        nn.ReLU(True), nn.Linear(256, num_classes))
        reference_init_(self.classifier)

    def decoder_latent(self) -> int:
        return self.latent_dim // 2

    def forward(self, x: torch.Tensor) -> VAEOutput:
        target = resize_to(x)
        h = self.encoder(target)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = reparameterize(mu, logvar)
        image_half, label_half = z.split(self.latent_dim // 2, dim=1)
        return VAEOutput(self.decoder(image_half), z, mu, logvar, target, self.classifier(label_half))


class FeatureVAE(nn.Module):
    """VAAL's VAE on the task model's penultimate features instead of images (DAAL Fig. 4 "VAAL + TF"; DAAL
    names no architecture for it). Our reading: VAAL's blocks as an MLP, Linear-LayerNorm-ReLU x 2 (hidden 512)
    to mu/logvar, and the mirror Linear-LayerNorm-ReLU x 2 then Linear back to the feature width, no output
    activation (LayerNorm, not BatchNorm: a last labeled batch of one example must train too)."""

    def __init__(self, feature_dim: int, latent_dim: int = 32, width: float = 1.0, hidden: int = 512):
        super().__init__()
        h = max(1, round(hidden * width))
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(feature_dim, h), nn.LayerNorm(h), nn.ReLU(True),
                                     nn.Linear(h, h), nn.LayerNorm(h), nn.ReLU(True))
        self.fc_mu, self.fc_logvar = nn.Linear(h, latent_dim), nn.Linear(h, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, h), nn.LayerNorm(h), nn.ReLU(True),
                                     nn.Linear(h, h), nn.LayerNorm(h), nn.ReLU(True),
                                     nn.Linear(h, feature_dim))
        reference_init_(self.encoder)
        reference_init_(self.decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return VAEOutput(self.decoder(z), z, mu, logvar, x)


class LatentDiscriminator(nn.Module):
    """Labeled/unlabeled (state) discriminator on the latent mu: Linear(z, 512)-ReLU, `hidden_layers` x
    [Linear(512, 512)-ReLU], Linear(512, 1)-Sigmoid. VAAL: 1 hidden layer (280,065 parameters at z = 32);
    SRAAL: 3 (805,377 at z = 32). `logits` gives the pre-sigmoid value for numerically stable BCE."""

    def __init__(self, latent_dim: int = 32, hidden_layers: int = 1, hidden: int = 512):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(latent_dim, hidden), nn.ReLU(True)]
        for _ in range(hidden_layers):
            layers += [nn.Linear(hidden, hidden), nn.ReLU(True)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, 1))
        self.out = nn.Sigmoid()
        reference_init_(self.net)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """(N,) pre-sigmoid outputs."""
        return self.net(z).squeeze(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N,) probabilities in (0, 1)."""
        return self.out(self.logits(z))
