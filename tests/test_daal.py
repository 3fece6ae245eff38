"""DAAL (Wang et al.): WRN-28-2 counts, property tests of Eqs. 1-7, the networks' ranges, a short Alg. 1 run
in which the adversarial losses behave as the paper describes, and the query (top-k of the ScoreNet)."""

import copy
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from repro.al.losses import daal as L
from repro.al.losses.daal_alg1 import alg1_losses, alg1_update, representativeness_terms
from repro.al.methods import run_code
from repro.al.strategies import STRATEGIES, QueryContext, build_strategy
from repro.core.infer import predict
from repro.core.train import fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model, count_parameters
from repro.models.nets.daal import Discriminator, FeatureStandardiser, FeatureVAE, ScoreNet
from repro.models.wrn import WideResNet28_2
from repro.spec.recipe import Recipe

SIGMA = 0.2


def seeded(draw, *shape, scale=1.0):
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


# --- WRN-28-2 -------------------------------------------------------------------------------------------


def test_wrn28_2_parameter_counts_match_reference():
    assert count_parameters(WideResNet28_2(10)) == 1_467_610
    assert count_parameters(WideResNet28_2(100)) == 1_479_220
    assert WideResNet28_2(10).feature_dim == 128


def test_wrn28_2_output_contract_and_width():
    torch.manual_seed(0)
    m = WideResNet28_2(10, 3, width=0.125, dropout=0.3).eval()
    out = m(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and out.features.shape == (2, m.feature_dim) == (2, 16)
    assert torch.allclose(m.head(m.embed(torch.ones(1, 3, 32, 32))), m(torch.ones(1, 3, 32, 32)).logits)


# --- Eq. 1: KL to the prior -----------------------------------------------------------------------------


@st.composite
def gaussians(draw):
    n, z = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return seeded(draw, n, z, scale=draw(st.sampled_from([0.01, 1.0, 3.0]))).float(), \
        seeded(draw, n, z, scale=draw(st.sampled_from([0.01, 1.0, 3.0]))).float()


@given(gaussians())
def test_kl_to_prior_nonnegative_and_zero_only_at_prior(mu_logvar):
    mu, logvar = mu_logvar
    kl = L.kl_to_prior(mu, logvar)
    assert kl.shape == (mu.shape[0],) and (kl >= 0).all()
    assert torch.equal(L.kl_to_prior(torch.zeros_like(mu), torch.zeros_like(logvar)), torch.zeros(mu.shape[0]))
    away = (mu.abs() > 1e-2) | (logvar.abs() > 1e-2)  # rows with some coordinate off the prior
    assert (kl[away.any(1)] > 0).all()


# --- Eqs. 6-7: length regulariser, DPP ------------------------------------------------------------------


@given(st.lists(st.floats(0.001, 0.999), min_size=1, max_size=40), st.floats(0.01, 0.99))
def test_length_regulariser_nonnegative_zero_iff_mean_is_sigma(values, sigma):
    s = torch.tensor(values, dtype=torch.float64)
    lr = L.length_regulariser(s, sigma)
    assert lr >= 0 and torch.isclose(lr, (sigma - s.mean()).abs(), atol=1e-12)
    assert (lr == 0) == bool(s.mean() == sigma)
    at_sigma = torch.full((len(values),), sigma, dtype=torch.float64)
    assert torch.isclose(L.length_regulariser(at_sigma, sigma), torch.zeros((), dtype=torch.float64), atol=1e-12)
    assert L.length_regulariser(torch.tensor([0.1, 0.3, 0.2, 0.2]), 0.2) < 1e-7
    assert L.length_regulariser(torch.tensor([0.125, 0.375]), 0.25) == 0  # exact in binary


@st.composite
def dpp_cases(draw):
    n, d = draw(st.integers(1, 12)), draw(st.integers(1, 16))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scores = torch.rand(n, generator=g) * 0.998 + 0.001
    features = torch.randn(n, d, generator=g) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    k = draw(st.integers(1, n))
    subset = torch.randperm(n, generator=g)[:k]
    return scores, features, subset


@given(dpp_cases())
def test_dpp_probability_in_unit_interval(case):
    scores, features, subset = case
    log_p = L.dpp_log_probability(scores, features, subset)  # rank-deficient subsets included (d < k)
    assert torch.isfinite(log_p) and log_p <= 0  # P = exp(log P) in (0, 1]
    assert L.dpp_loss(scores, features, SIGMA) >= 0


@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_dpp_is_a_distribution_over_subsets(n, seed):
    """Eq. 7 is an L-ensemble: sum over all subsets S of det(D_S) / det(D + I) is 1 (the empty set's det is 1)."""
    g = torch.Generator().manual_seed(seed)
    scores, features = torch.rand(n, generator=g) * 0.9 + 0.05, torch.randn(n, n + 2, generator=g)
    total = 1.0 / torch.linalg.det(torch.outer(scores, scores).double() * (features @ features.T).double()
                                   + torch.eye(n, dtype=torch.float64))
    for k in range(1, n + 1):
        for sub in itertools.combinations(range(n), k):
            total += torch.exp(L.dpp_log_probability(scores.double(), features, torch.tensor(sub), eps=0.0))
    assert torch.isclose(total, torch.tensor(1.0, dtype=torch.float64), atol=1e-6)


def test_dpp_subset_is_sigma_n_top_scores():
    s = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.05, 0.7, 0.6, 0.4, 0.5])
    assert L.dpp_subset(s, 0.2).tolist() == [1, 3]
    assert L.dpp_subset(s[:2], 0.2).tolist() == [1]  # at least one


