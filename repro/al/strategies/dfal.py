"""DFAL (Ducoffe & Precioso 2018): query the examples closest to the decision boundary, measured by the
norm of their DeepFool perturbation (Moosavi-Dezfooli et al. 2016), smallest first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.data.augment import Augmenter
from repro.spec.schema import Choice, Float, Int, spec


@dataclass(frozen=True, kw_only=True)
class DFALOptions(ScoreOptions):
    overshoot: float = spec(Float(0.0, 1.0), 0.02)
    max_iter: int = spec(Int(1, 10_000), 50)
    # 'paper': DeepFool with max_iter iterations, every candidate ranked by its perturbation norm.
    # 'code': the DAL reference's cleverhans call (`deepfool`, reading "code"): on raw [0, 1] pixels, 10
    # iterations doubled until at least `budget` points flip, ranked by ||clip(x + 1.02 r) - x||, the points
    # whose clip(x + 1.02 r) keeps its class ranked last.
    variant: str = spec(Choice(("paper", "code")), "paper")
    batch_size: int = spec(Int(1, 1_000_000), 256)  # examples per forward (the unconverged of the whole pool)
    # 'code' only: at most this many doublings of the iterations (the reference doubles without a cap; the
    # suite stops at 10 = 10,240 iterations; smoke runs on barely trained models cap lower)
    max_doublings: int = spec(Int(0, 20), 10)


def bn_affine(mod: nn.modules.batchnorm._BatchNorm, a: torch.Tensor) -> torch.Tensor:
    """Eval-mode batch norm as the affine map it is, a * w / sqrt(var + eps) + (b - mean * w / sqrt(var + eps)):
    the same output up to rounding, with a backward several times cheaper than batch norm's on CPU."""
    shape = (1, -1) + (1,) * (a.dim() - 2)
    scale = torch.rsqrt(mod.running_var + mod.eps) * (mod.weight if mod.weight is not None else 1)
    shift = (mod.bias if mod.bias is not None else 0) - mod.running_mean * scale
    return a * scale.detach().view(shape) + shift.detach().view(shape)


@contextmanager
def affine_batchnorm(model: nn.Module) -> Iterator[None]:
    """Within: every eval-mode batch norm with running statistics of `model` computes `bn_affine`."""
    handles = [m.register_forward_hook(lambda m, i, o: bn_affine(m, i[0])) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training and m.running_var is not None]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each batch norm that alone reads a convolution's output folded into
    that convolution (torch.fx; the same function up to rounding, one layer less to run backward through), or
    `model` itself where it cannot be traced."""
    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 -- any tracing failure: the unfolded model is exact too
        return model


def _boundary_normals(logits: torch.Tensor, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(A, C, D) w_j = grad_x (f_j - f_k) for every class j (zero at j = k): C - 1 backward passes of the one
    forward, pass i for the classes k + i mod C (a vmap over the cotangents runs convolution backward class
    by class inside and concatenates, slower on CPU)."""
    n, c = logits.shape
    ar = torch.arange(n, device=x.device)
    w = x.new_zeros(n, c, x[0].numel())
    for i in range(1, c):
        j = (k + i) % c
        cot = torch.zeros_like(logits)
        cot[ar, j], cot[ar, k] = 1.0, -1.0
        w[ar, j] = torch.autograd.grad(logits, x, cot, retain_graph=i < c - 1)[0].reshape(n, -1)
    return w


