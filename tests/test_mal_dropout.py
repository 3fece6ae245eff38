"""MAL's head dropout (paper_tables/mal.yaml protocol.choices, "Head dropout"): one shared architecture. Every
method of every MAL classification experiment trains the same task model, with the dropout BALD samples."""

from pathlib import Path

import torch
from torch import nn

from repro.al.methods import method_spec
from repro.al.strategies import build_strategy
from repro.models import build_model
from repro.spec.datasets import get_spec
from repro.spec.params import load_params

ROOT = Path(__file__).resolve().parents[1]


def _head_dropouts(model: nn.Module) -> list[float]:
    return [float(m.p) for m in model.head.modules() if isinstance(m, nn.Dropout) and m.p > 0]


def test_every_mal_classification_method_trains_the_same_dropout_head():
    params = load_params(ROOT / "params.yaml", "paper")
    mal = {n: e for n, e in params.experiments if e.paper == "mal" and get_spec(e.dataset).task == "classification"}
    assert "mal_fig3_cifar100" in mal and "mal_fig5_cifar100" in mal
    shared = mal["mal_fig3_cifar100"].dropout
    assert shared == 0.5
    seen = set()
    for name, exp in mal.items():
        assert exp.dropout == shared, name  # Fig. 5 / supp. Table 2 curves are read beside mal_fig3's
        spec = get_spec(exp.dataset)
        for m in exp.methods:
            method, opts = method_spec(params, m, name)
            torch.manual_seed(0)
            model = build_strategy(method, opts).adapt_model(build_model(
                exp.backbone, spec.num_classes, spec.channels, (spec.height, spec.width), 0.0625, exp.dropout))
            assert _head_dropouts(model) == [shared], (name, m)
            seen.add(method)
    assert {"random", "bald", "mal", "vaal"} <= seen


def test_the_mal_dropout_choice_is_recorded():
    import yaml

    reg = yaml.safe_load((ROOT / "paper_tables" / "mal.yaml").read_text())
    assert any(c.startswith("Head dropout: one shared architecture") for c in reg["protocol"]["choices"])
