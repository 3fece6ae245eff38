"""`ads-code`: ADS's official code (fumengying19/AAAI21-ADS, branch `code`, utils/train_ADS.py) against the
paper's reading `ads` (Alg. 1, Eqs. 4/5/7/8): the loss scale of the agreement / discrepancy terms, the optimiser
of those steps, and the steps an epoch runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from repro.al.methods import load_params, method_spec
from repro.al.strategies.ads import ADSHook, ADSOptions, ADSStrategy, _trunk_params
from repro.core.train import TrainContext, fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec.recipe import Recipe

from .conftest import ROOT


@pytest.fixture(scope="module")
def code_options() -> ADSOptions:
    method, opts = method_spec(load_params(ROOT / "params.yaml", "paper"), "ads-code")
    assert method == "ads"
    return opts


@pytest.fixture(scope="module")
def cifar():
    return load_dataset("synthetic-cifar10", train_size=200, test_size=10)


def _model(opts: ADSOptions, seed: int = 0):
    torch.manual_seed(seed)
    return ADSStrategy(opts).adapt_model(build_model("resnet18", 10, 3, (32, 32), width=0.125))


def _context(model, data, recipe: Recipe) -> TrainContext:
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    return TrainContext(model, recipe, aug, torch.Generator().manual_seed(0), torch.device("cpu"), data)


RECIPE = Recipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=2,
                milestones=(1,), gamma=0.1)


def _phase_loss_grads(opts, model, data, phase: str, n: int):
    """The loss `ADSHook.training_step` hands to `ctx.step` in this phase, on a fixed batch of n unlabeled (and
    n labeled) images, and its gradients (trunk for agreement, heads for discrepancy); the step itself is
    not taken. For discrepancy the labeled BCE term (Eq. 1, unscaled in both readings) is subtracted."""
    ctx = _context(model, data, RECIPE)
    hook = ADSHook(opts)
    hook.setup(ctx)
    xu = ctx.prepare(data.train_x[:n], train=False)
    x, y = ctx.prepare(data.train_x[n:2 * n], train=False), data.train_y[n:2 * n]
    ctx.next_unlabeled = lambda: xu
    ctx.phase = phase
    params = _trunk_params(model) if phase == "agreement" else list(model.head.parameters())
    seen = {}

    def spy(opt, loss, retain_graph=False):
        if phase == "discrepancy":
            with torch.no_grad():
                fl = model.embed(x).float()
            loss = loss - hook._bce(model, fl, y)
        seen["loss"] = loss.detach()
        seen["grads"] = torch.autograd.grad(loss, params, allow_unused=True)
        return loss.detach()

    ctx.step = spy
    hook.training_step(ctx, None if phase == "agreement" else x, None if phase == "agreement" else y)
    return seen["loss"], [g for g in seen["grads"] if g is not None]


@pytest.mark.parametrize("phase", ["agreement", "discrepancy"])
@pytest.mark.parametrize("n", [128, 32])
def test_ads_code_alignment_terms_are_1_over_128_of_the_papers(code_options, cifar, phase, n):
    """train_ADS.py:78-79 / 137-138 scale the calibration weight by (w / 128).detach() and take the batch mean:
    (w / 128) / n per example, i.e. w / n^2 at batch 128 where Eqs. 4 / 7 give w / n. The constant stays 128
    (cfg.TRAIN.BATCH) when a batch is smaller: at n = 32 the ratio is still 1/128, not 1/32."""
    paper = ADSOptions(renormalise=code_options.renormalise, log2=code_options.log2)  # same E(u), paper's scale
    assert code_options != paper
    model = _model(paper)
    loss_p, grads_p = _phase_loss_grads(paper, model, cifar, phase, n)
    loss_c, grads_c = _phase_loss_grads(code_options, model, cifar, phase, n)
    assert grads_p and len(grads_p) == len(grads_c)
    # discrepancy: the unscaled BCE (~7) is subtracted in float32, so the comparison allows its rounding
    assert loss_c.item() == pytest.approx(loss_p.item() / 128, rel=1e-3)
    scale = max(g.abs().max().item() for g in grads_p)
    assert scale > 0
    for gp, gc in zip(grads_p, grads_c, strict=True):
        assert torch.allclose(gc * 128, gp, rtol=1e-3, atol=1e-4 * scale)


def test_ads_code_agreement_loss_is_train_conv_transcribed(code_options, cifar):
    """The `ads-code` agreement loss equals train_ADS.py's train_conv written out (lines 68-79): MyEntLoss (each
    head's scores renormalised, log2), w = 1 - sigmoid(mean entropy - 0.1), torch.mean((w / 128).detach() * L1)."""
    model = _model(code_options)
    loss, _ = _phase_loss_grads(code_options, model, cifar, "agreement", 64)
    ctx = _context(model, cifar, RECIPE)
    with torch.no_grad():
        s1, s2 = (torch.sigmoid(z) for z in model.head.logits(model.embed(ctx.prepare(cifar.train_x[:64], False))))

        def ent(s):
            p = s / s.sum(1, keepdim=True)
            return -(p * torch.log2(p)).sum(1)

        w = 1 - torch.sigmoid((ent(s1) + ent(s2)) / 2 - 0.1)
        ref = torch.mean((w / 128) * torch.mean((s1 - s2).abs(), dim=1))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_ads_code_alignment_steps_use_a_fresh_sgd_every_iteration(code_options, cifar):
    """train_ADS.py:63-66 / 117-120 build a new SGD (lr cfg.TRAIN.LR = 0.1, momentum 0.9, weight decay 5e-4) on
    the trainable subset at every iteration: the momentum buffer starts empty each time, so every update is
    -lr (g + wd p), and the rate is never decayed. Two agreement steps, the second after the recipe's decay."""
    model = _model(code_options)
    ctx = _context(model, cifar, RECIPE)
    hook = ADSHook(code_options)
    hook.setup(ctx)
    ctx.phase = "agreement"
    batches = iter([ctx.prepare(cifar.train_x[i * 16:(i + 1) * 16], train=False) for i in range(2)])
    ctx.next_unlabeled = lambda: next(batches)
    trunk = _trunk_params(model)
    real_step = ctx.step
    for it, recipe_lr in enumerate((0.1, 0.01)):  # 0.01: the recipe's rate after its milestone
        ctx.set_learning_rates(recipe_lr, it, 0, 1)
        before = [p.detach().clone() for p in trunk]
        grads = {}

        def spy(opt, loss, retain_graph=False, grads=grads):
            grads["g"] = torch.autograd.grad(loss, trunk, retain_graph=True, allow_unused=True)
            return real_step(opt, loss, retain_graph)

        ctx.step = spy
        hook.training_step(ctx, None, None)
        for p0, p, g in zip(before, trunk, grads["g"], strict=True):
            expected = p0 - 0.1 * ((g if g is not None else 0) + 5e-4 * p0)
            assert torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-7)


