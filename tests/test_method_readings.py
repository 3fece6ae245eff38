"""The paper readings that are defaults (and the code readings one option away): each pinned by a test that
fails if the default drifts back to the other reading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.al import selection
from repro.al.losses import ads as ads_losses
from repro.al.strategies import QueryContext, build_strategy
from repro.al.strategies.ads import ADSHook, ADSOptions, ADSStrategy
from repro.al.strategies.dal import DALOptions
from repro.al.strategies.egl import EGLOptions
from repro.al.strategies.mc_dropout import VariationRatioOptions
from repro.al.strategies.mcdal import MCDALOptions
from repro.core.train import TrainingHook, fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec.recipe import Recipe


@pytest.fixture(scope="module")
def cifar():
    return load_dataset("synthetic-cifar10", train_size=200, test_size=10)


def _resnet(seed=0):
    torch.manual_seed(seed)
    return build_model("resnet18", 10, 3, (32, 32), width=0.125)


def test_mcdal_heads_leave_the_task_model_untouched_in_the_paper_reading(cifar):
    """MCDAL: the auxiliary heads "do not effect the training of the task model": same seed, same task
    model as plain cross-entropy training, BN running statistics included. The code reading differs."""
    pool = ActivePool.initial("x", 200, 40, 0)
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=2, augment=("crop", "flip"))
    plain = _resnet()
    fit(plain, cifar, pool.labeled, recipe, 3, hook=TrainingHook())
    results = {}
    for name in ("mcdal", "mcdal-code"):
        model = _resnet()
        strategy = build_strategy(name, MCDALOptions())
        fit(model, cifar, pool.labeled, recipe, 3, hook=strategy.training_hook(), unlabeled=pool.unlabeled)
        results[name] = model.state_dict()
    ref = plain.state_dict()
    assert all(torch.equal(ref[k], results["mcdal"][k]) for k in ref)
    bn_means = [k for k in ref if k.endswith("running_mean")]
    assert any(not torch.equal(ref[k], results["mcdal-code"][k]) for k in bn_means)


def _lenet_context(seed=0, zero_head=False, n=60, n_labeled=20):
    data = load_dataset("synthetic-mnist", train_size=n, test_size=5)
    torch.manual_seed(seed)
    model = build_model("lenet", 10, 1, (28, 28), width=0.25, dropout=0.5).eval()
    if zero_head:
        with torch.no_grad():
            for p in model.head.parameters():
                p.zero_()
    pool = ActivePool.initial("x", n, n_labeled, seed)
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=8, epochs=1)
    return QueryContext(model, data, pool, aug, recipe, seed, 1)


def test_egl_is_the_expected_gradient_norm_not_its_square():
    """For the last linear layer W h + b with softmax CE, grad of l(x, c) = (p - e_c) (x) [h, 1], so
    ||grad|| = ||p - e_c|| sqrt(||h||^2 + 1); EGL = sum_c p_c ||grad_c|| (Settles & Craven; Huang et al.)."""
    ctx = _lenet_context()
    cand = ctx.pool.unlabeled[:12]
    scores = build_strategy("egl", EGLOptions(params="last")).score(ctx, cand)
    logits, h = ctx.predict(cand)
    p = torch.softmax(logits, 1)
    eye = torch.eye(p.shape[1])
    norms = (p[:, None, :] - eye[None]).norm(dim=2) * (h.pow(2).sum(1, keepdim=True) + 1).sqrt()
    assert torch.allclose(scores, (p * norms).sum(1), rtol=1e-4)
    assert not torch.allclose(scores, (p * norms.pow(2)).sum(1), rtol=1e-2)


def test_vote_variation_ratio_breaks_ties_at_random_per_run_not_by_index():
    """A zeroed head predicts class 0 on every pass: every candidate ties at variation ratio 0. The picks
    must not be the lowest indices, must be the same for the same (seed, stage), and differ across seeds."""
    opts = VariationRatioOptions(passes=5)
    picks = {}
    for seed in (0, 1):
        ctx = _lenet_context(seed=seed, zero_head=True)
        assert torch.all(build_strategy("mc-variation-ratio", opts).score(ctx, ctx.pool.unlabeled) == 0)
        picks[seed] = build_strategy("mc-variation-ratio", opts).query(ctx, 10)
        again = build_strategy("mc-variation-ratio", opts).query(_lenet_context(seed=seed, zero_head=True), 10)
        assert np.array_equal(picks[seed], again)
        assert not np.array_equal(np.sort(picks[seed]), ctx.pool.unlabeled[:10])
    assert not np.array_equal(np.sort(picks[0]), np.sort(picks[1]))


def test_select_topk_tiebreak_priorities():
    scores = torch.tensor([1.0, 2.0, 1.0, 1.0, 0.0])
    prio = torch.tensor([3, 0, 2, 1, 4])
    assert selection.select_topk(scores, 3, tiebreak=prio).tolist() == [1, 3, 2]
    assert selection.select_topk(scores, 3).tolist() == [1, 0, 2]


def test_variation_ratio_mean_probability_reading_is_least_confidence_of_the_mean():
    ctx = _lenet_context()
    cand = ctx.pool.unlabeled
    s = build_strategy("mc-variation-ratio", VariationRatioOptions(passes=7, reading="mean_probability"))
    from repro.al.strategies.mc_dropout import mc_dropout_probs

    expected = 1.0 - mc_dropout_probs(ctx, cand, 7).mean(0).max(1).values
    assert torch.allclose(s.score(ctx, cand), expected)
    assert not s.ties_random()


def test_query_predictions_are_fp32(monkeypatch):
    """Acquisition scores never see bf16 logits, whatever the recipe's training precision."""
    import repro.core.infer as infer

    seen = []
    real = infer.autocast
    monkeypatch.setattr(infer, "autocast", lambda device, enabled=True: (seen.append(enabled), real(device, enabled))[1])
    ctx = _lenet_context()
    assert ctx.recipe.bf16
    ctx.predict(ctx.pool.unlabeled[:5])
    assert seen and not any(seen)


