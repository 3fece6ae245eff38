"""Protocol drift (issue 22.12): a stated hyper-parameter and our params value are compared once written alike
(a fraction x the pool as a count, a seed list as a run count, lr x gamma as the rate after a milestone, a
one-element list as its element, an augmentation list as its crop size), integers exactly, rounding apart as its
own group, and the rows that really differ listed first."""

import copy

import pytest

from repro.al.methods import parse_params
from repro.report.claims import load_registries
from repro.report.protocol import STATUSES, protocol_drift, status_rank
from repro.spec.params import load_params

from .conftest import ROOT, tiny_params


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    raw = tiny_params(tmp_path_factory.mktemp("drift"), methods=["random"], seeds=[0, 1, 2, 3, 4])
    raw["recipes"]["tiny"].update(lr=0.1, gamma=0.1, milestones=[1], epochs=2)
    base = raw["experiments"]["tiny"]
    pools = {"cifar": (50_000, 0.02, 0.02, 0.2), "inat": (437_513, 0.1, 0.1, 0.4),
             "cityscapes": (2_975, 0.1, 0.05, 0.4), "caltech": (6_941, 0.1, 0.05, 0.4)}
    for name, (pool, ini, step, fin) in pools.items():
        exp = copy.deepcopy(base)
        exp.update(train_size=pool, schedule={"initial_fraction": ini, "step_fraction": step, "final_fraction": fin})
        raw["experiments"][name] = exp
    return parse_params(raw)


def _rows(params, *hyperparameters):
    reg = {"protocol": {"hyperparameters": [{"quote": "q", **h} for h in hyperparameters]}}
    return {r["name"]: r for r in protocol_drift({"x": reg}, params)}


def _status(params, value, key):
    return _rows(params, {"name": "h", "value": value, "params_key": key})["h"]


@pytest.mark.parametrize("value, key, as_stated", [
    (1000, "experiments.cifar.schedule.initial_fraction", 1000),  # 0.02 x 50,000
    (1000, "experiments.cifar.schedule.step_fraction", 1000),
    (10000, "experiments.cifar.schedule.final_fraction", 10000),
    (5, "experiments.tiny.seeds", 5),  # runs 5 vs [0, 1, 2, 3, 4]
    (0.01, "recipes.tiny.gamma", 0.01),  # lr 0.1 x gamma 0.1
    (1, "recipes.tiny.milestones", 1),  # 1 vs [1]
    (32, "recipes.tiny.augment", 32),  # crop on 32 x 32 images
    (10, "experiments.cifar.schedule", 10),  # stages
    ("2% -> 20% in +2% stages", "experiments.cifar.schedule", "2% -> 20% in +2% stages"),
    ([0.1, 0.2, 0.3, 0.4], "experiments.inat.schedule", [0.1, 0.2, 0.3, 0.4]),
    (43751, "experiments.inat.schedule.initial_fraction", 43751),  # round(43,751.3)
])
def test_the_same_value_written_another_way_matches(params, value, key, as_stated):
    row = _status(params, value, key)
    assert row["status"] == "matches", row
    assert row["ours_as_stated"] == pytest.approx(as_stated) and row["how"]


@pytest.mark.parametrize("value, key", [
    (43752, "experiments.inat.schedule.initial_fraction"),  # 0.1 x 437,513 = 43,751.3
    (43751, "experiments.inat.schedule.step_fraction"),  # queries of 43,752 / 43,751 / 43,751
    (43752, "experiments.inat.schedule.step_fraction"),
])
def test_counts_apart_by_rounding_are_their_own_group(params, value, key):
    row = _status(params, value, key)
    assert row["status"] == "rounding", row
    assert "43,751.3" in row["how"]


@pytest.mark.parametrize("value, key", [
    (150, "experiments.cityscapes.schedule.step_fraction"),  # 0.05 x 2,975 = 148.75: 148-149 per query
    (450, "experiments.caltech.schedule.step_fraction"),  # 347 per query
    (3, "experiments.tiny.seeds"),  # 3 runs stated, 5 run
    (3, "recipes.tiny.epochs"),  # integers exactly
    (0.02, "recipes.tiny.gamma"),  # neither gamma 0.1 nor lr x gamma 0.01
    (0.05, "recipes.tiny.lr"),
    (2, "recipes.tiny.milestones"),
    (28, "recipes.tiny.augment"),
    (4, "experiments.cifar.schedule"),
    ("2% -> 30% in +2% stages", "experiments.cifar.schedule"),
])
def test_a_different_value_differs(params, value, key):
    assert _status(params, value, key)["status"] == "differs"


def test_a_different_count_shows_the_counts_it_differs_from(params):
    row = _status(params, 150, "experiments.cityscapes.schedule.step_fraction")
    assert row["how"] == "0.05 x 2,975 = 148.75: 148-149 per query"
    assert sorted(set(row["ours_as_stated"])) == [148, 149]


def test_unstated_values_and_families_are_not_drift(params):
    assert _status(params, "many (no number stated)", "recipes.tiny.epochs")["status"] == "unstated"
    assert _status(params, "RESNET", "experiments.tiny.backbone")["status"] == "unstated"  # resnet18 is one
    assert _status(params, "wrn", "experiments.tiny.backbone")["status"] == "differs"


def test_real_drift_is_listed_first(params):
    rows = list(_rows(params,
                      {"name": "same", "value": 1000, "params_key": "experiments.cifar.schedule.step_fraction"},
                      {"name": "unkeyed", "value": 7},
                      {"name": "rounded", "value": 43752, "params_key": "experiments.inat.schedule.initial_fraction"},
                      {"name": "unbuilt", "value": 7, "params_key": "experiments.absent.schedule.query_size"},
                      {"name": "seeds", "value": 3, "params_key": "experiments.tiny.seeds"},
                      {"name": "epochs", "value": 2, "params_key": "recipes.tiny.epochs"},
                      {"name": "budget", "value": 150, "params_key": "experiments.cityscapes.schedule.step_fraction"},
                      ).values())
    assert [r["name"] for r in rows] == ["seeds", "budget", "rounded", "unbuilt", "same", "epochs", "unkeyed"]
    ranks = [status_rank(r["status"]) for r in rows]
    assert ranks == sorted(ranks) and max(ranks) < len(STATUSES)


def test_the_suite_table_differs_only_where_the_value_does():
    """On the real registries: the restatements the issue lists match, the real drift differs and comes first."""
    rows = protocol_drift(load_registries(ROOT / "paper_tables"), load_params(ROOT / "params.yaml", "paper"))
    by = {(r["paper"], r["name"]): r for r in rows}
    for k in [("ads", "initial_labeled_cifar10_resnet18"), ("ads", "lr_after_milestone"), ("ads", "lr_milestone"),
              ("mal", "runs"), ("mcdal", "budget_cifar"), ("daal", "augmentation_segmentation")]:
        assert by[k]["status"] == "matches", by[k]
    drift = [(r["paper"], r["name"]) for r in rows if r["status"] == "differs"]
    for k in [("mcdal", "epochs_cifar"), ("mcdal", "budget_caltech101"), ("mcdal", "cityscapes_budget"),
              ("ads", "repetitions"), ("daal", "runs"), ("mal", "runs_imagenet")]:
        assert k in drift
    assert [(r["paper"], r["name"]) for r in rows[: len(drift)]] == drift
    assert len(drift) == 6, drift  # issue 22's closing note lists these six