# --- Eqs. 2-4: GAN and reconstruction terms -------------------------------------------------------------


@given(st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_gan_terms_signs_and_fixed_points(n, seed):
    g = torch.Generator().manual_seed(seed)
    real, fake = torch.randn(n, generator=g) * 3, torch.randn(n, generator=g) * 3
    assert L.gan_value(real, fake) <= 0 and L.discriminator_loss(real, fake) >= 0
    # the generator's two forms agree where D is undecided (D = 1/2: both log 1/2 in magnitude)
    zero = torch.zeros(n)
    assert torch.isclose(L.generator_loss(zero, "minimax"), -L.generator_loss(zero, "nonsaturating"))
    # both decrease as the fakes look more real to D
    for form in L.GAN_FORMS:
        assert L.generator_loss(fake + 1.0, form) < L.generator_loss(fake, form)


@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_feature_matching_recon_nonnegative_zero_on_identical(n, h, seed):
    a = torch.randn(n, h, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(L.feature_matching_recon(a, a), torch.zeros(n))
    assert (L.feature_matching_recon(a, a + 0.1) > 0).all()


# --- networks -------------------------------------------------------------------------------------------


@given(st.integers(1, 20), st.integers(1, 24), st.sampled_from([0.1, 1.0, 2.0]), st.integers(0, 2**31 - 1))
def test_discriminator_and_scorenet_outputs_in_open_unit_interval(n, d, scale, seed):
    """On standardised-scale inputs (a float32 sigmoid rounds to 1 beyond logits of about 17; the losses use
    logits, so that rounding never reaches a log)."""
    torch.manual_seed(seed)
    x = torch.randn(n, d) * scale
    for net in (Discriminator(d, 16), ScoreNet(d, 16, 0.4).eval(), ScoreNet(d, 16, 0.4)):
        p = net(x)
        assert p.shape == (n,) and ((p > 0) & (p < 1)).all()


def test_architectures_follow_the_paper():
    linears = lambda m: [x for x in m.modules() if isinstance(x, nn.Linear)]  # noqa: E731
    drops = lambda m: [x.p for x in m.modules() if isinstance(x, nn.Dropout)]  # noqa: E731
    s, v, dis = ScoreNet(128), FeatureVAE(128), Discriminator(128)
    assert len(linears(s)) == 5 and len(linears(dis)) == 5  # 5-layer MLPs (Sec. 3.1)
    assert len(linears(v.encoder)) == 7 and len(linears(v.decoder)) == 7  # 7-layer encoder and decoder
    assert set(drops(v)) == {0.4} and set(drops(s)) == {0.4} and drops(dis) == []  # dropout 0.4; none in D
    assert linears(s)[-1].out_features == 1 and linears(v.decoder)[-1].out_features == 128


def test_standardiser_running_statistics():
    norm = FeatureStandardiser(3)
    x = torch.randn(50, 3) * 4 + 2
    norm.update(x)
    z = norm(x)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5) and torch.allclose(z.std(0, unbiased=False),
                                                                                   torch.ones(3), atol=1e-4)
    ema = FeatureStandardiser(3)
    ema.update(x, momentum=0.1)  # the first update sets the statistics
    assert torch.allclose(ema.mean, norm.mean)
    ema.update(x + 10, momentum=0.1)
    assert torch.allclose(ema.mean, norm.mean + 1.0, atol=1e-5)


def test_representativeness_terms_train_any_selector():
    """LL + RD (Fig. 5): another selector's scores trained through rDis alone (alg1_losses with udis=None)."""
    torch.manual_seed(0)
    d = 8
    selector, vae, rdis = nn.Sequential(nn.Linear(d, 1), nn.Sigmoid()), FeatureVAE(d, 16, 4), Discriminator(d, 16)
    x_u, x_l = torch.randn(32, d), torch.randn(16, d)
    scores = selector(x_u).squeeze(-1)
    terms = representativeness_terms(scores, x_u, vae, rdis)
    assert terms.recon.shape == terms.prior.shape == (32,)
    out = alg1_losses(scores, x_l, x_u, vae, None, rdis)
    before = [p.clone() for p in selector.parameters()]
    adam = lambda ps: torch.optim.Adam(ps, lr=1e-2)  # noqa: E731
    alg1_update(out, adam([*selector.parameters(), *vae.encoder.parameters()]), adam(vae.decoder.parameters()),
                adam(rdis.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before, selector.parameters()))
    with pytest.raises(ValueError, match="at least one discriminator"):
        alg1_losses(scores, x_l, x_u, vae, None, None)


def test_alg1_routes_each_loss_to_its_networks():
    """Lines 14-16 from one forward pass: {w_s, w_e} step on L_recon + L_prior + L_sparsity (no GAN term),
    {w_d} on L_recon + L_GAN, {w_u, w_r} on -L_GAN, each gradient taken at the same forward."""
    torch.manual_seed(0)
    d = 6
    s_net, vae, ud, rd = ScoreNet(d, 8), FeatureVAE(d, 8, 3), Discriminator(d, 8), Discriminator(d, 8)
    x_l, x_u = torch.randn(10, d), torch.randn(12, d)
    out = alg1_losses(s_net(x_u), x_l, x_u, vae, ud, rd)
    assert torch.isclose(out.rater.detach(), out.recon + out.prior + out.length + out.dpp)
    groups = [[*s_net.parameters(), *vae.encoder.parameters()], list(vae.decoder.parameters()),
              [*ud.parameters(), *rd.parameters()]]
    expected = []
    for params, loss in zip(groups, (out.rater, out.decoder, out.discriminators)):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        expected.append([p.detach() - 0.1 * (0 if g is None else g) for p, g in zip(params, grads)])
    alg1_update(out, *(torch.optim.SGD(params, lr=0.1) for params in groups))
    for params, want in zip(groups, expected):
        assert all(torch.allclose(p, w) for p, w in zip(params, want))


# --- training and query ---------------------------------------------------------------------------------

RECIPE = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2, augment=("flip",))
QUICK = {"hidden": 32, "latent": 8, "batch_size": 64, "epochs": 40}


