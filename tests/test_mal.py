"""MAL (Ebrahimi et al., "Minimax Active Learning"): parameter counts of the supplementary's configurations,
properties of its losses (Eqs. 1-3) and sampling rule (Alg. 2), the CIFAR-100-imbalanced builder (Sec. 4.1),
and short training runs in which the minimax game and the discriminator behave as the paper describes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from repro.al import scores
from repro.al.losses import mal as mal_losses
from repro.al.strategies import QueryContext, build_strategy
from repro.al.strategies.mal import MALOptions
from repro.core.train import TrainContext, fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.imbalance import MAL_RATIOS, class_ratios, imbalanced_indices, kept_per_class
from repro.data.pool import ActivePool
from repro.models import build_model, count_parameters
from repro.models.nets import mal as mal_nets
from repro.models.nets.mal import CosineClassifier, Discriminator, Encoder, load_trunk, paper_modules
from repro.spec.recipe import Recipe
from repro.spec.schema import ConfigError, build

# --- parameter counts (supp. Sec. B; REFERENCE.md section 7) ----------------------------------------------

@pytest.mark.parametrize("arch,counts", [
    ("resnet18", {"F": 11_176_512, "C": 156_928, "D": 525_825, "T": 11_227_812}),
    ("vgg16", {"F": 14_723_136, "C": 12_896_768, "D": 13_108_737, "T": 17_232_036}),
])
def test_paper_parameter_counts(arch, counts):
    modules = paper_modules(arch, 100, device="meta")
    assert {k: count_parameters(m) for k, m in modules.items()} == counts


def test_paper_modules_run_on_cifar_images():
    modules = paper_modules("resnet18", 100)
    f = modules["F"](torch.zeros(2, 3, 32, 32))
    assert f.shape == (2, 512) and modules["C"](f).shape == (2, 100) and modules["D"](f).shape == (2,)
    assert modules["T"](torch.zeros(2, 3, 32, 32)).shape == (2, 100)


# --- Eqs. 1-3 ------------------------------------------------------------------------------------------------

def _randn(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 8), st.floats(0.0, 10.0))
def test_grad_reverse_is_identity_forward_and_minus_coeff_grad_backward(seed, n, d, coeff):
    x = _randn(seed, n, d).requires_grad_()
    w = _randn(seed + 1, n, d)
    y = mal_nets.grad_reverse(x, coeff)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -coeff * w)


@given(st.integers(0, 2**31 - 1), st.floats(1e-3, 1e3), st.sampled_from([None, 0, 5]), st.sampled_from([0.05, 1.0]))
def test_cosine_logits_invariant_to_positive_feature_scaling(seed, scale, hidden, temperature):
    f = _randn(seed, 5, 12)
    torch.manual_seed(seed)
    c = CosineClassifier(12, 7, hidden, temperature)
    a, b = c(f), c(scale * f)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 / temperature)
    w = _randn(seed + 1, 7, 12)
    assert torch.allclose(mal_nets.cosine_logits(f, w, temperature), mal_nets.cosine_logits(scale * f, w, temperature),
                          rtol=1e-4, atol=1e-4 / temperature)


def test_cosine_logits_are_cosines_over_temperature():
    f, w = _randn(0, 4, 6), _randn(1, 3, 6)
    w = w / w.norm(dim=1, keepdim=True)
    z = mal_nets.cosine_logits(f, w, 0.05)
    assert (z.abs() <= 1 / 0.05 + 1e-4).all()
    assert torch.allclose(z * 0.05, torch.nn.functional.cosine_similarity(f[:, None], w[None], dim=-1), atol=1e-6)


@given(st.integers(0, 2**31 - 1), st.integers(1, 40), st.floats(1e-3, 1e3))
def test_discriminator_outputs_probabilities(seed, d, scale):
    torch.manual_seed(seed)
    p = Discriminator(d).labeledness(scale * _randn(seed, 9, d))
    assert p.shape == (9,) and ((p > 0) & (p < 1)).all()


@given(st.integers(0, 2**31 - 1), st.floats(0.0, 2.0))
def test_minimax_entropy_loss_is_minus_weighted_entropy(seed, weight):
    logits = _randn(seed, 6, 5) * 3
    expected = -weight * scores.entropy(torch.softmax(logits, -1)).mean()
    assert torch.allclose(mal_losses.minimax_entropy_loss(logits, weight), expected, atol=1e-5)


@given(st.integers(0, 2**31 - 1))
def test_labeledness_loss_is_eq3(seed):
    zl, zu = _randn(seed, 5) * 4, _randn(seed + 1, 7) * 4
    # -E log D(x_L) - E log(1 - D(x_U)), with log(1 - sigmoid(z)) = logsigmoid(-z)
    expected = -torch.nn.functional.logsigmoid(zl).mean() - torch.nn.functional.logsigmoid(-zu).mean()
    loss = mal_losses.labeledness_loss(zl, zu)
    assert loss >= 0 and torch.allclose(loss, expected, atol=1e-4)
    # a discriminator that is right and confident pays almost nothing
    assert mal_losses.labeledness_loss(torch.full((3,), 30.0), torch.full((4,), -30.0)) < 1e-6


# --- Alg. 2 ----------------------------------------------------------------------------------------------------

def brute_force_selection(ent, lab, b, selection):
    """Alg. 2 as written in the docstring: grow m until the top-m of both rankings share b candidates; at the
    last m, the newcomers go by rank sum, then position."""
    n = len(ent)
    by_h = sorted(range(n), key=lambda i: (-ent[i], i))
    by_d = sorted(range(n), key=lambda i: (lab[i], i)) if lab is not None else None
    if selection == "uncertainty":
        return by_h[:b]
    if selection == "diversity":
        return by_d[:b]
    chosen: list[int] = []
    m = 0
    while len(chosen) < b:
        m += 1
        new = [i for i in set(by_h[:m]) & set(by_d[:m]) if i not in chosen]
        chosen += sorted(new, key=lambda i: (by_h.index(i) + by_d.index(i), i))
    return chosen[:b]


@st.composite
def selection_cases(draw):
    n = draw(st.integers(1, 30))
    levels = draw(st.sampled_from([2, 5, 10_000]))  # few levels: many exact ties
    ent = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
    lab = draw(st.lists(st.integers(-levels, levels), min_size=n, max_size=n))
    return ent, lab, draw(st.integers(0, n)), draw(st.sampled_from(mal_losses.SELECTIONS))


@given(selection_cases())
def test_selection_matches_brute_force_rule(case):
    ent, lab, b, selection = case
    got = mal_losses.mal_selection(torch.tensor(ent, dtype=torch.float32) / 7, torch.tensor(lab, dtype=torch.float32),
                                   b, selection).tolist()
    assert got == brute_force_selection(ent, lab, b, selection)
    assert len(set(got)) == b


def test_selection_both_conditions_example():
    # entropy ranks: 3, 1, 0, 2, 4 ; labeledness ranks (ascending): 0, 2, 3, 1, 4
    ent = torch.tensor([0.5, 0.8, 0.9, 0.7, 0.1])
    lab = torch.tensor([-3.0, 1.0, 2.0, 0.0, 5.0])
    # m=2: top-H {2, 1}, top-D {0, 3}: none; m=3: {2,1,3} & {0,3,1} = {1, 3} (sums 3, 3 -> position) ...
    assert mal_losses.mal_selection(ent, lab, 2).tolist() == [1, 3]
    assert mal_losses.mal_selection(ent, lab, 3).tolist() == [1, 3, 0]  # m=4 adds 0 (sum 3) and 2 (sum 3): 0 first
    assert mal_losses.mal_selection(ent, None, 2, "uncertainty").tolist() == [2, 1]
    assert mal_losses.mal_selection(ent, lab, 2, "diversity").tolist() == [0, 3]


# --- CIFAR-100-imbalanced (Sec. 4.1) ------------------------------------------------------------------------

def test_cifar100_imbalanced_profile():
    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(100), 500))
    idx = imbalanced_indices(labels, seed=0)
    counts = np.bincount(labels[idx], minlength=100)
    assert sorted(counts.tolist()) == sorted([5] * 20 + [16] * 20 + [50] * 20 + [158] * 20 + [500] * 20)
    assert counts.min() >= 5 and counts.max() / counts.min() == 100
    ratios = class_ratios(labels, seed=0)
    assert all(counts[c] == kept_per_class(500, r) for c, r in ratios.items())
    assert sorted(ratios.values()) == sorted(r for r in MAL_RATIOS for _ in range(20))
    assert np.array_equal(idx, imbalanced_indices(labels, seed=0))
    assert not np.array_equal(idx, imbalanced_indices(labels, seed=1))


@given(st.integers(0, 2**31 - 1), st.lists(st.integers(1, 60), min_size=4, max_size=4),
       st.lists(st.floats(1e-3, 1.0), min_size=2, max_size=2), st.integers(0, 8))
def test_imbalanced_indices_honour_ratios_and_minimum(seed, sizes, ratios, min_per_class):
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(4), sizes))
    idx = imbalanced_indices(labels, seed, tuple(ratios), classes_per_ratio=2, min_per_class=min_per_class)
    assert idx.dtype == np.int64 and np.array_equal(idx, np.unique(idx))
    counts = np.bincount(labels[idx], minlength=4)
    for c, r in class_ratios(labels, seed, tuple(ratios), classes_per_ratio=2).items():
        expected = min(sizes[c], max(min_per_class, int(np.floor(r * sizes[c] + 0.5))))
        assert counts[c] == expected and counts[c] >= min(min_per_class, sizes[c])
    assert np.array_equal(idx, imbalanced_indices(labels, seed, tuple(ratios), 2, min_per_class))


def test_imbalanced_indices_need_classes_for_every_ratio():
    with pytest.raises(ValueError, match="ratios"):
        imbalanced_indices(np.repeat(np.arange(10), 5), 0)


# --- options, hook, training ------------------------------------------------------------------------------------

RECIPE = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=2, augment=("flip",))


def test_ablation_without_discriminator_needs_entropy_selection():
    with pytest.raises(ConfigError, match="selection"):
        build(MALOptions, {"discriminator": False}, "variants.mal-no-d")
    assert build(MALOptions, {"discriminator": False, "selection": "uncertainty"}, "x").discriminator is False


def _context(model, data, state, recipe=RECIPE):
    aug = Augmenter(recipe.augment, data.spec.mean, data.spec.std, "cpu")
    return TrainContext(model, recipe, aug, torch.Generator().manual_seed(0), torch.device("cpu"), data, state)


def test_minimax_step_raises_entropy_for_c_and_lowers_it_for_f():
    """Eq. 2 through the GRL: one descent step on L_Ent moves C towards higher entropy on the unlabeled batch
    and F towards lower entropy."""
    data = load_dataset("synthetic-cifar10", train_size=32, test_size=4)
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    hook = build_strategy("mal").training_hook()
    state = torch.nn.ModuleDict(hook.build_modules(model, data.spec))
    ctx = _context(model, data, state)
    hook.setup(ctx)
    xu = ctx.prepare(data.train_x[:32], train=False)

    def entropy():
        with torch.no_grad():
            return float(scores.entropy(torch.softmax(hook.cls(hook.enc.embed(xu)), -1)).mean())

    for player in (hook.cls, hook.enc):
        before = entropy()
        params = list(player.parameters())
        saved = [p.detach().clone() for p in params]
        loss, _, _ = hook.minimax_entropy(ctx, xu)
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 1e-3 * g / norm
        after = entropy()
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        assert after > before if player is hook.cls else after < before


@pytest.fixture(scope="module")
def trained_mal():
    """A short MAL run: 15 epochs of Alg. 1, one of Alg. 3, resnet18 at width 1/16 on synthetic CIFAR-10."""
    data = load_dataset("synthetic-cifar10", train_size=120, test_size=10)
    strategy = build_strategy("mal", MALOptions(lr=2e-3, mal_share=0.95))
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    pool = ActivePool.initial("x", 120, 40, 0)
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=16, augment=("flip",))
    hook = strategy.training_hook()
    result = fit(model, data, pool.labeled, recipe, 0, hook=hook, unlabeled=pool.unlabeled)
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    return strategy, hook, QueryContext(model, data, pool, aug, recipe, 0, 0, state=result.state)


def test_discriminator_separates_labeled_from_unlabeled(trained_mal):
    strategy, hook, ctx = trained_mal
    assert len(hook.discriminator_trace) == 15  # one value per Alg. 1 epoch
    assert float(hook.discriminator_trace[-1]) < float(hook.discriminator_trace[0])
    ent_l, lab_l = strategy.scores(ctx, ctx.pool.labeled)
    ent_u, lab_u = strategy.scores(ctx, ctx.pool.unlabeled)
    auc = float((lab_l[:, None] > lab_u[None, :]).float().mean())
    assert auc > 0.6  # better than chance (0.5)
    assert ent_l.mean() < ent_u.mean()  # C learned the labeled data; unlabeled stay nearer all prototypes


def test_query_follows_the_rule_on_trained_modules(trained_mal):
    strategy, _, ctx = trained_mal
    picked = strategy.query(ctx, 10)
    ent, lab = strategy.scores(ctx, ctx.pool.unlabeled)
    expected = brute_force_selection(ent.tolist(), lab.tolist(), 10, "both")
    assert picked.tolist() == ctx.pool.unlabeled[expected].tolist()


def test_task_model_starts_from_f():
    """Alg. 3 line 1: at the task phase the task model's trunk is F's (checked with a vanishing task rate)."""
    data = load_dataset("synthetic-mnist", train_size=60, test_size=4)
    torch.manual_seed(0)
    model = build_model("lenet", 10, 1, (28, 28), width=0.25)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    pool = ActivePool.initial("x", 60, 20, 0)
    recipe = Recipe(optimizer="sgd", lr=1e-12, batch_size=16, epochs=2)
    hook = build_strategy("mal").training_hook()
    state = fit(model, data, pool.labeled, recipe, 0, hook=hook, unlabeled=pool.unlabeled).state
    assert hook.mal_epochs == 1 and hook.epoch_phases(0) == ("mal",) and hook.epoch_phases(1) == ("task",)
    enc = dict(state["encoder"].body.named_parameters())
    for name, p in model.named_parameters():
        if name.startswith("head."):
            assert name not in enc and torch.allclose(p, init[name])
        else:
            assert torch.allclose(p, enc[name], atol=1e-6) and not torch.allclose(p, init[name])


def test_load_trunk_copies_weights_and_statistics_not_the_head():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    torch.manual_seed(1)
    enc = Encoder(build_model("resnet18", 10, 3, (32, 32), width=0.0625))
    with torch.no_grad():
        enc.body.stem[1].running_mean.add_(1.0)
    head = model.head[-1].weight.clone()
    load_trunk(model, enc)
    body = enc.body.state_dict()
    assert all(torch.equal(v, body[k]) for k, v in model.state_dict().items() if not k.startswith("head."))
    assert torch.equal(model.head[-1].weight, head)


@pytest.mark.parametrize("opts", [
    {"minimax": False}, {"discriminator": False, "selection": "uncertainty"}, {"selection": "uncertainty"},
    {"selection": "diversity"}, {"hidden": 0, "reverse_at": "hidden"}, {"reverse_at": "hidden"}, {"subset": 25},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_ablations_keep_the_query_contract(opts):
    data = load_dataset("synthetic-mnist", train_size=60, test_size=4)
    strategy = build_strategy("mal", MALOptions(**opts))
    torch.manual_seed(0)
    model = build_model("lenet", 10, 1, (28, 28), width=0.25)
    pool = ActivePool.initial("x", 60, 20, 0)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=16, epochs=1)
    hook = strategy.training_hook()
    state = fit(model, data, pool.labeled, recipe, 0, hook=hook, unlabeled=pool.unlabeled).state
    assert ("discriminator" in state) == opts.get("discriminator", True)
    assert hook.epoch_phases(0) == ("mal", "task")
    ctx = QueryContext(model, data, pool, Augmenter((), data.spec.mean, data.spec.std, "cpu"), recipe, 0, 0, state=state)
    a, b = strategy.query(ctx, 9), strategy.query(ctx, 9)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 9 and not set(a.tolist()) & set(pool.labeled.tolist())
    if "subset" in opts:
        assert set(a.tolist()) <= set(strategy.candidates(ctx, 9).tolist())
