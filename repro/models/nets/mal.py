"""MAL's networks (Ebrahimi et al., "Minimax Active Learning"): the encoder F (the task model's trunk), the
cosine-similarity classifier C (Eq. 1), the labeledness discriminator D (Eq. 3), and the supplementary's
parameter-count configurations (Sec. B: ResNet18 and VGG16-BN on CIFAR-100; MME's modules,
VisionLearningGroup/SSDA_MME@ee04ddd model/basenet.py, reproduce those counts).

C follows MME's Predictor_deep (Saito et al. 2019, which MAL builds on) on l2-normalised features (MAL:
"features are normalized"): l2-normalise -> Linear(d, h) -> l2-normalise -> Linear(h, K, bias=False) / T; the paper's counts give h = 256 for d = 512 (ResNet18: 156,928) and h = 512 for
d = 25088 (VGG16: 12,896,768), i.e. h = min(512, d // 2). `hidden=0` is Eq. 1 taken literally: one W (d x K).
D is MME's Discriminator with ReLUs (Sec. 4.1: "a 3-layer MLP with ReLU"): d -> 512 -> 512 -> 1.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.base import Backbone

DISCRIMINATOR_WIDTH = 512  # MAL supp. Table 2's D: 525,825 (d = 512) and 13,108,737 (d = 25088)


def classifier_hidden(feature_dim: int) -> int:
    """C's hidden width that reproduces the supplementary's counts: 256 for d = 512, 512 for d = 25088."""
    return max(1, min(512, feature_dim // 2))



class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Gradient reversal layer (Ganin & Lempitsky 2015; MAL Sec. 3.1, "the sign of gradients for entropy loss
    on unlabeled samples is flipped by a gradient reversal layer"): identity forward, -coeff * grad backward."""
    return _GradReverse.apply(x, float(coeff))


