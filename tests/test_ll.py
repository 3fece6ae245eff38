"""Learning Loss (LL4AL, Yoo & Kweon 2019): the loss-prediction module's size, the ranking loss (LL4AL Sec. 3.3
Eq. 2, `repro.al.losses.ll`), the feature detach after 60% of the epochs, a short training run in which the
predicted loss ranks the true loss, and the DAAL Fig. 5 "LL + Core-set" preselection."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from repro.al.losses.ll import learning_loss_objective, loss_prediction_loss, mirrored_pairs
from repro.al.selection import kcenter_greedy
from repro.al.strategies import BudgetError, QueryContext, build_strategy
from repro.al.strategies.ll import LLHook, LLOptions, LossPredictionModule, detach_epoch, predicted_losses
from repro.core.train import TrainContext, fit, make_augmenter
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model, count_parameters
from repro.spec.datasets import get_spec
from repro.spec.recipe import Recipe

# ---------------------------------------------------------------- the module


def test_module_parameters_resnet18_width1():
    spec = get_spec("cifar10")
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32))
    module = build_strategy("ll").method_modules(model, spec)["loss_module"]
    # REFERENCE.md section 4: 8,320 + 16,512 + 32,896 + 65,664 + 513
    assert [count_parameters(fc) for fc in module.fcs] == [8_320, 16_512, 32_896, 65_664]
    assert count_parameters(module.out) == 513
    assert count_parameters(module) == 123_905
    assert count_parameters(model) + count_parameters(module) == 11_297_867


@pytest.mark.parametrize("backbone,dataset", [("vgg16", "synthetic-cifar10"), ("lenet", "synthetic-mnist")])
def test_stageless_backbones_use_the_penultimate_feature(backbone, dataset):
    spec = get_spec(dataset)
    model = build_model(backbone, 10, spec.channels, (spec.height, spec.width), width=0.125)
    model.train()
    bn_before = {k: v.clone() for k, v in model.state_dict().items()}
    module = LLHook(LLOptions()).build_modules(model, spec)["loss_module"]
    # the dry forward pass that infers the widths leaves the task model untouched (eval mode, no grad)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in bn_before.items())
    assert [fc.in_features for fc in module.fcs] == [model.feature_dim]
    assert module([torch.randn(5, model.feature_dim)]).shape == (5,)


def test_module_pools_each_stage_globally():
    module = LossPredictionModule([3, 4])
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 2, 2)
    expect = module([a.mean((2, 3)), b.mean((2, 3))])
    assert torch.allclose(module([a, b]), expect, atol=1e-6)
    with pytest.raises(ValueError, match="stage"):
        module([a])


# ---------------------------------------------------------------- the ranking loss


@st.composite
def batches(draw, min_size=1):
    b = draw(st.integers(min_size, 24))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([0.01, 1.0, 10.0]))
    return torch.randn(b, generator=g) * scale, torch.rand(b, generator=g) * 3


@given(batches(), st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_ranking_loss_nonnegative(batch, margin):
    pred, target = batch
    assert float(loss_prediction_loss(pred, target, margin)) >= 0.0


@given(st.integers(1, 12), st.integers(0, 3), st.integers(0, 2**31 - 1), st.booleans(), st.booleans())
def test_ranking_loss_zero_iff_every_pair_ordered_by_margin(half, margin, seed, odd, misorder):
    """Integer-valued losses: exact arithmetic. Pair (i, B-1-i) with A = +1 if l_i > l_j else -1 (Eq. 2)."""
    rng = np.random.default_rng(seed)
    b = 2 * half + int(odd)
    target = torch.tensor(rng.permutation(b), dtype=torch.float32)  # distinct true losses
    pred = torch.tensor(rng.integers(-50, 50, size=b), dtype=torch.float32)
    for i in range(half):
        j = b - 1 - i
        a = 1.0 if target[i] > target[j] else -1.0
        pred[i] = pred[j] + a * (margin + int(rng.integers(0, 4)))  # A (l^_i - l^_j) >= xi
    assert float(loss_prediction_loss(pred, target, float(margin))) == 0.0
    if misorder:  # one pair ordered against its true losses: that pair alone costs at least (xi + 1) / (B/2)
        k = int(rng.integers(0, half))
        a = 1.0 if target[k] > target[b - 1 - k] else -1.0
        pred[k] = pred[b - 1 - k] - a * (1 + int(rng.integers(0, 4)))
        assert float(loss_prediction_loss(pred, target, float(margin))) >= (margin + 1) / half - 1e-6


def test_ranking_loss_pairs_mirrored_halves_ties_count_as_minus_one():
    assert torch.equal(mirrored_pairs(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])), torch.tensor([-4.0, -2.0]))
    pred = torch.tensor([0.0, 0.0, 0.0, 0.0])
    # pairs (0, 3): l_0 > l_3 -> A = +1; (1, 2): tie -> A = -1 (paper's "otherwise"); both cost xi at equal preds
    assert float(loss_prediction_loss(pred, torch.tensor([2.0, 1.0, 1.0, 0.0]), 1.0)) == pytest.approx(1.0)
    pred = torch.tensor([3.0, 0.0, 5.0, 0.0])  # (0,3): A(3 - 0) = 3 >= 1 -> 0; (1,2): -1 * (0 - 5) = 5 -> 0
    assert float(loss_prediction_loss(pred, torch.tensor([2.0, 1.0, 1.0, 0.0]), 1.0)) == 0.0
    pred = torch.tensor([0.5], requires_grad=True)  # one example: no pair, zero loss, still differentiable
    out = loss_prediction_loss(pred, torch.tensor([1.0]))
    out.backward()
    assert float(out.detach()) == 0.0 and pred.grad is not None


def test_ranking_loss_does_not_train_the_target_loss():
    pred = torch.randn(8, requires_grad=True)
    target = torch.rand(8, requires_grad=True)
    total, rank = learning_loss_objective(target, pred, margin=1.0, weight=3.0)
    rank.backward()
    assert target.grad is None and pred.grad is not None
    assert torch.allclose(total, target.mean() + 3.0 * rank)


# ---------------------------------------------------------------- training


def _train_context(model, module, recipe, data):
    device = data.train_x.device
    ctx = TrainContext(model, recipe, make_augmenter(data, recipe, device), torch.Generator().manual_seed(0), device,
                       data, torch.nn.ModuleDict({"loss_module": module}))
    return ctx


def test_detach_epoch_follows_the_reference():
    assert detach_epoch(0.6, 200) == 120  # features detached from epoch 121 on (`epoch > epoch_loss`)
    assert detach_epoch(1.0, 200) == 200  # never


def _backbone_grads(hook, ctx, x, y):
    ctx.model.zero_grad(set_to_none=True)
    hook.module.zero_grad(set_to_none=True)
    total, _ = hook.objective(ctx, x, y)
    total.backward()
    trunk = {n: p.grad.clone() for n, p in ctx.model.named_parameters() if not n.startswith("head")}
    module = [p.grad for p in hook.module.parameters()]
    return trunk, module


def test_backbone_gets_no_gradient_from_the_ranking_term_after_detach():
    data = load_dataset("synthetic-cifar10", train_size=16, test_size=4)
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=10)
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    model.train()
    module = LLHook(LLOptions()).build_modules(model, data.spec)["loss_module"]
    ctx = _train_context(model, module, recipe, data)
    x, y = ctx.prepare(data.train_x, train=False), data.train_y
    hooks = {w: LLHook(LLOptions(weight=w)) for w in (0.0, 1.0)}
    for h in hooks.values():
        h.setup(ctx)
    for epoch, detached in ((6, False), (7, True)):  # 0.6 * 10 = 6: detached in epochs > 6
        ctx.epoch = epoch
        assert hooks[1.0].detached(ctx) is detached
        g0, _ = _backbone_grads(hooks[0.0], ctx, x, y)
        g1, m1 = _backbone_grads(hooks[1.0], ctx, x, y)
        same = all(torch.allclose(g0[n], g1[n], atol=1e-7) for n in g0)
        assert same is detached, epoch  # before: the module shapes the backbone; after: it does not
        # the module trains either way (its output bias cancels in every pair difference: zero gradient)
        assert all(g is not None for g in m1) and sum(float(g.abs().sum()) for g in m1) > 0


def test_training_step_steps_both_optimizers():
    data = load_dataset("synthetic-cifar10", train_size=16, test_size=4)
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=16, epochs=2)
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    hook = LLHook(LLOptions())
    ctx = _train_context(model, hook.build_modules(model, data.spec)["loss_module"], recipe, data)
    hook.setup(ctx)
    assert len(ctx.optimizers) == 2 and all(so.schedule == "recipe" for so in ctx.optimizers)
    before = [p.detach().clone() for p in (*model.parameters(), *hook.module.parameters())]
    hook.training_step(ctx, ctx.prepare(data.train_x), data.train_y)
    after = [*model.parameters(), *hook.module.parameters()]
    n_model = len(list(model.parameters()))
    assert any(not torch.equal(b, a) for b, a in zip(before[:n_model], after[:n_model]))
    assert all(not torch.equal(b, a) for b, a in zip(before[n_model:], after[n_model:]))  # weight decay moves
    # even the output bias, whose ranking-loss gradient is zero


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = (v.argsort().argsort().double() for v in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def test_predicted_loss_ranks_the_true_loss_after_short_training():
    data = load_dataset("synthetic-cifar10", train_size=160, test_size=10)
    recipe = Recipe(optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=16, epochs=12)
    pool = ActivePool.initial("synthetic-cifar10", 160, 160, 1)
    torch.manual_seed(1)
    model = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    hook = build_strategy("ll").training_hook()
    trained = fit(model, data, pool.labeled, recipe, 1, hook=hook)
    ctx = QueryContext(model, data, pool, Augmenter((), data.spec.mean, data.spec.std, "cpu"), recipe, 1, 0,
                       state=trained.state)
    pred = predicted_losses(ctx, pool.labeled)
    logits, _ = ctx.predict(pool.labeled)
    true = F.cross_entropy(logits, data.train_y[torch.as_tensor(pool.labeled)], reduction="none")
    rho = _spearman(pred, true)
    trace = [float(t) for t in hook.rank_trace]
    assert rho > 0.3, (rho, trace)
    assert np.mean(trace[-3:]) < np.mean(trace[:3]), trace


# ---------------------------------------------------------------- query


def _trained(options: LLOptions, pool_size=90, n_labeled=30):
    data = load_dataset("synthetic-mnist", train_size=pool_size, test_size=10)
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=2)
    strategy = build_strategy("ll", options)
    torch.manual_seed(0)
    model = build_model("lenet", 10, 1, (28, 28), width=0.25)
    pool = ActivePool.initial("synthetic-mnist", pool_size, n_labeled, 0)
    trained = fit(model, data, pool.labeled, recipe, 0, hook=strategy.training_hook())
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    return strategy, QueryContext(model, data, pool, aug, recipe, 0, 0, state=trained.state)


def test_query_is_topk_predicted_loss_and_needs_the_module():
    strategy, ctx = _trained(LLOptions())
    unl = ctx.pool.unlabeled
    scores = predicted_losses(ctx, unl)
    picked = strategy.query(ctx, 7)
    assert set(picked.tolist()) == set(unl[scores.argsort(descending=True)[:7].numpy()].tolist())
    with pytest.raises(RuntimeError, match="loss_module"):
        strategy.score(QueryContext(ctx.model, ctx.data, ctx.pool, ctx.augmenter, ctx.recipe, 0, 0), unl)


def test_coreset_preselection_then_top_loss():
    strategy, ctx = _trained(LLOptions(preselect="coreset", subset=None))
    budget = 5
    pre = strategy.candidates(ctx, budget)
    # independent k-center on [labeled; unlabeled] penultimate features, 2 x budget centers
    idx = np.concatenate([ctx.pool.labeled, ctx.pool.unlabeled])
    _, feats = ctx.predict(idx)
    mask = torch.zeros(len(idx), dtype=torch.bool)
    mask[: len(ctx.pool.labeled)] = True
    assert np.array_equal(pre, np.sort(idx[kcenter_greedy(feats, mask, 2 * budget).numpy()]))
    picked = strategy.query(ctx, budget)
    assert set(picked.tolist()) <= set(pre.tolist())
    scores = predicted_losses(ctx, pre)
    assert set(picked.tolist()) == set(pre[scores.argsort(descending=True)[:budget].numpy()].tolist())
    with pytest.raises(BudgetError, match="preselect_size"):
        build_strategy("ll", LLOptions(preselect="coreset", preselect_size=3)).query(ctx, budget)
