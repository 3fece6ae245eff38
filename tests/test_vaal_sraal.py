"""VAAL and SRAAL: parameter counts, the loss pieces' invariants, the adversarial game on a short run, and
the query = top-k of the discriminator's score."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.al.losses import vae as vl
from repro.al.selection import select_topk
from repro.al.strategies import STRATEGIES, QueryContext, build_strategy
from repro.al.strategies.sraal import SRAALHook, stepwise_decay
from repro.al.strategies.vaal import discriminator_probability, latent_means
from repro.core.train import TrainContext, fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model, count_parameters
from repro.models.nets.vae import ConvVAE, LatentDiscriminator, SplitLatentVAE, VAEOutput
from repro.spec.datasets import get_spec
from repro.spec.recipe import Recipe

from .test_strategies import trained_context

CIFAR10, CIFAR100 = get_spec("cifar10"), get_spec("cifar100")


def _quick(name, **opts):
    return build_strategy(name, STRATEGIES[name].Options(**{**STRATEGIES[name].quick_options, **opts}))


def n_params(modules: dict) -> dict:
    return {k: count_parameters(m) for k, m in modules.items()}


# --- parameter counts (REFERENCE.md sections 3, 5, 7) ------------------------------------------------------


def test_vaal_counts_match_the_reference_and_mcdal_table1():
    rn18 = build_model("resnet18", 10, 3, (32, 32))
    counts = n_params(build_strategy("vaal").method_modules(rn18, CIFAR10))
    assert counts == {"vae": 22_835_139, "discriminator": 280_065}
    assert sum(counts.values()) == 23_115_204
    assert count_parameters(rn18) + sum(counts.values()) == 34_289_166  # MCDAL Table 1 "VAAL 34.29M"


@pytest.mark.parametrize("latent,spec,vae,disc", [(32, CIFAR10, 22_855_373, 805_377),
                                                   (200, CIFAR100, 25_717_367, 891_393)])
def test_sraal_counts_match_the_official_code(latent, spec, vae, disc):
    opts = STRATEGIES["sraal"].Options(latent_dim=latent)
    rn18 = build_model("resnet18", spec.num_classes, 3, (32, 32))
    modules = build_strategy("sraal", opts).method_modules(rn18, spec)
    assert n_params(modules) == {"vae": vae, "discriminator": disc}


def test_sraal_parameter_table_shows_the_default_and_the_official_latent():
    totals = {c.setting: sum(count_parameters(m) for m in c.modules.values())
              for c in STRATEGIES["sraal"].parameter_configs()}
    assert totals == {"CIFAR-10, ResNet-18": 34_834_712,  # MCDAL Table 1 prints 45.58M: not reproduced
                      "CIFAR-10, ResNet-18, latent 200 (official code)": 37_759_592,
                      "CIFAR-100, ResNet-18, latent 200 (official code)": 37_828_892}


def test_sraal_latent_must_split_in_halves():
    with pytest.raises(ValueError, match="even"):
        SplitLatentVAE(3, 33, 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 64, 64), (3, 32, 32)])
def test_vae_resizes_any_image_to_32(shape):
    vae = ConvVAE(shape[0], 8, width=0.0625)
    out = vae(torch.randn(3, *shape))
    assert out.recon.shape == out.target.shape == (3, shape[0], 32, 32)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 8)


# --- loss pieces ---------------------------------------------------------------------------------------

finite = st.floats(-5.0, 5.0, allow_nan=False, width=32)


@st.composite
def gaussians(draw):
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    mu = torch.tensor(draw(st.lists(finite, min_size=n * d, max_size=n * d))).view(n, d)
    logvar = torch.tensor(draw(st.lists(finite, min_size=n * d, max_size=n * d))).view(n, d)
    return mu, logvar


@given(gaussians())
def test_kl_nonnegative_and_zero_only_at_the_prior(ml):
    mu, logvar = ml
    kl = vl.gaussian_kl(mu, logvar)
    assert kl.shape == (mu.shape[0],) and (kl >= 0).all()
    assert (kl[(mu == 0).all(1) & (logvar == 0).all(1)] == 0).all()
    # off the prior it is strictly positive (rows within float rounding of the prior may round to 0)
    gap = (mu.double().pow(2) + logvar.double().exp() - 1 - logvar.double()).sum(1)
    assert (kl[gap > 1e-4] > 0).all()
    assert torch.allclose(vl.kl_term(mu, logvar, "sum"), kl.sum())
    assert torch.allclose(vl.kl_term(mu, logvar, "mean"), kl.mean())


def test_kl_is_zero_at_the_prior_and_positive_off_it():
    zero = torch.zeros(4, 8)
    assert torch.equal(vl.gaussian_kl(zero, zero), torch.zeros(4))
    assert (vl.gaussian_kl(zero + 1e-2, zero) > 0).all() and (vl.gaussian_kl(zero, zero - 1e-2) > 0).all()
    with pytest.raises(ValueError, match="reduction"):
        vl.kl_term(zero, zero, "median")


@given(st.integers(0, 2**31 - 1), st.floats(0.0, 3.0))
def test_reconstruction_mse_zero_iff_equal(seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, 4, 4, generator=g)
    assert vl.reconstruction_mse(x, x) == 0
    y = x + scale * torch.randn(x.shape, generator=g)
    assert (vl.reconstruction_mse(y, x) > 0) == (not torch.equal(x, y))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(32, 1), (200, 3), (8, 2)]))
def test_discriminator_outputs_are_probabilities(seed, shape):
    latent, hidden = shape
    torch.manual_seed(seed)
    d = LatentDiscriminator(latent, hidden)
    z = torch.randn(16, latent) * 0.5
    p = d(z)
    assert p.shape == (16,) and ((p > 0) & (p < 1)).all()
    assert torch.allclose(p, torch.sigmoid(d.logits(z)))
    bce = F.binary_cross_entropy(p, torch.ones(16))
    assert torch.allclose(vl.adversarial_bce(d.logits(z), 1.0), bce, atol=1e-5)


@st.composite
def distributions(draw):
    n, c = draw(st.integers(1, 8)), draw(st.integers(2, 12))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.softmax(torch.randn(n, c, generator=g) * draw(st.sampled_from([0.3, 1.0, 5.0])), 1)


@given(distributions())
def test_oui_score_lies_in_one_over_c_to_one_and_is_permutation_invariant(p):
    c = p.shape[1]
    s = vl.oui_score(p)
    assert s.shape == (p.shape[0],)
    assert (s >= 1.0 / c - 1e-4).all() and (s <= 1.0).all()
    perm = torch.randperm(c)
    assert torch.allclose(vl.oui_score(p[:, perm]), s, atol=1e-5)


@pytest.mark.parametrize("c", [2, 3, 10, 100])
def test_oui_score_at_one_hot_flat_and_uniform(c):
    one_hot = torch.eye(c)
    assert torch.allclose(vl.oui_score(one_hot), torch.full((c,), 1.0 / c))  # confident: the bottom, 1/C
    m = torch.linspace(1.0 / c + 0.05, 1.0, 7)
    flat = ((1 - m) / (c - 1))[:, None].repeat(1, c)
    flat[:, 0] = m  # the maximum m, the other classes sharing 1 - m equally
    s = vl.oui_score(flat)
    assert torch.allclose(s, 1 - m * (c - 1) / c, atol=1e-5)
    assert (s[1:] < s[:-1]).all()  # more confident, lower score
    assert torch.equal(vl.oui_score(torch.full((2, c), 1.0 / c)), torch.ones(2))  # 0/0: the top of the range


def test_oui_ranks_two_way_ties_above_flat_predictions():
    """At the same maximum, a prediction whose mass sits on two classes is more uncertain than a flat one."""
    c = 10
    tie = torch.zeros(1, c)
    tie[0, :2] = 0.5
    flat = torch.full((1, c), 0.5 / (c - 1))
    flat[0, 0] = 0.5
    assert vl.oui_score(tie) > vl.oui_score(flat)


def test_sraal_lr_decays_by_085_every_thirtieth():
    f = stepwise_decay(3000)
    assert f(0) == 1.0 and f(99) == 1.0 and f(100) == pytest.approx(0.85)
    assert f(2999) == pytest.approx(0.85**29)


def _outputs(seed, n=4, latent=6, classes=10):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return VAEOutput(r(n, 3, 8, 8), r(n, latent), r(n, latent), r(n, latent) * 0.3, r(n, 3, 8, 8),
                     r(n, classes))


def _kld_sum(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def test_vaal_generator_loss_is_the_reference_formula():
    """[MSE + beta KLD](L) + same(U) + adv [BCE(D(mu_L), 1) + BCE(D(mu_U), 1)], KLD summed (VAAL's code)."""
    hook = STRATEGIES["vaal"]().training_hook()
    out_l, out_u = _outputs(0), _outputs(1)
    d_l, d_u = torch.randn(4), torch.randn(4)
    mse, bce = torch.nn.MSELoss(), torch.nn.BCELoss()
    expected = sum(mse(o.recon, o.target) + _kld_sum(o.mu, o.logvar) for o in (out_l, out_u))
    expected = expected + bce(torch.sigmoid(d_l), torch.ones(4)) + bce(torch.sigmoid(d_u), torch.ones(4))
    assert torch.allclose(hook.generator_loss(out_l, out_u, d_l, d_u, None), expected, rtol=1e-5)


@pytest.mark.parametrize("reading,target", [("labeled", 0.0), ("code", 1.0)])
def test_sraal_generator_loss_is_the_official_formula_with_its_adversarial_target(reading, target):
    """5 MSE + KLD (mean over the batch) on L and U + BCE(D(mu), target) on both + 5 CE(STI, y) on L."""
    hook = SRAALHook(STRATEGIES["sraal"].Options(adversarial_target=reading))
    out_l, out_u = _outputs(2), _outputs(3)
    d_l, d_u, y = torch.randn(4), torch.randn(4), torch.tensor([0, 3, 9, 3])
    mse, bce = torch.nn.MSELoss(), torch.nn.BCELoss()
    expected = sum(5 * mse(o.recon, o.target) + _kld_sum(o.mu, o.logvar) / 4 for o in (out_l, out_u))
    expected = expected + bce(torch.sigmoid(d_l), torch.full((4,), target)) + bce(torch.sigmoid(d_u),
                                                                                     torch.full((4,), target))
    expected = expected + 5 * F.cross_entropy(out_l.logits, y)
    assert torch.allclose(hook.generator_loss(out_l, out_u, d_l, d_u, y), expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["vaal", "sraal"])
def test_each_labeled_batch_takes_one_task_two_vae_and_one_discriminator_step(name, monkeypatch):
    calls = {"step": 0, "next_labeled": 0, "next_unlabeled": 0}
    for attr in calls:
        original = getattr(TrainContext, attr)

        def counted(*args, _original=original, _attr=attr, **kwargs):
            calls[_attr] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(TrainContext, attr, staticmethod(counted) if attr == "step" else counted)
    trained_context(name, pool_size=60, n_labeled=32)  # 2 epochs x 2 labeled batches of 16
    assert calls == {"step": 4 * 4, "next_labeled": 4, "next_unlabeled": 2 * 4}


# --- the adversarial game on a short run ---------------------------------------------------------------


def _split_pool():
    """192 synthetic CIFAR-10 images: classes 0-4 labeled, 5-9 unlabeled (pools differing in content only)."""
    data = load_dataset("synthetic-cifar10", train_size=192, test_size=10)
    mask = (data.train_y < 5).numpy()
    return data, ActivePool(192, np.flatnonzero(mask)), np.flatnonzero(mask), np.flatnonzero(~mask)


def _auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(score of a random positive > that of a random negative), ties half (Mann-Whitney)."""
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


def _discriminator_on_pool(name, model, data, pool, recipe, state, labeled, unlabeled):
    """The discriminator on the whole training pool (eval mode, as the query sees it): its BCE with its
    method's targets (VAAL L -> 1, U -> 0; SRAAL L -> 0, U -> the OUI score of the trained task model) and
    the AUC of telling the pools apart in its method's direction (VAAL: L higher; SRAAL: U higher)."""
    ctx = QueryContext(model, data, pool, Augmenter((), data.spec.mean, data.spec.std, "cpu"), recipe, 0, 0,
                       state=state)
    p_l, p_u = (discriminator_probability(ctx, name, idx) for idx in (labeled, unlabeled))
    if name == "vaal":
        t_l, t_u, auc = torch.ones_like(p_l), torch.zeros_like(p_u), _auc(p_l, p_u)
    else:
        t_l, t_u = torch.zeros_like(p_l), vl.oui_score(torch.softmax(ctx.predict(unlabeled)[0], 1))
        auc = _auc(p_u, p_l)
    return float(F.binary_cross_entropy(p_l, t_l) + F.binary_cross_entropy(p_u, t_u)), auc


@pytest.mark.parametrize("name", ["vaal", "sraal"])
def test_discriminator_learns_the_pools_while_reconstruction_improves(name):
    data, pool, labeled, unlabeled = _split_pool()
    strategy = build_strategy(name, STRATEGIES[name].Options(vae_width=0.0625))
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=5, augment=())
    torch.manual_seed(0)
    model = build_model("lenet", 10, 3, (32, 32), width=0.25)
    torch.manual_seed(1)
    untrained = torch.nn.ModuleDict(strategy.training_hook().build_modules(model, data.spec))
    torch.manual_seed(1)
    hook = strategy.training_hook()
    result = fit(model, data, pool.labeled, recipe, 0, hook=hook, unlabeled=pool.unlabeled)
    recon = [float(t) for t in hook.recon_trace]
    assert len(recon) == 5 and recon[-1] < recon[0], recon
    args = (name, model, data, pool, recipe)
    bce_before, auc_before = _discriminator_on_pool(*args, untrained, labeled, unlabeled)
    bce_after, auc_after = _discriminator_on_pool(*args, result.state, labeled, unlabeled)
    assert bce_after < bce_before, (bce_before, bce_after)
    assert auc_before < 0.55 < 0.6 < auc_after, (auc_before, auc_after)  # from about chance to better than it


