"""DFAL's code reading (issue 22.3) against a cleverhans-style DeepFool written here, one example at a time.

DAL's `AdversarialSampling.query` (dsgissin/DiscriminativeActiveLearning@625e9a1:query_methods.py:207-242)
calls cleverhans' DeepFool (v2.1.0, cleverhans-lab/cleverhans@4488d36:cleverhans/attacks_tf.py:1286-1365) on
raw [0, 1] pixels with clip [0, 1], 10 iterations doubled until `amount` points flip, and ranks
||clip(x + 1.02 r) - x|| of the points whose final image clip(x + 1.02 r) is classified differently (the
others rank last). cleverhans' loop steps by (|f_l| + 1e-5) / ||w_l||, tests the flip on clip(x + r) and
applies the overshoot once, at the end. The reference below is that, per example, for clarity; the suite's
scorer is batched.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from repro.al.strategies import QueryContext, build_strategy
from repro.al.strategies.dfal import DFALOptions, deepfool
from repro.core.train import fit
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec.recipe import Recipe

RTOL = 1e-4  # fp32 sums in another order (batched vs one example), compounded over the DeepFool steps
N_POOL, N_LABELED = 160, 100  # 60 unlabeled candidates
RECIPE = Recipe(optimizer="adam", lr=3e-3, batch_size=16, epochs=3, eval_batch_size=64)


def cleverhans_deepfool(f, x: torch.Tensor, max_iter: int, overshoot: float = 0.02,
                        clip_min: float = 0.0, clip_max: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cleverhans v2.1.0 `deepfool_attack` on each example alone, then DAL's ranking quantities:
    (||clip(x + (1 + overshoot) r) - x||_2, whether f's class on clip(x + (1 + overshoot) r) differs from
    x's)."""
    norms, flipped = [], []
    for sample in x.split(1):
        with torch.no_grad():
            original = int(f(sample).argmax(1))
        r_tot = torch.zeros_like(sample)
        adv_x, current, iteration = sample.clone(), original, 0
        while current == original and iteration < max_iter:
            xg = adv_x.detach().requires_grad_(True)
            logits = f(xg)[0]
            order = torch.argsort(logits, descending=True)  # tf.nn.top_k: index 0 is the current class
            grads = [torch.autograd.grad(logits[c], xg, retain_graph=True)[0] for c in order]
            pert, w = float("inf"), None
            for k in range(1, len(order)):
                w_k = grads[k] - grads[0]
                f_k = (logits[order[k]] - logits[order[0]]).detach()
                pert_k = (f_k.abs() + 1e-5) / w_k.norm()  # "adding value 0.00001 to prevent f_k = 0"
                if pert_k < pert:
                    pert, w = pert_k, w_k
            r_tot = r_tot + pert * w / w.norm()
            adv_x = torch.clamp(r_tot + sample, clip_min, clip_max)  # the flip: tested without the overshoot
            with torch.no_grad():
                current = int(f(adv_x).argmax(1))
            iteration += 1
        adv_x = torch.clamp((1 + overshoot) * r_tot + sample, clip_min, clip_max)  # the overshoot, once
        norms.append((adv_x - sample).flatten().norm())  # DAL: norm of adversarial_images - unlabeled
        with torch.no_grad():
            flipped.append(int(f(adv_x).argmax(1)) != original)  # DAL: predictions on the adversarial images
    return torch.stack(norms).detach(), torch.tensor(flipped)


@functools.cache
def _trained():
    """A LeNet briefly trained on MNIST-like digits: the synthetic stand-in thresholded to a black background
    (56% of the pixels 0, as most of real MNIST's 81%), so the [0, 1] clip binds as it does on MNIST."""
    data = load_dataset("synthetic-mnist", train_size=N_POOL, test_size=4)
    dark = ((data.train_x.float() - 128).clamp(min=0) * 2).clamp(max=255).to(torch.uint8)
    data = dataclasses.replace(data, train_x=dark)
    spec = data.spec
    torch.manual_seed(0)
    model = build_model("lenet", spec.num_classes, spec.channels, (spec.height, spec.width), dropout=0.5)
    pool = ActivePool.initial("x", N_POOL, N_LABELED, 0)
    fit(model, data, pool.labeled, RECIPE, 0)
    return model.eval(), data, pool


def _pixels_and_model():
    """(candidates, their raw pixels in [0, 1], f: pixels -> logits, the context) for the trained LeNet."""
    model, data, pool = _trained()
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    ctx = QueryContext(model, data, pool, aug, RECIPE, 0, 0)
    cand = pool.unlabeled
    x = data.train_x[torch.as_tensor(cand)].float() / 255.0
    mean, std = aug.mean.view(1, -1, 1, 1), aug.std.view(1, -1, 1, 1)

    def f(z):
        return model((z - mean) / std).logits.float()

    return cand, x, f, ctx


@functools.cache
def _reference(max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    _, x, f, _ = _pixels_and_model()
    return cleverhans_deepfool(f, x, max_iter)


def test_code_deepfool_equals_cleverhans_per_example():
    """The batched code reading: the same norms and the same flipped examples as cleverhans one by one."""
    _, x, f, _ = _pixels_and_model()
    assert len(x) == N_POOL - N_LABELED and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float((x == 0).float().mean()) > 0.5
    ref_norms, ref_flipped = _reference(10)
    zero, one = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    norms, flipped, _ = deepfool(f, x, 10, 0.02, (zero, one), batch_size=16, reading="code")
    assert int(flipped.sum()) == int(ref_flipped.sum())
    assert torch.equal(flipped, ref_flipped)
    assert torch.allclose(norms, ref_norms, rtol=RTOL, atol=1e-6)


def test_dfal_code_scores_equal_cleverhans_with_doubling():
    """`dfal` variant code end to end: -||clip(x + 1.02 r) - x|| in pixels for the flipped, -inf for the rest;
    a budget the first 10 iterations cannot meet doubles them once (DAL re-runs with max_iter 20)."""
    cand, x, f, ctx = _pixels_and_model()
    ref10, flipped10 = _reference(10)
    opts = DFALOptions(variant="code", batch_size=16, max_doublings=1)
    strategy = build_strategy("dfal", opts)
    s10 = strategy.score(dataclasses.replace(ctx, budget=int(flipped10.sum())), cand)
    assert torch.equal(torch.isfinite(s10), flipped10)
    assert torch.allclose(-s10[flipped10], ref10[flipped10], rtol=RTOL, atol=1e-6)

    ref20, flipped20 = _reference(20)
    s20 = strategy.score(dataclasses.replace(ctx, budget=int(flipped10.sum()) + 1), cand)
    assert torch.equal(torch.isfinite(s20), flipped20)
    assert torch.allclose(-s20[flipped20], ref20[flipped20], rtol=RTOL, atol=1e-6)
    # DAL's picks: the `amount` smallest norms among the flipped (np.argpartition; distinct norms here)
    k = 10
    picked = np.sort(cand[torch.topk(s20, k).indices.numpy()])
    ref = np.sort(cand[np.argsort(np.where(flipped20.numpy(), ref20.numpy(), np.inf))[:k]])
    assert np.array_equal(picked, ref)
