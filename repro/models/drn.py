"""DRN-D (Yu, Koltun, Funkhouser 2017; fyu/drn @d75db2e `drn.py`) and its segmentation wrapper (`segment.py`).

DRN-D body, channels (16, 32, 64, 128, 256, 512, 512, 512) x width:
  layer0  7x7 conv (stride 1, pad 3, no bias), BN, ReLU
  layer1  `layers[0]` 3x3 conv-BN-ReLU, stride 1       layer2  `layers[1]` of them, stride 2 on the first
  layer3  BasicBlocks, stride 2                        layer4  BasicBlocks, stride 2
  layer5  BasicBlocks, dilation 2                      layer6  BasicBlocks, dilation 4
  layer7  plain 3x3 conv-BN-ReLU, dilation 2           layer8  the same, dilation 1 (no residuals in 7 / 8)
Output stride 8. drn_d_22 = [1, 1, 2, 2, 2, 2, 1, 1]: 16,393,752 parameters as the ImageNet classifier
(global average pool, 1x1 conv fc with bias, 1,000 classes).

DRNSeg (drn_d_22, 19 classes): body without avgpool / fc (15,880,752) + seg 1x1 conv with bias (9,747) =
15,890,499 trainable, + the frozen bilinear ConvTranspose2d up-sampler (19 * 16 * 16 = 4,864) = 15,895,363.
drn_d_38 = [1, 1, 3, 4, 6, 3, 1, 1] (BasicBlocks too): 25,998,659 trainable for 19 classes.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from repro.models.base import Backbone, ModelOutput

CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
ARCHS = {"drn_d_22": (1, 1, 2, 2, 2, 2, 1, 1), "drn_d_38": (1, 1, 3, 4, 6, 3, 1, 1)}
OUTPUT_STRIDE = 8
# fyu/drn's ImageNet checkpoint for drn_d_22 (model_urls['drn-d-22']). Its full sha256 is not published; the 8 hex
# digits in the name follow torch.hub's "<name>-<sha256 prefix>.pth" convention (unverified: fyu's loader does not
# check them), so `load_pretrained` takes the digest from the caller.


class BasicBlock(nn.Module):
    """fyu/drn's BasicBlock: two 3x3 convs with paddings equal to their dilations (d1, d2), BN, residual add."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        d1, d2 = dilation
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def _conv_layers(cin: int, cout: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """`convs` plain 3x3 conv-BN-ReLU layers (padding = dilation), the first with `stride`."""
    modules: list[nn.Module] = []
    for i in range(convs):
        modules += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, padding=dilation,
                              dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


def _block_layer(cin: int, cout: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """fyu/drn `_make_layer(..., new_level=False)` for dilated stages: every block dilated (d, d) (the D-variant
    stages 5 / 6 pass new_level=False, so the first block does not use d // 2)."""
    layers = [BasicBlock(cin, cout, stride, (dilation, dilation))]
    layers += [BasicBlock(cout, cout, 1, (dilation, dilation)) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class DRN(nn.Module):
    """The DRN-D body (attribute names as fyu/drn, so its checkpoints' `layerK.*` keys load); with `num_classes`
    the ImageNet classifier head: global average pool (fyu: AvgPool2d(28) on 224 inputs) and a 1x1 conv fc."""

    def __init__(self, layers: Sequence[int] = ARCHS["drn_d_22"], in_channels: int = 3, width: float = 1.0,
                 num_classes: int | None = None):
        super().__init__()
        if len(layers) != 8 or min(layers) < 1:
            raise ValueError(f"DRN-D needs 8 positive layer counts, got {tuple(layers)}")
        ch = [max(1, int(round(c * width))) for c in CHANNELS]
        self.layer0 = nn.Sequential(nn.Conv2d(in_channels, ch[0], 7, 1, 3, bias=False), nn.BatchNorm2d(ch[0]),
                                    nn.ReLU(inplace=True))
        self.layer1 = _conv_layers(ch[0], ch[0], layers[0])
        self.layer2 = _conv_layers(ch[0], ch[1], layers[1], stride=2)
        self.layer3 = _block_layer(ch[1], ch[2], layers[2], stride=2)
        self.layer4 = _block_layer(ch[2], ch[3], layers[3], stride=2)
        self.layer5 = _block_layer(ch[3], ch[4], layers[4], dilation=2)
        self.layer6 = _block_layer(ch[4], ch[5], layers[5], dilation=4)
        self.layer7 = _conv_layers(ch[5], ch[6], layers[6], dilation=2)
        self.layer8 = _conv_layers(ch[6], ch[7], layers[7], dilation=1)
        self.out_dim = ch[7]
        self.num_classes = num_classes
        if num_classes:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Conv2d(self.out_dim, num_classes, 1, bias=True)
        for m in self.modules():  # fyu/drn init: He-normal over k*k*out_channels (fc included), BN (1, 0)
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[output of layer0, layer1, ..., layer8]: index k is layer k's output."""
        outs = []
        for k in range(9):
            x = getattr(self, f"layer{k}")(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) logits with a classifier head, else the (N, out_dim, H/8, W/8) feature map."""
        x = self.forward_stages(x)[-1]
        if self.num_classes:
            x = torch.flatten(self.fc(self.avgpool(x)), 1)
        return x


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Bilinear interpolation kernel in every (depthwise) channel of `up`, as fyu/drn segment.py."""
    k = up.weight.size(2)
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = torch.tensor([1 - abs(i / f - c) for i in range(k)], dtype=up.weight.dtype)
    with torch.no_grad():
        up.weight.copy_((ramp[:, None] * ramp[None, :]).expand_as(up.weight))


class DRNSeg(Backbone):
    """fyu/drn segment.py's DRNSeg: DRN-D body (stride 8), 1x1 seg conv to C classes, frozen bilinear 8x
    ConvTranspose2d back to the input size. Logits are raw (fyu applies LogSoftmax; our loss takes cross-entropy).
    `embed(x)` is the final (N, D, H/8, W/8) map and `head` maps it to (N, C, H, W) logits (MC-dropout's split);
    H and W must be multiples of 8. Away from a 4-pixel border the up-sampler is exact bilinear interpolation
    (a constant map stays constant); the border sees one input row / column instead of two, as in fyu/drn."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0,
                 arch: str = "drn_d_22"):
        super().__init__()
        if arch not in ARCHS:
            raise KeyError(f"unknown DRN arch {arch!r}; allowed: {sorted(ARCHS)}")
        self.num_classes = num_classes
        self.base = DRN(ARCHS[arch], in_channels, width, num_classes=None)
        self.feature_dim = self.base.out_dim
        seg = nn.Conv2d(self.feature_dim, num_classes, 1, bias=True)
        seg.weight.data.normal_(0, math.sqrt(2.0 / num_classes))  # fyu: n = 1 * 1 * out_channels
        seg.bias.data.zero_()
        up = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, groups=num_classes, bias=False)
        fill_up_weights(up)
        up.weight.requires_grad_(False)
        parts: list[tuple[str, nn.Module]] = [("dropout", nn.Dropout2d(dropout))] if dropout > 0 else []
        self.head = nn.Sequential(OrderedDict([*parts, ("seg", seg), ("up", up)]))

    @property
    def seg(self) -> nn.Conv2d:
        return self.head.seg

    @property
    def up(self) -> nn.ConvTranspose2d:
        return self.head.up

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h % OUTPUT_STRIDE or w % OUTPUT_STRIDE:
            raise ValueError(f"DRNSeg needs input height and width that are multiples of {OUTPUT_STRIDE} "
                             f"(the logits are up-sampled 8x back to the input), got {h} x {w}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.base(x)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self._check(x)
        outs = self.base.forward_stages(x)
        features = outs[-1]
        # Learning Loss's 4 taps: layers 3, 4, 5 (first three residual stages, strides 4 / 8 / 8) and layer8 (final)
        return ModelOutput(self.head(features), features, (outs[3], outs[4], outs[5], outs[8]))


def load_pretrained(model: DRNSeg | DRN, path: str | Path, sha256: str) -> None:
    """Load a DRN body checkpoint placed by the user (e.g. data/weights/drn_d_22-4bd2f8ea.pth, fyu/drn's
    ImageNet drn_d_22) into `model.base` (or a bare DRN), ignoring its `fc.*` keys. The file's sha256 must equal
    `sha256` (a full hex digest, or a prefix of at least 8 hex digits). Never downloads."""
    path = Path(path)
    sha256 = sha256.lower()
    if len(sha256) < 8:
        raise ValueError(f"give at least 8 hex digits of {path.name}'s sha256, got {sha256!r}")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} not found: place the file there (sha256 {sha256}...)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(sha256):
        raise ValueError(f"pretrained weights {path}: sha256 {digest} does not match the expected {sha256}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    body = model.base if isinstance(model, DRNSeg) else model
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in body.state_dict().items() if not k.startswith("fc.")}
    # fyu's checkpoints predate BN's num_batches_tracked: its absence is fine (load_state_dict keeps ours)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    bad = missing + [k for k in state if k not in own] + [k for k in own if k in state and own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{path.name} does not fit this DRN body ({len(bad)} missing, unexpected or "
                         f"differently shaped entries, e.g. {bad[0]})")
    body.load_state_dict(state, strict=False)