# --- the query -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,opts", [("vaal", {}), ("vaal", {"features": "task"}), ("sraal", {}),
                                       ("sraal", {"adversarial_target": "code", "latent_dim": 12})])
def test_query_is_topk_of_the_discriminator_score(name, opts):
    strategy = build_strategy(name, STRATEGIES[name].Options(**{**STRATEGIES[name].quick_options, **opts}))
    strategy, ctx = trained_context(name, strategy=strategy)
    cand = ctx.pool.unlabeled
    mu = latent_means(ctx, ctx.state["vae"], cand, opts.get("features", "image"))
    with torch.no_grad():
        p = ctx.state["discriminator"](mu)
    score = -p if name == "vaal" else p
    full = torch.full((ctx.pool.size,), float("-inf"))
    full[torch.as_tensor(cand)] = score
    expected = select_topk(full, 13, torch.as_tensor(cand)).numpy()
    assert np.array_equal(strategy.query(ctx, 13), expected)
    assert ((p > 0) & (p < 1)).all()


def test_random_subset_variant_scores_only_its_subset():
    strategy = build_strategy("vaal", STRATEGIES["vaal"].Options(vae_width=0.0625, subset=20))
    strategy, ctx = trained_context("vaal", strategy=strategy)
    subset = strategy.candidates(ctx, 5)
    assert len(subset) == 20 and set(strategy.query(ctx, 5).tolist()) <= set(subset.tolist())