def deepfool(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, max_iter: int = 50,
             overshoot: float = 0.02, clip: tuple[torch.Tensor, torch.Tensor] | None = None,
             state: dict | None = None, batch_size: int | None = None,
             reading: str = "paper") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Batched multi-class DeepFool on a model f: x -> logits whose examples are independent (eval mode); each
    example stops as soon as its prediction flips. Returns (norms, flipped mask, state); pass `state` back to
    continue iterating (the same as one longer run). `clip` = (low, high) bounds on the perturbed input;
    `batch_size`: examples per forward (each iteration runs the still unflipped examples of all x0).

    reading "paper" (Moosavi-Dezfooli et al. 2016, Alg. 2): r += (|f'_l| / ||w'_l|| + 1e-4) w'_l / ||w'_l||,
    l = argmin_k |f'_k| / ||w'_k||, f'_k = f_k - f_k0, w'_k = grad f'_k, evaluated at x0 + (1 + overshoot) r
    (clipped); norms ||(1 + overshoot) r||_2; flipped: the prediction changed within max_iter steps.

    reading "code" (cleverhans v2.1.0 `deepfool_attack`,
    cleverhans-lab/cleverhans@4488d36:cleverhans/attacks_tf.py:1286-1365, as
    dsgissin/DiscriminativeActiveLearning@625e9a1:query_methods.py:207-242 calls and ranks it):
    r += (|f'_l| + 1e-5) / ||w'_l|| w'_l / ||w'_l||, l the argmin of (|f'_k| + 1e-5) / ||w'_k||, evaluated
    and tested for the flip at clip(x0 + r); the overshoot is applied once, at the end: norms
    ||clip(x0 + (1 + overshoot) r) - x0||_2, flipped: f's class on clip(x0 + (1 + overshoot) r) differs from
    x0's (one more forward of every example)."""
    if reading not in ("paper", "code"):
        raise ValueError(f"deepfool reading must be 'paper' or 'code', got {reading!r}")
    code = reading == "code"
    scale = 1.0 if code else 1 + overshoot  # the multiple of r the iterations see
    batch = batch_size or max(1, x0.shape[0])
    if state is None:
        with torch.no_grad():
            k0 = torch.cat([f(xb).argmax(1) for xb in x0.split(batch)])
        state = {"r": torch.zeros_like(x0), "k0": k0, "iters": 0}
    r, k0 = state["r"], state["k0"]
    active = state.get("active", torch.arange(x0.shape[0], device=x0.device))

    def perturbed(idx, scale=scale):
        x = x0[idx] + scale * r[idx]
        return torch.maximum(torch.minimum(x, clip[1]), clip[0]) if clip is not None else x

    for it in range(max_iter + 1):  # each example stops as soon as its own prediction flips
        if active.numel() == 0:
            break
        last = it == max_iter  # only check the last step's flips
        kept = []
        for idx in active.split(batch):
            with torch.set_grad_enabled(not last):
                x = perturbed(idx).detach().requires_grad_(not last)
                logits = f(x).float()
            keep = torch.nonzero(logits.argmax(1) == k0[idx]).squeeze(1)
            kept.append(idx[keep])
            if last or keep.numel() == 0:
                continue
            if (len(idx) - keep.numel()) * (logits.shape[1] - 1) > keep.numel():
                # the flipped rows would cost more backward passes than a second forward of the others
                idx = idx[keep]
                with torch.enable_grad():
                    x = perturbed(idx).detach().requires_grad_(True)
                    logits = f(x).float()
                keep = torch.arange(len(idx), device=x0.device)
            k = k0[idx]
            w, logits = _boundary_normals(logits, x, k), logits.detach()  # w: (B, C, D)
            if keep.numel() < len(idx):
                w, logits, k = w[keep], logits[keep], k[keep]
            ar = torch.arange(keep.numel(), device=x0.device)
            fdiff = logits - logits[ar, k][:, None]
            wnorm = w.norm(dim=2).clamp_min(1e-12)
            pert = (fdiff.abs() + 1e-5) / wnorm if code else fdiff.abs() / wnorm
            pert[ar, k] = float("inf")
            nearest = pert.argmin(1)
            dist = pert[ar, nearest] if code else pert[ar, nearest] + 1e-4
            step = (dist / wnorm[ar, nearest])[:, None] * w[ar, nearest]
            r[idx[keep]] += step.view(keep.numel(), *r.shape[1:])
        active = torch.cat(kept)
        if last:
            break
        state["iters"] += 1
    state["r"], state["active"] = r, active
    if code:  # DAL's ranking: the final, overshot and clipped image, its norm and its class
        norms, flips = [], []
        with torch.no_grad():
            for idx in torch.arange(x0.shape[0], device=x0.device).split(batch):
                x = perturbed(idx, 1 + overshoot)
                norms.append((x - x0[idx]).flatten(1).norm(dim=1))
                flips.append(f(x).argmax(1) != k0[idx])
        return torch.cat(norms), torch.cat(flips), state
    converged = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    converged[active] = False
    norms = ((1 + overshoot) * r).flatten(1).norm(dim=1)
    return norms, converged, state


@register("dfal")
class DFALStrategy(ScoreStrategy):
    """Score = -||DeepFool perturbation|| (smallest perturbation queried first); pointwise."""

    Options = DFALOptions
    pointwise = True  # the default (paper) variant; the code variant stops by budget
    quick_options = {"max_iter": 15}

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        """DFAL (Ducoffe & Precioso 2018): rank by ||r(x)||_2, r the DeepFool perturbation
        (Moosavi-Dezfooli et al. 2016, Alg. 2), smallest first; variant code: DAL's ranking by
        ||clip(x + 1.02 r) - x||_2 in raw pixels around cleverhans' DeepFool (`deepfool`, reading "code"),
        the examples it leaves unflipped last."""
        model, o = ctx.model.eval(), self.options
        code = o.variant == "code"
        raw = ctx.data.train_x[torch.as_tensor(candidates, device=ctx.data.train_x.device)]
        x0, clip, normalise = ctx.augmenter.eval(raw), None, False
        if code:  # DAL's models read raw [0, 1] pixels: DeepFool steps, clips and measures there
            shape = (1, -1) + (1,) * (x0.dim() - 2)
            mean, std = ctx.augmenter.mean.view(shape), ctx.augmenter.std.view(shape)
            unit = Augmenter((), (0.0,) * mean.numel(), (1.0,) * mean.numel(), raw.device)
            x0, clip = unit.eval(raw), (torch.zeros_like(mean), torch.ones_like(mean))
            normalise = bool((mean != 0).any() or (std != 1).any())  # inside f (MNIST's is the identity)

        def f(x):
            if normalise:
                x = (x - mean) / std
            if x.dim() == 4:  # oneDNN's convolutions are several times faster on few channels in this layout
                x = x.contiguous(memory_format=torch.channels_last)
            return model(x).logits

        first_iters = 10 if code else o.max_iter
        model = fold_batchnorm(model)
        with affine_batchnorm(model):  # those left unfolded
            norms, conv, state = deepfool(f, x0, first_iters, o.overshoot, clip, batch_size=o.batch_size,
                                          reading=o.variant)
            if not code:
                return -norms
            # DAL: twice the iterations (a fresh run from x0, the same as continuing) until at least `budget`
            # examples flip (at most max_doublings)
            total = first_iters
            while int(conv.sum()) < ctx.budget and total < first_iters * 2**o.max_doublings:
                norms, conv, state = deepfool(f, x0, total, o.overshoot, clip, state, o.batch_size,
                                              reading=o.variant)  # 2x total
                total *= 2
        return torch.where(conv, -norms, torch.full_like(norms, float("-inf")))
