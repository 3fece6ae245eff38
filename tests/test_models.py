"""Backbones: parameter counts pinned to the papers' references, and the output contract."""

import pytest
import torch

from repro.models import BACKBONES, ModelOutput, build_model, count_parameters


def test_resnet18_parameter_count_matches_mcdal_reference():
    assert count_parameters(build_model("resnet18", 10, 3, (32, 32))) == 11_173_962
    assert count_parameters(build_model("resnet18", 100, 3, (32, 32))) == 11_220_132


def test_lenet_parameter_count_matches_dal_reference():
    assert count_parameters(build_model("lenet", 10, 1, (28, 28))) == 225_034


def test_vgg16_bn_parameter_count():
    # 13 conv3x3+BN layers (14,723,136 with a conv bias) + Linear(512, 10)
    assert count_parameters(build_model("vgg16", 10, 3, (32, 32))) == 14_728_266


@pytest.mark.parametrize("name,shape", [("resnet18", (3, 32, 32)), ("vgg16", (3, 32, 32)), ("lenet", (1, 28, 28)),
                                        ("wrn28_2", (3, 32, 32))])
def test_output_contract(name, shape):
    torch.manual_seed(0)
    m = build_model(name, 7, shape[0], shape[1:], width=0.25).eval()
    out = m(torch.randn(5, *shape))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (5, 7) and out.features.shape == (5, m.feature_dim)
    # the head alone maps features to logits (MC-dropout samples the head only)
    assert torch.allclose(m.head(m.embed(torch.zeros(2, *shape))), m(torch.zeros(2, *shape)).logits, atol=1e-6)
    if name == "resnet18":
        assert len(out.stages) == 4 and [s.shape[1] for s in out.stages] == [16, 32, 64, 128]


def test_width_multiplier_shrinks_and_dropout_option():
    small = build_model("resnet18", 10, 3, (32, 32), width=0.125)
    assert count_parameters(small) < 250_000
    m = build_model("resnet18", 10, 3, (32, 32), dropout=0.3)
    assert any(isinstance(x, torch.nn.Dropout) for x in m.head.modules())
    assert set(BACKBONES) == {"resnet18", "resnet18-imagenet", "vgg16", "lenet", "wrn28_2", "drn_d_22", "ssd300"}
    from repro.spec.params import BACKBONE_NAMES

    assert set(BACKBONE_NAMES) == set(BACKBONES)  # params validate without importing torch


def test_lenet_rejects_too_small_images():
    with pytest.raises(ValueError, match="10x10"):
        build_model("lenet", 10, 1, (8, 8))


def test_method_parameter_counts_match_references():
    """MCDAL adds two Linear(512, 10) heads: 11,184,222 (REFERENCE.md section 7; paper Table 1: 11.19M)."""
    import numpy as np

    from repro.al.strategies import build_strategy
    from repro.core.train import fit
    from repro.data.datasets import load_dataset
    from repro.spec.recipe import Recipe

    data = load_dataset("synthetic-cifar10", train_size=8, test_size=2)
    counts = {}
    for name in ("mcdal", "coreset", "dal"):
        strategy = build_strategy(name)
        model = strategy.adapt_model(build_model("resnet18", 10, 3, (32, 32)))
        trained = fit(model, data, np.arange(4), Recipe(optimizer="sgd", lr=0.01, batch_size=4, epochs=1), 0,
                      hook=strategy.training_hook(), unlabeled=np.arange(4, 8))
        modules = trained.state or strategy.method_modules(model, data.spec)  # DAL trains its own inside the query
        counts[name] = count_parameters(model) + sum(count_parameters(m) for m in modules.values())
    assert counts["mcdal"] == 11_184_222 and counts["coreset"] == 11_173_962
    assert counts["dal"] == 11_173_962 + (512 * 256 + 256) + 2 * (256 * 256 + 256) + (256 * 2 + 2)


def _torchvision_names_to_ours(key: str) -> str:
    """torchvision resnet18 state-dict key -> ResNet18ImageNet's (stem.0/1, stages.i, shortcut, head.0)."""
    import re

    key = re.sub(r"^conv1\.", "stem.0.", key)
    key = re.sub(r"^bn1\.", "stem.1.", key)
    key = re.sub(r"^layer(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.", key)
    return re.sub(r"^fc\.", "head.0.", key.replace(".downsample.", ".shortcut."))


def test_resnet18_imagenet_is_torchvisions_resnet18():
    """MAL's task model on ImageNet / iNaturalist: torchvision's resnet18 (7x7 stem + max-pool), 11,689,512
    parameters at 1,000 classes; its weights load under our names and give the same logits."""
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None).eval()
    ours = build_model("resnet18-imagenet", 1000, 3, (224, 224)).eval()
    assert count_parameters(ours) == count_parameters(tv) == 11_689_512
    ours.load_state_dict({_torchvision_names_to_ours(k): v for k, v in tv.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, tv(x), atol=1e-5)


def test_resnet18_imagenet_output_contract_width_and_dropout():
    torch.manual_seed(0)
    m = build_model("resnet18-imagenet", 7, 3, (224, 224), width=0.125).eval()
    out = m(torch.randn(2, 3, 224, 224))
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 7) and out.features.shape == (2, m.feature_dim)
    assert [tuple(s.shape[1:]) for s in out.stages] == [(8, 56, 56), (16, 28, 28), (32, 14, 14), (64, 7, 7)]
    assert torch.allclose(m.head(m.embed(torch.zeros(2, 3, 224, 224))), m(torch.zeros(2, 3, 224, 224)).logits,
                          atol=1e-6)
    assert count_parameters(m) < count_parameters(build_model("resnet18-imagenet", 7, 3, (224, 224), width=0.5))
    d = build_model("resnet18-imagenet", 10, 3, (224, 224), dropout=0.3)
    assert any(isinstance(x, torch.nn.Dropout) for x in d.head.modules())


def test_lenet_pool_before_relu_is_the_same_function_and_gradient():
    """LeNet max-pools before its ReLU (a quarter of the ReLU work): outputs and every gradient equal, bit for
    bit, those of the textbook ReLU-then-pool order with the same weights."""
    import torch
    from torch import nn

    from repro.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet", 10, 1, (28, 28), 1.0, 0.0)
    t = model.trunk
    textbook = nn.Sequential(t[0], nn.ReLU(), nn.MaxPool2d(2), t[3], nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    x = torch.randn(16, 1, 28, 28)
    x[:4] = -x[:4].abs()  # windows whose max is negative
    grads = []
    for trunk in (model.trunk, textbook):
        model.zero_grad()
        out = model.head(model.embedding(trunk(x)))
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))
