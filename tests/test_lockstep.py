"""Runs in lockstep (repro.exec.lockstep): a grouped run trains as its lone twin does, up to summation order."""

import numpy as np
import pytest
import torch

from repro.al import loop
from repro.core.train import TrainingHook, TrainRequest, fit
from repro.data.datasets import ImageData
from repro.data.synthetic import make_synthetic
from repro.exec import lockstep
from repro.exec.lockstep import auto_group_size, fit_group, groupable, memory_group_size, training_state_bytes
from repro.models import build_model
from repro.spec.datasets import get_spec
from repro.spec.params import parse_params
from repro.spec.recipe import Recipe
from repro.spec.schema import ConfigError

from .conftest import tiny_params


def _data(name: str, n: int) -> ImageData:
    spec = get_spec(name)
    return ImageData(spec, *make_synthetic(spec, n, 40))


def _models(backbone, spec, width, seeds, dtype=torch.float32):
    out = []
    for s in seeds:
        torch.manual_seed(100 + s)
        out.append(build_model(backbone, spec.num_classes, spec.channels, (spec.height, spec.width), width).to(dtype))
    return out


def _flat(model) -> torch.Tensor:
    return torch.cat([v.detach().double().flatten() for v in model.state_dict().values()])


def test_grouped_equals_lone_exactly_in_float64(monkeypatch):
    """In float64 the grouped kernels' summation order no longer shows: a BatchNorm ResNet with crop + flip,
    SGD with momentum, weight decay and a milestone trains to the very same parameters and running statistics
    grouped as alone (each run its own batches, augmentation and labeled set)."""
    import repro.data.augment as augment

    train, evaluate = augment.Augmenter.train, augment.Augmenter.eval
    monkeypatch.setattr(augment.Augmenter, "train", lambda self, x, g: train(self, x, g).double())
    monkeypatch.setattr(augment.Augmenter, "eval", lambda self, x: evaluate(self, x).double())
    data = _data("synthetic-cifar10", 160)
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=16, epochs=2,
                    milestones=(1,), augment=("crop", "flip"))
    seeds = (0, 1, 2)
    labeled = [np.random.default_rng(s).choice(160, 40, replace=False) for s in seeds]
    lone = _models("resnet18", data.spec, 0.0625, seeds, torch.float64)
    for m, lab, s in zip(lone, labeled, seeds):
        fit(m, data, lab, recipe, s)
    grouped = _models("resnet18", data.spec, 0.0625, seeds, torch.float64)
    fit_group([TrainRequest(m, data, lab, recipe, s, name=f"r/seed{s}") for m, lab, s in zip(grouped, labeled, seeds)])
    for a, b in zip(lone, grouped):
        assert torch.allclose(_flat(a), _flat(b), rtol=0, atol=1e-10)


def test_grouped_lenet_with_dropout_and_best_epoch_matches_lone_within_tolerance():
    """fp32, DAL's recipe shape: Adam, dropout (each run's masks from its own generator, drawn outside vmap),
    a validation split and best-epoch selection. After 3 epochs (18 steps) the parameters agree with the lone
    runs' to 2e-3 (absolute; the weights are ~0.3), and the best epochs and their accuracies are the same."""
    data = _data("synthetic-mnist", 300)
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=3, validation_fraction=0.2, best_after_epoch=1)
    seeds = (0, 1, 2, 3)
    labeled = [np.random.default_rng(s).choice(300, 120, replace=False) for s in seeds]
    lone = _models("lenet", data.spec, 1.0, seeds)
    lone_res = [fit(m, data, lab, recipe, s) for m, lab, s in zip(lone, labeled, seeds)]
    grouped = _models("lenet", data.spec, 1.0, seeds)
    reqs = [TrainRequest(m, data, lab, recipe, s, name=f"r/seed{s}") for m, lab, s in zip(grouped, labeled, seeds)]
    res = fit_group(reqs)
    assert reqs[0].group == [f"r/seed{s}" for s in seeds]
    for a, b, ra, rb in zip(lone, grouped, lone_res, res):
        assert (_flat(a) - _flat(b)).abs().max() < 2e-3
        assert (ra.best_epoch, ra.best_val_accuracy, ra.steps) == (rb.best_epoch, rb.best_val_accuracy, rb.steps)
        assert rb.final_loss == pytest.approx(ra.final_loss, rel=1e-3)