def test_dal_defaults_are_the_papers():
    o = DALOptions()
    assert o.class_weight == "none" and o.subsample and o.stop_accuracy == 0.98 and o.mini_queries == 20


class _CountingADSHook(ADSHook):
    def __init__(self, opts):
        super().__init__(opts)
        self.calls: list[tuple[int, str]] = []

    def training_step(self, ctx, x, y):
        self.calls.append((ctx.epoch, ctx.phase))
        if ctx.phase == "agreement":
            assert x is None and y is None
        else:
            assert x is not None and len(x) == len(y)
        return super().training_step(ctx, x, y)


@pytest.mark.parametrize("steps", ["paper", "code"])
def test_ads_epoch_follows_alg1(cifar, steps):
    """Alg. 1: L once before the first epoch, then agreement -> discrepancy (+L) -> L; each unlabeled step is a
    full pass over the random unlabeled subset (the query's subset). The code reading runs the same steps
    (train_init on L in epoch 0 only: tests/test_ads_code.py)."""
    opts = ADSOptions(subset=50, epoch_steps=steps)
    strategy = ADSStrategy(opts)
    pool = ActivePool.initial("x", 200, 20, 0)
    unlabeled = strategy.training_unlabeled(pool, seed=0, stage=0)
    assert len(unlabeled) == 50 and set(unlabeled) <= set(pool.unlabeled)
    hook = _CountingADSHook(opts)
    recipe = Recipe(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=10, epochs=2)
    fit(strategy.adapt_model(_resnet()), cifar, pool.labeled, recipe, 0, hook=hook, unlabeled=unlabeled)
    per = {e: [ph for ep, ph in hook.calls if ep == e] for e in (0, 1)}
    assert per[0] == ["labeled"] * 2 + ["agreement"] * 5 + ["discrepancy"] * 5 + ["labeled"] * 2
    assert per[1] == ["agreement"] * 5 + ["discrepancy"] * 5 + ["labeled"] * 2
    # the query scores the same subset the unlabeled passes read
    ctx = QueryContext(_resnet(), cifar, pool, Augmenter((), cifar.spec.mean, cifar.spec.std, "cpu"), recipe, 0, 0)
    assert np.array_equal(strategy.candidates(ctx, 10), unlabeled)


def test_ads_table2_varies_only_the_weight_entropy():
    """Table 2's max/min change the entropy inside the calibration weight; selection stays Eq. 3's mean."""
    g = torch.Generator().manual_seed(0)
    s1, s2 = torch.rand(6, 10, generator=g), torch.rand(6, 10, generator=g)
    mean_sel = ADSHook(ADSOptions()).selection_entropy(s1, s2)
    for reduce in ("max", "min"):
        hook = ADSHook(ADSOptions(weighting="entropy", entropy_from=reduce))
        assert torch.allclose(hook.selection_entropy(s1, s2), mean_sel)
        assert torch.allclose(hook.weight_entropy(s1, s2), ads_losses.ads_entropy(s1, s2, reduce))


def test_ads_table_rows_are_the_named_variants():
    """Table 2's "non" / "mean" rows are Table 1's rows 3 / 4 (same numbers in the paper): the variants that
    run them must be those rows' options, and Table 2's max / min differ from "mean" only in the weight's entropy."""
    import dataclasses

    from repro.al.methods import load_params, method_spec

    from .conftest import ROOT

    params = load_params(ROOT / "params.yaml", "paper")

    def opts(name):
        method, o = method_spec(params, name)
        assert method == "ads"
        return o

    table1 = {
        "ads-baseline": ADSOptions(classifiers=1, weighting="none", selection="random"),
        "ads-non-random": ADSOptions(weighting="none", selection="random"),
        "ads-non": ADSOptions(weighting="none", selection="entropy"),  # = Table 2 "ADS (non)"
        "ads-ent": ADSOptions(weighting="entropy", entropy_from="mean", selection="entropy"),  # = Table 2 "ADS (mean)"
        "ads": ADSOptions(weighting="calibration", selection="entropy"),
    }
    for name, want in table1.items():
        assert opts(name) == want, name
    for name, reduce in (("ads-ent-max", "max"), ("ads-ent-min", "min")):
        assert opts(name) == dataclasses.replace(opts("ads-ent"), entropy_from=reduce)
    assert list(params.experiment("ads_cifar10").methods) == list(table1)
