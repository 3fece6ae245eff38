"""DFAL (Ducoffe & Precioso 2018): query the examples closest to the decision boundary, measured by the
norm of their DeepFool perturbation (Moosavi-Dezfooli et al. 2016), smallest first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from repro.schema import Choice, Float, Int, spec
from repro.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register


@dataclass(frozen=True, kw_only=True)
class DFALOptions(ScoreOptions):
    overshoot: float = spec(Float(0.0, 1.0), 0.02)
    max_iter: int = spec(Int(1, 10_000), 50)
    # 'paper': DeepFool with max_iter iterations, every candidate ranked by its perturbation norm.
    # 'code': the DAL reference's cleverhans call: 10 iterations, doubled until at least `budget` points flip,
    # inputs clipped to [0, 1] pixels, unflipped points ranked last.
    variant: str = spec(Choice(("paper", "code")), "paper")
    batch_size: int = spec(Int(1, 1_000_000), 256)
    # 'code' only: at most this many doublings of the iterations (the reference doubles without a cap; the
    # suite stops at 10 = 10,240 iterations; smoke runs on barely trained models cap lower)
    max_doublings: int = spec(Int(0, 20), 10)


def deepfool(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, max_iter: int = 50,
             overshoot: float = 0.02, clip: tuple[torch.Tensor, torch.Tensor] | None = None,
             state: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Batched multi-class DeepFool (Moosavi-Dezfooli et al. 2016, Alg. 2) on a model f: x -> logits whose
    examples are independent (eval mode). Returns (||(1 + overshoot) r||_2 per example, converged mask, state);
    pass `state` back to continue iterating. `clip` = (low, high) bounds on the perturbed input."""
    if state is None:
        with torch.no_grad():
            k0 = f(x0).argmax(1)
        state = {"r": torch.zeros_like(x0), "k0": k0, "iters": 0}
    r, k0 = state["r"], state["k0"]
    active = state.get("active", torch.arange(x0.shape[0], device=x0.device))

    def perturbed(idx):
        x = x0[idx] + (1 + overshoot) * r[idx]
        return torch.maximum(torch.minimum(x, clip[1]), clip[0]) if clip is not None else x

    for _ in range(max_iter):  # each example stops as soon as its own prediction flips
        if active.numel() == 0:
            break
        x = perturbed(active).detach().requires_grad_(True)
        logits = f(x).float()
        still = logits.argmax(1) == k0[active]
        x_grads = [torch.autograd.grad(logits[:, j].sum(), x, retain_graph=j < logits.shape[1] - 1)[0]
                   for j in range(logits.shape[1])]
        keep = torch.nonzero(still).squeeze(1)
        active, logits = active[keep], logits[keep].detach()
        if active.numel() == 0:
            break
        grads = torch.stack([g[keep] for g in x_grads], 1)  # (A, C, *input)
        n, ar = active.numel(), torch.arange(active.numel(), device=x0.device)
        k = k0[active]
        w = (grads - grads[ar, k][:, None]).flatten(2)  # (A, C, D)
        fdiff = logits - logits[ar, k][:, None]
        wnorm = w.norm(dim=2).clamp_min(1e-12)
        pert = fdiff.abs() / wnorm
        pert[ar, k] = float("inf")
        nearest = pert.argmin(1)
        step = ((pert[ar, nearest] + 1e-4) / wnorm[ar, nearest])[:, None] * w[ar, nearest]
        r[active] = r[active] + step.view(n, *r.shape[1:])
        state["iters"] += 1
    state["r"], state["active"] = r, active
    with torch.no_grad():
        converged = f(perturbed(torch.arange(x0.shape[0], device=x0.device))).argmax(1) != k0
    norms = ((1 + overshoot) * r).flatten(1).norm(dim=1)
    return norms, converged, state


@register("dfal")
class DFALStrategy(ScoreStrategy):
    """Score = -||DeepFool perturbation|| (smallest perturbation queried first); pointwise."""

    Options = DFALOptions
    pointwise = True  # the default (paper) variant; the code variant stops by budget
    quick_options = {"max_iter": 15}

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        model, o = ctx.model.eval(), self.options
        mean, std = ctx.augmenter.mean, ctx.augmenter.std
        clip = None
        if o.variant == "code":  # [0, 1] in raw pixels, in the model's normalised input space
            shape = (1, -1, 1, 1)
            clip = ((0 - mean) / std).view(shape), ((1 - mean) / std).view(shape)

        def f(x):
            return model(x).logits

        first_iters = o.max_iter if o.variant == "paper" else 10
        norms, conv, states = [], [], []
        for chunk in torch.as_tensor(candidates, device=ctx.data.train_x.device).split(o.batch_size):
            x0 = ctx.augmenter.eval(ctx.data.train_x[chunk])
            nrm, cv, st = deepfool(f, x0, first_iters, o.overshoot, clip)
            norms.append(nrm)
            conv.append(cv)
            states.append((x0, st))
        norms_t, conv_t = torch.cat(norms), torch.cat(conv)
        if o.variant == "paper":
            return -norms_t
        # cleverhans-style: twice the iterations until at least `budget` examples flip (at most max_doublings)
        total = first_iters
        while int(conv_t.sum()) < ctx.budget and total < first_iters * 2**o.max_doublings:
            results = [deepfool(f, x0, total, o.overshoot, clip, st) for x0, st in states]  # continue: 2x total
            total *= 2
            norms_t = torch.cat([r[0] for r in results])
            conv_t = torch.cat([r[1] for r in results])
        return torch.where(conv_t, -norms_t, torch.full_like(norms_t, float("-inf")))
