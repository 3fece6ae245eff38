"""LL + RD (DAAL Fig. 5): LL's loss-prediction module as the selector of DAAL's representativeness game."""

import numpy as np
import torch

from repro.al.strategies import QueryContext, build_strategy
from repro.al.strategies.ll import LLOptions
from repro.al.strategies.ll_rd import LLRDOptions
from repro.core.train import fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec.recipe import Recipe


def _fit(name, options, data, pool, epochs=3):
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    strategy = build_strategy(name, options)
    hook = strategy.training_hook()
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=epochs)
    trained = fit(model, data, pool.labeled, recipe, 0, hook=hook, unlabeled=pool.unlabeled)
    return strategy, model, trained, hook


def test_the_representativeness_game_trains_the_ll_module_and_rdis():
    data = load_dataset("synthetic-cifar10", train_size=240, test_size=10)
    pool = ActivePool.initial("x", 240, 64, 0)
    _, _, plain, _ = _fit("ll", LLOptions(subset=None), data, pool)
    strategy, model, rd, hook = _fit("ll+rd", LLRDOptions(hidden=32, latent=8), data, pool)
    assert {"loss_module", "vae", "rdis", "standardiser"} <= set(rd.state)
    # same seed, same task batches: only the rater loss of the rDis game can move the module differently
    a, b = plain.state["loss_module"].out.weight, rd.state["loss_module"].out.weight
    assert not torch.allclose(a, b)
    assert len(hook.rdis_trace) == 3 and all(0.0 <= float(t) <= 1.0 for t in hook.rdis_trace)
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    ctx = QueryContext(model, data, pool, aug, Recipe(optimizer="sgd", lr=0.05, batch_size=32, epochs=1), 0, 0,
                       state=rd.state)
    picked = strategy.query(ctx, 12)
    scores = strategy.score(ctx, pool.unlabeled)
    assert set(picked.tolist()) == set(pool.unlabeled[torch.topk(scores, 12).indices.numpy()].tolist())
    assert np.isin(picked, pool.unlabeled).all()