def train(seed=0, pool_size=300, n_labeled=100, **opts):
    data = load_dataset("synthetic-cifar10", train_size=pool_size, test_size=10)
    spec = data.spec
    strategy = build_strategy("daal", STRATEGIES["daal"].Options(**{**QUICK, **opts}))
    torch.manual_seed(0)
    model = build_model("resnet18", spec.num_classes, spec.channels, (spec.height, spec.width), width=0.0625)
    pool = ActivePool.initial("synthetic-cifar10", pool_size, n_labeled, seed)
    hook = strategy.training_hook()
    torch.manual_seed(seed)
    state = nn.ModuleDict(hook.build_modules(model, spec))
    initial = copy.deepcopy(state)
    fit(model, data, pool.labeled, RECIPE, seed, hook=hook, unlabeled=pool.unlabeled, state=state)
    ctx = QueryContext(model, data, pool, Augmenter((), spec.mean, spec.std, "cpu"), RECIPE, seed, 0, state=state)
    return strategy, hook, ctx, initial


@pytest.fixture(scope="module")
def trained():
    return train()


def pool_features(ctx):
    norm = ctx.state["standardiser"]
    get = lambda idx: norm(predict(ctx.model, ctx.data.train_x, idx, ctx.augmenter, bf16=False)[1])  # noqa: E731
    return get(ctx.pool.labeled), get(ctx.pool.unlabeled)


