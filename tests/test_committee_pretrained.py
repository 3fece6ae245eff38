"""QBC's and Suggestive Annotation's committee members start as the task model does: with `pretrained: true`, from
the pinned ImageNet body (issue 22 item 4), each member with its own freshly drawn head."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
import torch

from repro.al.loop import build_task_model
from repro.al.strategies import build_strategy
from repro.models import weights
from repro.models.drn import DRN

WIDTH = 0.125  # a small DRN-D-22 (and a fake weights file of the same shape): seconds on the CPU


def _setup(tmp_path, monkeypatch, pretrained: bool):
    torch.manual_seed(123)
    body = DRN(num_classes=1000, width=WIDTH)
    (tmp_path / "weights").mkdir()
    f = tmp_path / "weights" / "drn_d_22-test.pth"
    torch.save(body.state_dict(), f)
    w = weights.PRETRAINED["drn_d_22"]
    monkeypatch.setitem(weights.PRETRAINED, "drn_d_22", weights.WeightsFile(
        f.name, hashlib.sha256(f.read_bytes()).hexdigest()[:8], w.source))
    spec = SimpleNamespace(num_classes=19, channels=3, height=32, width=64)
    exp = SimpleNamespace(backbone="drn_d_22", width=WIDTH, dropout=None, pretrained=pretrained)
    model = build_task_model(exp, SimpleNamespace(spec=spec), 7, tmp_path)
    file_state = {k: v for k, v in torch.load(f, weights_only=True).items() if not k.startswith("fc.")}
    return model, spec, file_state


@pytest.mark.parametrize("method", ["qbc", "sa"])
def test_committee_members_start_from_the_pretrained_backbone(tmp_path, monkeypatch, method):
    model, spec, file_state = _setup(tmp_path, monkeypatch, pretrained=True)
    strategy = build_strategy(method)
    assert all(torch.equal(model.base.state_dict()[k], v) for k, v in file_state.items())  # the task model
    torch.manual_seed(1)  # as `fit` seeds the global generator before `build_modules`
    members = list(strategy.training_hook().build_modules(model, spec)["members"])
    assert len(members) == strategy.options.members - (1 if strategy.includes_task_model else 0) >= 3
    for m in members:
        own = m.base.state_dict()
        for k, v in file_state.items():
            assert torch.equal(own[k], v), f"{method} member's {k} is not the pretrained file's"
    heads = [model.seg.weight] + [m.seg.weight for m in members]  # each its own seeded head
    assert all(not torch.equal(a, b) for i, a in enumerate(heads) for b in heads[i + 1:])


def test_committee_members_stay_random_without_pretrained(tmp_path, monkeypatch):
    model, spec, file_state = _setup(tmp_path, monkeypatch, pretrained=False)
    torch.manual_seed(1)
    members = list(build_strategy("qbc").training_hook().build_modules(model, spec)["members"])
    conv = "layer0.0.weight"
    assert not torch.equal(model.base.state_dict()[conv], file_state[conv])
    assert all(not torch.equal(m.base.state_dict()[conv], file_state[conv]) for m in members)
