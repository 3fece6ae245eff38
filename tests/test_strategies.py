"""The template every registered strategy inherits: register a method and it gets these checks.

- `query` returns exactly `budget` distinct unlabeled indices; same seed => same indices;
- for deterministic pointwise scores, scoring a candidate subset equals scoring the pool and reading the subset;
- a budget larger than the unlabeled pool is a clear error;
- every strategy runs on every backbone (LeNet, ResNet-18, VGG-16 at tiny widths).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from repro.al.strategies import STRATEGIES, BudgetError, QueryContext, build_strategy
from repro.core.train import fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec.recipe import Recipe

POINTWISE = {n for n, cls in STRATEGIES.items() if cls.pointwise}  # capabilities, declared by each strategy
# methods that query (the full-data reference, `full_pool`, trains on the whole pool and refuses to query)
QUERYING = sorted(n for n, cls in STRATEGIES.items() if not cls.full_pool)
RECIPE = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=2, augment=("flip",))


def make_strategy(name, **extra):
    # quick_options only shorten loops (the defaults are the papers')
    opts = STRATEGIES[name].Options(**{**STRATEGIES[name].quick_options, **extra})
    return build_strategy(name, opts)


def trained_context(name, backbone="lenet", dataset="synthetic-mnist", pool_size=90, n_labeled=30, seed=0,
                    strategy=None, width=0.25):
    data = load_dataset(dataset, train_size=pool_size, test_size=10)
    spec = data.spec
    strategy = strategy or make_strategy(name)
    torch.manual_seed(0)
    model = strategy.adapt_model(build_model(backbone, spec.num_classes, spec.channels, (spec.height, spec.width),
                                             width=width, dropout=0.5))
    pool = ActivePool.initial(dataset, pool_size, n_labeled, seed)
    trained = fit(model, data, pool.labeled, RECIPE, seed, hook=strategy.training_hook(), unlabeled=pool.unlabeled)
    aug = Augmenter((), spec.mean, spec.std, "cpu")
    return strategy, QueryContext(model, data, pool, aug, RECIPE, seed, 0, state=trained.state)


@pytest.fixture(scope="module", params=QUERYING)
def trained(request):
    return request.param, *trained_context(request.param)


def test_query_returns_budget_distinct_unlabeled(trained):
    name, strategy, ctx = trained
    picked = strategy.query(ctx, 17)
    assert picked.dtype == np.int64 and len(picked) == 17 and len(set(picked.tolist())) == 17
    assert not set(picked.tolist()) & set(ctx.pool.labeled.tolist())
    assert set(picked.tolist()) <= set(range(ctx.pool.size))


def test_same_seed_same_indices(trained):
    name, strategy, ctx = trained
    assert np.array_equal(strategy.query(ctx, 11), strategy.query(ctx, 11))
    # a strategy keeps no trained state (it reaches the query in ctx.state): a fresh object agrees too
    assert np.array_equal(make_strategy(name).query(ctx, 11), strategy.query(ctx, 11))


def test_budget_larger_than_pool_is_a_clear_error(trained):
    name, strategy, ctx = trained
    with pytest.raises(BudgetError, match="unlabeled pool"):
        strategy.query(ctx, ctx.pool.n_unlabeled + 1)
    with pytest.raises(BudgetError):
        strategy.query(ctx, 0)


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_scores_are_subset_invariant(name):
    strategy, ctx = trained_context(name)
    full = ctx.pool.unlabeled
    sub = full[::3]
    s_full = strategy.score(ctx, full)
    s_sub = strategy.score(ctx, sub)
    pos = np.searchsorted(full, sub)
    assert torch.allclose(s_sub, s_full[pos], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in STRATEGIES if "subset" in {f.name for f in dataclasses.fields(STRATEGIES[n].Options)}))
def test_random_subset_option_restricts_candidates(name):
    strategy = make_strategy(name, subset=25)
    strategy, ctx = trained_context(name, strategy=strategy)
    subset = strategy.candidates(ctx, 10) if hasattr(strategy, "candidates") else None
    picked = strategy.query(ctx, 10)
    if subset is not None:
        assert len(subset) == 25 and set(picked.tolist()) <= set(subset.tolist())


@pytest.mark.parametrize("backbone,dataset", [("resnet18", "synthetic-cifar10"), ("vgg16", "synthetic-cifar10")])
@pytest.mark.parametrize("name", QUERYING)
def test_every_strategy_runs_on_every_backbone(name, backbone, dataset):
    strategy = make_strategy(name, **({"max_iter": 3} if name == "dfal" else {}))
    strategy, ctx = trained_context(name, backbone, dataset, pool_size=40, n_labeled=16, strategy=strategy,
                                    width=0.0625)
    picked = strategy.query(ctx, 6)
    assert len(set(picked.tolist())) == 6 and not set(picked.tolist()) & set(ctx.pool.labeled.tolist())


VARIANTS = [
    ("mcdal", {"heads": 4, "distance": "kl"}), ("mcdal", {"heads": 8, "distance": "l2"}), ("mcdal-code", {"heads": 6}),
    ("ads", {"weighting": "none", "selection": "random"}), ("ads", {"weighting": "entropy", "entropy_from": "max"}),
    ("ads", {"classifiers": 1}), ("ads", {"entropy_from": "min", "log2": True, "subset": 40}),
    ("dal", {"subsample": True, "class_weight": "none"}), ("dfal", {"variant": "code"}),
    ("egl", {"params": "last"}), ("egl-code", {"chunk": 7}), ("entropy", {"subset": 30}),
    ("mc-entropy", {"passes": 3, "subset": 30}),
    ("ll", {"subset": None}), ("ll", {"preselect": "coreset", "subset": None}),
    ("mal", {"minimax": False}), ("mal", {"selection": "diversity"}),
    ("vaal", {"features": "task", "subset": 40}), ("sraal", {"adversarial_target": "code", "latent_dim": 8}),
]


@pytest.mark.parametrize("name,opts", VARIANTS, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in VARIANTS])
def test_variants_keep_the_query_contract(name, opts):
    strategy, ctx = trained_context(name, strategy=make_strategy(name, **opts))
    a, b = strategy.query(ctx, 9), strategy.query(ctx, 9)
    assert len(set(a.tolist())) == 9 and np.array_equal(a, b)
    assert not set(a.tolist()) & set(ctx.pool.labeled.tolist())


def test_dfal_code_variant_ranks_unflipped_last_and_clips():
    strategy, ctx = trained_context("dfal", strategy=make_strategy("dfal", variant="code"))
    cand = ctx.pool.unlabeled
    # a budget that cannot be met: iterate the full doubling schedule
    s = strategy.score(dataclasses.replace(ctx, budget=len(cand) + 1), cand)
    finite = torch.isfinite(s)
    assert (s[finite] <= 0).all()
    picked = strategy.query(ctx, 5)
    assert torch.isfinite(strategy.score(ctx, picked)).all() or not finite.any()


def test_mc_strategies_need_dropout():
    strategy = make_strategy("bald")
    data = load_dataset("synthetic-mnist", train_size=40, test_size=5)
    model = build_model("lenet", 10, 1, (28, 28), dropout=0.0)
    pool = ActivePool.initial("x", 40, 10, 0)
    ctx = QueryContext(model, data, pool, Augmenter((), data.spec.mean, data.spec.std, "cpu"), RECIPE, 0, 0)
    with pytest.raises(ValueError, match="dropout"):
        strategy.query(ctx, 5)


def test_the_full_data_reference_refuses_to_query():
    from repro.al.strategies import build_strategy

    strategy = build_strategy("upper-bound", STRATEGIES["upper-bound"].Options())
    with pytest.raises(RuntimeError, match="never queries"):
        strategy.query(None, 1)