def test_ads_paper_reading_keeps_momentum_and_the_schedule(cifar):
    """The default `ads` keeps its own SGD optimisers (the recipe's momentum) on the recipe's schedule."""
    model = _model(ADSOptions())
    ctx = _context(model, cifar, RECIPE)
    hook = ADSHook(ADSOptions())
    hook.setup(ctx)
    ctx.set_learning_rates(0.01, 1, 0, 1)
    for opt in (hook.feat_opt, hook.cls_opt):
        assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == pytest.approx(0.01)


class _SpyHook(ADSHook):
    def __init__(self, opts):
        super().__init__(opts)
        self.calls: list[tuple[int, str]] = []

    def training_step(self, ctx, x, y):
        self.calls.append((ctx.epoch, ctx.phase))
        return super().training_step(ctx, x, y)


@pytest.mark.parametrize("name", ["ads", "ads-code"])
def test_ads_code_epoch_steps_are_alg1(code_options, cifar, name):
    """train_ADS.py:153-168: epoch 0 trains on L (train_init), then agreement (train_conv), discrepancy
    (train_f), L again; every later epoch agreement -> discrepancy -> L (train_init only once more). That is
    Alg. 1, the same in both readings: no extra pass on L in epochs >= 1."""
    opts = code_options if name == "ads-code" else ADSOptions()
    opts = dataclasses.replace(opts, subset=50)
    strategy = ADSStrategy(opts)
    pool = ActivePool.initial("x", 200, 20, 0)
    hook = _SpyHook(opts)
    recipe = Recipe(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=10, epochs=3)
    torch.manual_seed(0)
    model = strategy.adapt_model(build_model("resnet18", 10, 3, (32, 32), width=0.125))
    fit(model, cifar, pool.labeled, recipe, 0, hook=hook, unlabeled=strategy.training_unlabeled(pool, 0, 0))

    def runs(epoch):  # consecutive steps of one phase collapsed: the passes of the epoch
        phases = [ph for ep, ph in hook.calls if ep == epoch]
        return [ph for i, ph in enumerate(phases) if i == 0 or phases[i - 1] != ph]

    assert runs(0) == ["labeled", "agreement", "discrepancy", "labeled"]
    assert runs(1) == runs(2) == ["agreement", "discrepancy", "labeled"]
    assert [ph for ep, ph in hook.calls if ep == 1].count("labeled") == 2  # one pass over 20 labeled at batch 10