def test_vaal_runs_on_8x8_digits_and_kl_mean_option():
    strategy = build_strategy("vaal", STRATEGIES["vaal"].Options(vae_width=0.0625, kl_reduction="mean"))
    strategy, ctx = trained_context("vaal", "resnet18", "digits", pool_size=60, n_labeled=20,
                                    strategy=strategy, width=0.0625)
    assert len(set(strategy.query(ctx, 7).tolist())) == 7


def test_query_without_trained_modules_is_a_clear_error():
    strategy, ctx = trained_context("vaal", strategy=_quick("vaal"))
    with pytest.raises(RuntimeError, match="trained VAE"):
        strategy.query(dataclasses.replace(ctx, state=torch.nn.ModuleDict()), 3)


def test_sraal_discriminator_targets_are_zero_and_the_oui_score():
    strategy, ctx = trained_context("sraal", strategy=_quick("sraal"))

    class Ctx:  # the two things the target needs from a TrainContext
        model = ctx.model

        @staticmethod
        def autocast():
            import contextlib

            return contextlib.nullcontext()

    xu = ctx.augmenter.eval(ctx.data.train_x[torch.as_tensor(ctx.pool.unlabeled[:9])])
    t_l, t_u = SRAALHook(strategy.options).discriminator_targets(Ctx, xu)
    ctx.model.eval()
    with torch.no_grad():
        expected = vl.oui_score(torch.softmax(ctx.model(xu).logits, 1))
    assert t_l == 0.0 and torch.allclose(t_u, expected)
    c = ctx.data.num_classes
    assert ((t_u >= 1 / c - 1e-5) & (t_u <= 1)).all() and not math.isnan(float(t_u.sum()))


def test_feature_vae_trains_on_a_batch_of_one():
    """VAAL + TF: a last partial batch of a single example must not break training (no BatchNorm)."""
    import torch

    from repro.models.nets.vae import FeatureVAE

    vae = FeatureVAE(16, latent_dim=4).train()
    out = vae(torch.randn(1, 16))
    out.recon.sum().backward()
    assert out.recon.shape == (1, 16)