@torch.no_grad()
def branch_stats(state, vae, x_l, x_u):
    """uDis's balanced accuracy on x_l vs x_hat_u, the Eq. 3 reconstruction in `state`'s discriminator
    feature spaces with the given VAE (eval mode, fixed noise), and the ScoreNet's mean score."""
    for m in (*state.values(), vae):
        m.eval()
    s = state["scorenet"](x_u)
    torch.manual_seed(123)
    x_hat = vae((1 - s)[:, None] * x_u)[0]
    x_tilde = vae(s[:, None] * x_u)[0]
    ud, rd = state["udis"], state["rdis"]
    acc = 0.5 * ((ud(x_l) > 0.5).float().mean() + (ud(x_hat) <= 0.5).float().mean())
    recon = sum(L.feature_matching_recon(d.hidden_and_logit(x_u)[0], d.hidden_and_logit(r)[0]).mean()
                for d, r in ((ud, x_hat), (rd, x_tilde)))
    return float(acc), float(recon), float(s.mean())


def test_adversarial_training_behaves_as_described(trained):
    strategy, hook, ctx, initial = trained
    x_l, x_u = pool_features(ctx)
    acc, _, mean_score = branch_stats(ctx.state, ctx.state["vae"], x_l, x_u)
    acc0, recon_untrained, mean_score0 = branch_stats(initial, initial["vae"], x_l, x_u)
    # the reconstruction loss's own feature space moves as the discriminators learn, so compare the VAEs in
    # one fixed space: the discriminators' last hidden layers at initialisation
    _, recon_trained, _ = branch_stats(initial, ctx.state["vae"], x_l, x_u)
    assert acc > 0.6 and acc > acc0  # uDis separates labeled from reconstructed unlabeled better than chance
    assert recon_trained < recon_untrained  # the VAE learned to reconstruct x_u from its weighted inputs
    assert abs(mean_score - SIGMA) < abs(mean_score0 - SIGMA)  # L_LR pulls the mean score towards sigma
    assert len(hook.trace) == QUICK["epochs"] and hook.trace[-1]["length"] < hook.trace[0]["length"]
    assert hook.trace[-1]["discriminators"] < hook.trace[0]["discriminators"]  # both discriminators learn


def test_query_is_topk_of_scorenet(trained):
    strategy, hook, ctx, _ = trained
    picked = strategy.query(ctx, 25)
    unl = ctx.pool.unlabeled
    with torch.no_grad():
        net = ctx.state["scorenet"].eval()
        logits = net.logit(pool_features(ctx)[1])
    expected = unl[torch.sort(logits, descending=True, stable=True).indices[:25].numpy()]
    assert np.array_equal(picked, expected)
    assert not set(picked.tolist()) & set(ctx.pool.labeled.tolist())


@pytest.mark.parametrize("which,absent", [("udis", "rdis"), ("rdis", "udis")])
def test_single_discriminator_ablations(which, absent):
    strategy, hook, ctx, _ = train(pool_size=120, n_labeled=40, discriminators=which, epochs=3)
    assert which in ctx.state and absent not in ctx.state
    assert len(set(strategy.query(ctx, 10).tolist())) == 10
    assert float(hook.trace[-1][f"{absent}_accuracy"]) == 0.0


def test_joint_schedule_trains_beside_the_task_model():
    strategy, hook, ctx, _ = train(pool_size=120, n_labeled=40, schedule="joint", standardise=True)
    assert len(hook.trace) == RECIPE.epochs and int(ctx.state["standardiser"].seen) > 0
    assert len(set(strategy.query(ctx, 10).tolist())) == 10


def test_daal_runs_depend_on_its_code_and_it_declares_its_capabilities():
    cls = STRATEGIES["daal"]
    assert {"al/strategies/daal.py", "models/nets/daal.py", "al/losses/daal.py"} <= set(run_code("daal"))
    assert cls.pointwise and cls().training_hook().uses_unlabeled
