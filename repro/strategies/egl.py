"""Expected Gradient Length (Settles, Craven & Ray 2008), as DAL's baseline.

`egl`: sum_c p(c|x) ||grad_theta l(x, c)|| (the expected gradient norm) with exact per-sample gradients
(torch.func), pointwise.
`egl-code`: what DAL's reference computes: for each class c, the gradient of the MEAN loss over a chunk of
100 examples all labelled c, squared norm, times each example's p(c|x) -- one gradient per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from repro.losses import expected_gradient_length
from repro.models.base import final_linear
from repro.schema import Choice, Int, spec
from repro.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register


@dataclass(frozen=True, kw_only=True)
class EGLOptions(ScoreOptions):
    params: str = spec(Choice(("all", "last")), "all")  # all trainable parameters, or the last linear layer
    chunk: int = spec(Int(1, 100_000), 100)  # egl-code: examples per shared gradient


def _param_set(model: nn.Module, which: str) -> dict[str, torch.Tensor]:
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if which == "last":
        last = {id(p) for p in final_linear(model).parameters()}
        named = {n: p for n, p in named.items() if id(p) in last}
    return named


class _EGLBase(ScoreStrategy):
    Options = EGLOptions
    pointwise = True

    def _inputs(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        return ctx.augmenter.eval(ctx.data.train_x[torch.as_tensor(candidates, device=ctx.data.train_x.device)])


@register("egl")
class EGLStrategy(_EGLBase):
    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        model = ctx.model.eval()
        params = {n: p.detach() for n, p in _param_set(model, self.options.params).items()}
        frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
        buffers = dict(model.named_buffers())
        n_params = sum(p.numel() for p in params.values())

        def loss(p, x, c):
            out = functional_call(model, ({**p, **frozen}, buffers), (x[None],))
            return F.cross_entropy(out.logits.float(), c[None])

        def norm(p, x, c):
            g = grad(loss)(p, x, c)
            return sum(v.pow(2).sum() for v in g.values()).sqrt()

        per_sample = vmap(norm, in_dims=(None, 0, 0))
        x_all = self._inputs(ctx, candidates)
        logits, _ = ctx.predict(candidates)
        probs = torch.softmax(logits, 1)
        n_classes = probs.shape[1]
        chunk = max(1, int(2e8 // max(1, n_params)))  # bound the per-sample gradient memory
        norms = torch.zeros_like(probs)
        for start in range(0, len(x_all), chunk):
            x = x_all[start : start + chunk]
            for c in range(n_classes):
                labels = torch.full((len(x),), c, dtype=torch.long, device=x.device)
                norms[start : start + len(x), c] = per_sample(params, x, labels).detach()
        return expected_gradient_length(norms, probs)


@register("egl-code")
class EGLCodeStrategy(_EGLBase):
    pointwise = False  # a chunk's summed loss gives one gradient per chunk: scores depend on the chunk's company

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        model = ctx.model.eval()
        params = list(_param_set(model, self.options.params).values())
        logits, _ = ctx.predict(candidates)
        probs = torch.softmax(logits, 1)
        scores = torch.zeros(len(candidates), device=probs.device)
        x_all = self._inputs(ctx, candidates)
        for start in range(0, len(x_all), self.options.chunk):
            x = x_all[start : start + self.options.chunk]
            for c in range(probs.shape[1]):
                labels = torch.full((len(x),), c, dtype=torch.long, device=x.device)
                g = torch.autograd.grad(F.cross_entropy(model(x).logits.float(), labels), params)
                sq = sum(v.pow(2).sum() for v in g)
                scores[start : start + len(x)] += probs[start : start + len(x), c] * sq.detach()
        return scores