def test_dropout_masks_come_from_the_run_generator():
    """The same run trains to the same weights whatever the global RNG did before (masks are the run's own)."""
    data = _data("synthetic-mnist", 100)
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=1)
    out = []
    for noise in (0, 1):
        torch.manual_seed(noise)
        (m,) = _models("lenet", data.spec, 1.0, (0,))
        torch.rand(noise * 7 + 1)
        fit(m, data, np.arange(48), recipe, 5)
        out.append(_flat(m))
    assert torch.equal(out[0], out[1])


def test_only_plain_training_is_grouped():
    class Own(TrainingHook):
        pass

    data = _data("synthetic-mnist", 60)
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=1)
    (m,) = _models("lenet", data.spec, 1.0, (0,))
    assert groupable(TrainRequest(m, data, np.arange(20), recipe, 0))
    assert not groupable(TrainRequest(m, data, np.arange(20), recipe, 0, hook=Own()))
    other = TrainRequest(_models("lenet", data.spec, 1.0, (1,))[0], data, np.arange(30), recipe, 1)
    with pytest.raises(ValueError, match="differ"):
        fit_group([TrainRequest(m, data, np.arange(20), recipe, 0), other])
    assert auto_group_size(m, recipe, data.train_x.shape[1:], torch.device("cpu")) == 1
    per_run = training_state_bytes(m, recipe, data.train_x.shape[1:])
    n_params = sum(p.numel() for p in m.parameters())
    assert 16 * n_params < per_run < 16 * n_params + 4 * 3 * 16 * 10**5  # states + one batch's activations
    assert memory_group_size(m, recipe, data.train_x.shape[1:], 10.5 * per_run) == 10
    assert memory_group_size(m, recipe, data.train_x.shape[1:], 0) == 1


def test_run_group_records_match_lone_runs(tmp_path):
    """`random` picks do not depend on the model: grouped runs select exactly what lone runs select (same
    labeled sets at every stage), their accuracies agree within a few test images, the group is recorded,
    and a method with its own training (entropy here trains plainly too; mcdal has a hook) runs alone in the
    same call with a record identical to its lone run's."""
    raw = tiny_params(tmp_path / "lone", methods=("random", "mcdal"))
    lone = parse_params(raw)
    expected = {(m, s): loop.run(lone, "tiny", m, s, progress=False) for m in ("random", "mcdal") for s in (0, 1)}
    grouped = parse_params({**tiny_params(tmp_path / "grouped", methods=("random", "mcdal")), "group_runs": 4})
    got = {(r["method"], r["seed"]): r for r in lockstep.run_group(grouped, "tiny", list(expected), progress=False)}
    assert set(got) == set(expected)
    for s in (0, 1):
        a, b = expected[("random", s)], got[("random", s)]
        assert [x["labeled_sha256"] for x in a["stages"]] == [x["labeled_sha256"] for x in b["stages"]]
        assert all(abs(x["value"] - y["value"]) <= 0.05 for x, y in zip(a["stages"], b["stages"]))
        assert all(x["train_group"] == ["random/seed0", "random/seed1"] for x in b["stages"])
        assert "train_group" not in a["stages"][0]
        assert loop.strip_volatile(got[("mcdal", s)]) == loop.strip_volatile(expected[("mcdal", s)])
    # resuming: every record is already there, nothing trains again
    again = {(r["method"], r["seed"]) for r in lockstep.run_group(grouped, "tiny", list(expected), progress=False)}
    assert again == set(expected)


def test_group_runs_is_validated(tmp_path):
    raw = tiny_params(tmp_path)
    assert parse_params({**raw, "group_runs": "auto"}).group_runs == "auto"
    for bad in (0, "all", 1.5):
        with pytest.raises(ConfigError, match="group_runs"):
            parse_params({**raw, "group_runs": bad})