def cosine_logits(features: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """(1/T) W^T f / ||f|| (MAL Eq. 1, inside the softmax): (N, d) features, (K, d) prototypes -> (N, K).

    Only the features are l2-normalised (Eq. 1 leaves W as is), so the logits are invariant to a positive
    scaling of each feature vector; a zero feature gives zero logits."""
    return F.normalize(features.float(), dim=-1) @ prototypes.float().t() / temperature

class Encoder(Backbone):
    """F: a copy of the task model's trunk (its head replaced by the identity), so `Backbone.forward` gives
    (features, features) and `repro.core.train.predict` reads its features."""

    def __init__(self, task_model: Backbone):
        super().__init__()
        body = copy.deepcopy(task_model)
        body.head = nn.Identity()
        self.body, self.feature_dim, self.head = body, task_model.feature_dim, nn.Identity()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.embed(x)


def load_trunk(task_model: Backbone, encoder: Encoder) -> None:
    """Alg. 3 line 1, "Initialize M with pre-trained F backbone": copy F's weights (and BN statistics) into
    the task model's trunk; the task model's head is left as it is."""
    result = task_model.load_state_dict(encoder.body.state_dict(), strict=False)
    stray = [k for k in result.missing_keys if not k.startswith("head.")]
    if stray or result.unexpected_keys:
        raise RuntimeError(f"MAL encoder and task trunk differ: missing {stray}, unexpected {result.unexpected_keys}")


class CosineClassifier(nn.Module):
    """C (MAL Eq. 1): l2-normalise F's features, [Linear(d, h)], then cosine logits against K prototypes at
    temperature T. `reverse` (the GRL coefficient) flips the gradient that reaches F (Eq. 2); with
    `reverse_at="hidden"` the flip sits after the hidden layer instead (MME's Predictor_deep: only the
    prototypes then play against F)."""

    def __init__(self, feature_dim: int, num_classes: int, hidden: int | None = None, temperature: float = 0.05,
                 reverse_at: str = "input"):
        super().__init__()
        hidden = classifier_hidden(feature_dim) if hidden is None else hidden
        self.hidden = nn.Linear(feature_dim, hidden) if hidden > 0 else None
        self.prototypes = nn.Linear(hidden if hidden > 0 else feature_dim, num_classes, bias=False)
        if reverse_at not in ("input", "hidden"):
            raise ValueError(f"reverse_at {reverse_at!r}: expected input or hidden")
        self.temperature, self.reverse_at = temperature, reverse_at

    def forward(self, features: torch.Tensor, reverse: float | None = None) -> torch.Tensor:
        h = features.float()
        if reverse is not None and (self.reverse_at == "input" or self.hidden is None):
            h = grad_reverse(h, reverse)
        if self.hidden is not None:
            h = self.hidden(F.normalize(h, dim=-1))
            if reverse is not None and self.reverse_at == "hidden":
                h = grad_reverse(h, reverse)
        return cosine_logits(h, self.prototypes.weight, self.temperature)


class Discriminator(nn.Module):
    """D (MAL Eq. 3, Sec. 4.1): a 3-layer MLP with ReLUs on F's l2-normalised features; forward gives the
    logit of "labeled", `labeledness` its probability. Eq. 3 as printed omits D and divides by T: read as
    D(F(x) / ||F(x)||), the normalised features Fig. 2 feeds to both heads."""

    def __init__(self, feature_dim: int, width: int = DISCRIMINATOR_WIDTH):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, width), nn.ReLU(inplace=True), nn.Linear(width, width),
                                 nn.ReLU(inplace=True), nn.Linear(width, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(F.normalize(features.float(), dim=-1)).squeeze(-1)

    def labeledness(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(features))


# --- segmentation (MAL Sec. 3.2 / 4.2) ----------------------------------------------------------------------


def positions_first(logits: torch.Tensor, labels: torch.Tensor | None = None):
    """Dense (N, K, H, W) logits as (N*H*W, K) rows (with the (N*H*W,) labels, ignore pixels dropped); (N, K)
    stays. MAL's dense losses are the classification ones averaged over pixels ("pixel-average cross-entropy")."""
    if logits.dim() == 2:
        return logits if labels is None else (logits, labels)
    rows = logits.movedim(1, -1).reshape(-1, logits.shape[1])
    if labels is None:
        return rows
    y = labels.long().reshape(-1)
    keep = y != 255
    return rows[keep], y[keep]


class DenseCosineClassifier(nn.Module):
    """C for segmentation (MAL Sec. 3.2): the d x h x w features l2-normalised at every position, K prototype
    1x1 convolution filters (no bias) / T, up-sampled to the image ("a convolutional layer followed by an
    upsampling layer", Sec. 4.2: DRN's frozen bilinear up-sampler). `reverse` flips F's gradient (Eq. 2)."""

    def __init__(self, feature_dim: int, num_classes: int, up: nn.Module, temperature: float = 0.05):
        super().__init__()
        self.prototypes = nn.Conv2d(feature_dim, num_classes, 1, bias=False)
        self.up, self.temperature = copy.deepcopy(up), temperature

    def forward(self, features: torch.Tensor, reverse: float | None = None) -> torch.Tensor:
        h = features.float()
        if reverse is not None:
            h = grad_reverse(h, reverse)
        return self.up(self.prototypes(F.normalize(h, dim=1)) / self.temperature)


class DenseDiscriminator(nn.Module):
    """D for segmentation (MAL Sec. 4.2: "instead of using a 3-layer MLP, we use a 3-layer CNN followed by a
    small fully-connected layer"): on the l2-normalised feature map, three 3x3 stride-2 convolutions with ReLUs
    (widths 256, 128, 64: not stated, our choice), global average pooling, Linear(64, 1): the logit of labeled."""

    WIDTHS = (256, 128, 64)

    def __init__(self, feature_dim: int):
        super().__init__()
        layers, c = [], feature_dim
        for w in self.WIDTHS:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = w
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(F.normalize(features.float(), dim=1)).squeeze(-1)

    def labeledness(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(features))


# --- the supplementary's configurations (torchvision bodies, CIFAR-100) --------------------------------------

PAPER_ARCHS = ("resnet18", "vgg16")


def paper_modules(arch: str, num_classes: int = 100, device: str | torch.device | None = None) -> dict[str, nn.Module]:
    """F, C, D and the task model T of MAL supp. Sec. B for "resnet18" (torchvision body, 7x7 stem, d = 512)
    or "vgg16" (torchvision vgg16_bn features, 7x7 adaptive pool, d = 25088), built with weights=None (no
    downloads); `device="meta"` builds them without allocating (for counting). At 100 classes their counts
    are 11,176,512 / 156,928 / 525,825 / 11,227,812 (ResNet18) and 14,723,136 / 12,896,768 / 13,108,737 /
    17,232,036 (VGG16), the paper's 11.18M / 156.93K / 525.83K / 11.23M and 14.72M / 12.90M / 13.11M / 17.23M.
    """
    import torchvision

    with torch.device(device) if device is not None else contextlib.nullcontext():
        if arch == "resnet18":
            net = torchvision.models.resnet18(weights=None)
            body, d = nn.Sequential(*list(net.children())[:-1], nn.Flatten()), net.fc.in_features
        elif arch == "vgg16":
            from torchvision.models.vgg import cfgs, make_layers

            # vgg16_bn's conv part only (its 4096-wide FCs are not MAL's), 7x7-pooled as torchvision's layout
            conv = make_layers(cfgs["D"], batch_norm=True)
            body, d = nn.Sequential(conv, nn.AdaptiveAvgPool2d(7), nn.Flatten()), 512 * 7 * 7
        else:
            raise ValueError(f"unknown architecture {arch!r}; allowed: {list(PAPER_ARCHS)}")
        return {"F": body, "C": CosineClassifier(d, num_classes), "D": Discriminator(d),
                "T": nn.Sequential(copy.deepcopy(body), nn.Linear(d, num_classes))}

