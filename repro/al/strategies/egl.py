"""Expected Gradient Length (Settles, Craven & Ray 2008), as DAL's baseline.

`egl`: sum_c p(c|x) ||grad_theta l(x, c)|| (the expected gradient norm) with exact per-sample gradients,
pointwise. For softmax cross-entropy d l(x, c) / d logits = p - e_c: one forward, then one backward per
cotangent p - e_c, gives every class's gradient at each layer's output; a Conv2d / Linear / BatchNorm layer's
per-sample parameter-gradient norm follows from its input and that output gradient (any other layer: the
generic torch.func path, a vmap over examples and over the C cotangents).
`egl-code`: what DAL's reference computes: for each class c, the gradient of the MEAN loss over a chunk of
100 examples all labelled c, squared norm, times each example's p(c|x) -- one gradient per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vjp, vmap

from repro.al.scores import expected_gradient_length
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.al.strategies.dfal import bn_affine
from repro.models.base import final_linear
from repro.spec.schema import Choice, Int, spec

_MEMORY_FLOATS = 2e8  # per chunk of examples: bounds the per-sample, per-class gradient memory
_BN = nn.modules.batchnorm._BatchNorm


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


def _positions_last(mod: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A layer's input or output as (N, T, Ch), T positions (1 for (N, Ch)); channels come last in a Linear's
    tensors, second in the others' (a view for channels-last 4-D tensors)."""
    if isinstance(mod, nn.Linear):
        return t.reshape(t.shape[0], -1, t.shape[-1])
    return t.movedim(1, -1).reshape(t.shape[0], -1, t.shape[1])


def _patches(mod: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """(N, T, kh * kw * Cin): the input window of every output position (im2col, channels last)."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = mod.kernel_size, mod.stride, mod.dilation, mod.padding
    a = F.pad(a.movedim(1, -1), (0, 0, pw, pw, ph, ph)).contiguous()  # (N, H, W, Cin)
    n, h, w, ci = a.shape
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    s = a.stride()
    win = a.as_strided((n, ho, wo, kh, kw, ci), (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]))
    return win.reshape(n, ho * wo, kh * kw * ci)


def _weight_sq(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(N, C) ||u[n]^T g[n, :, c]||_F^2 for g (N, T, C, O), u (N, T, D): the squared norm of a weight's
    per-sample gradient sum_t g_t u_t^T. Few positions T: the Gram form <g g^T, u u^T> over positions
    (Goodfellow 2015) never builds the (O, D) gradient."""
    n, t, c, o = g.shape
    d = u.shape[2]
    if t * (d + c * (o + 1)) < c * o * d:
        uu = (u @ u.transpose(1, 2)).view(n, 1, t * t)
        gc = g.permute(0, 2, 1, 3).reshape(n * c, t, o)
        return ((gc @ gc.transpose(1, 2)).view(n, c, t * t) * uu).sum(2)
    return (u.transpose(1, 2) @ g.reshape(n, t, c * o)).pow(2).sum(1).view(n, c, o).sum(2)


def _layer_sq_norms(mod: nn.Module, names: set[str], a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(N, C) squared norm of the per-sample gradient of `mod`'s parameters `names`, from its input a and the
    gradients g (N, T, C, O) of every class's loss at its output (T positions, O channels)."""
    out = g.new_zeros(g.shape[0], g.shape[2])
    if "bias" in names:
        out += g.sum(1).pow(2).sum(2)
    if "weight" not in names:
        return out
    if isinstance(mod, _BN):  # eval: y = w * xhat + b, xhat = (a - mean) / sqrt(var + eps)
        xhat = (_positions_last(mod, a) - mod.running_mean) * torch.rsqrt(mod.running_var + mod.eps)
        return out + (g * xhat[:, :, None]).sum(1).pow(2).sum(2)
    u = _patches(mod, a) if isinstance(mod, nn.Conv2d) else _positions_last(mod, a)
    if u.shape[1] == 1:  # one position: ||g||^2 ||u||^2
        return out + g.pow(2).sum((1, 3)) * u.pow(2).sum((1, 2))[:, None]
    return out + _weight_sq(g, u)


def _supported(mod: nn.Module) -> bool:
    if isinstance(mod, _BN):
        return not mod.training and mod.running_mean is not None and mod.running_var is not None
    if isinstance(mod, nn.Conv2d):
        return mod.groups == 1 and mod.padding_mode == "zeros" and isinstance(mod.padding, tuple)
    return isinstance(mod, nn.Linear)


class _Layers:
    """Forward hooks on the layers that own the scored parameters: each records its input and adds a zero
    probe to its output, whose gradient is the gradient at that output. `ok` is False when a layer is of
    another kind or shares a parameter; `sq_norms` returns None when one does not run exactly once."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]):
        ids = {id(p) for p in params.values()}
        self.layers: list[tuple[nn.Module, set[str]]] = []
        seen: set[int] = set()
        self.ok = True
        for mod in model.modules():
            own = {n for n, p in mod.named_parameters(recurse=False) if id(p) in ids}
            if own:
                owned = {id(getattr(mod, n)) for n in own}
                self.ok &= _supported(mod) and not owned & seen
                seen |= owned
                self.layers.append((mod, own))
        self.ok &= seen == ids
        self.records: dict[nn.Module, list] = {}

    def _hook(self, mod, inputs, output):
        a = inputs[0]
        if isinstance(mod, _BN):
            output = bn_affine(mod, a)
        probe = torch.zeros_like(output, requires_grad=True)
        self.records.setdefault(mod, []).append((a.detach(), probe))
        return output + probe

    def sq_norms(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """((N, C) squared per-sample gradient norms for every label, (N, C) softmax), or None."""
        self.records = {}
        handles = [mod.register_forward_hook(self._hook) for mod, _ in self.layers]
        try:
            with torch.enable_grad():
                logits = model(x).logits.float()
        finally:
            for h in handles:
                h.remove()
        records, self.records = self.records, {}
        if any(len(records.get(mod, ())) != 1 for mod, _ in self.layers):
            return None
        probs = torch.softmax(logits.detach(), 1)
        c = probs.shape[1]
        cot = probs[None] - torch.eye(c, device=probs.device, dtype=probs.dtype)[:, None]  # (C, N, C): p - e_c
        probes = [records[mod][0][1] for mod, _ in self.layers]
        # one backward per class: is_grads_batched (a vmap) runs conv and batch-norm backward class by class
        # inside, then concatenates, slower on CPU
        per_class = [torch.autograd.grad(logits, probes, cot[k], retain_graph=k < c - 1, allow_unused=True)
                     for k in range(c)]
        sq = probs.new_zeros(len(x), c)
        for i, (mod, names) in enumerate(self.layers):
            if per_class[0][i] is not None:
                g = torch.stack([_positions_last(mod, gr[i]) for gr in per_class], 2)  # (N, T, C, O)
                sq += _layer_sq_norms(mod, names, records[mod][0][0], g)
        return sq, probs


def _generic_sq_norms(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor):
    """The same as _Layers.sq_norms for any model (torch.func): per example, one forward (vjp) and a vmap of
    its VJP over the C cotangents p - e_c."""
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = dict(model.named_buffers())

    def one(xi):
        def logits_of(p):
            return functional_call(model, ({**p, **frozen}, buffers), (xi[None],)).logits.float()[0]

        logits, back = vjp(logits_of, params)
        probs = torch.softmax(logits, 0)
        grads = vmap(back)(probs[None] - torch.eye(len(probs), device=probs.device, dtype=probs.dtype))[0]
        return sum(v.flatten(1).pow(2).sum(1) for v in grads.values()), probs

    return vmap(one)(x)


def per_class_sq_norms(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                       generic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, C) ||grad_params l(x_n, c)||^2 for every label c, (N, C) p(c|x_n)), exact, model in eval mode."""
    layers = None if generic else _Layers(model, params)
    params = {n: p.detach() for n, p in params.items()}
    if layers is not None and layers.ok:
        if x.dim() == 4:  # oneDNN's convolutions are several times faster on few channels in this layout
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            sizes = []
            h = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel())) for m, _ in layers.layers]
            n_classes = model(x[:1]).logits.shape[1]
            for hd in h:
                hd.remove()
        chunk = max(1, int(_MEMORY_FLOATS // ((n_classes + 4) * sum(sizes) + 1)))
        out = []
        for s in range(0, len(x), chunk):
            out.append(layers.sq_norms(model, x[s : s + chunk]))
            if out[-1] is None:
                break
        else:
            return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
    n_params = sum(p.numel() for p in params.values())
    with torch.no_grad():
        n_classes = model(x[:1]).logits.shape[1]
    chunk = max(1, int(_MEMORY_FLOATS // max(1, n_classes * n_params)))
    out = [_generic_sq_norms(model, params, x[s : s + chunk]) for s in range(0, len(x), chunk)]
    return torch.cat([o[0] for o in out]).detach(), torch.cat([o[1] for o in out]).detach()


class _EGLBase(ScoreStrategy):
    Options = EGLOptions
    pointwise = True

    def _inputs(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        return ctx.augmenter.eval(ctx.data.train_x[torch.as_tensor(candidates, device=ctx.data.train_x.device)])


@register("egl")
class EGLStrategy(_EGLBase):
    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        """Settles, Craven & Ray 2008, Eq. 1: sum_c p(c|x) ||grad_theta l(x, c)||."""
        model = ctx.model.eval()
        sq, probs = per_class_sq_norms(model, _param_set(model, self.options.params), self._inputs(ctx, candidates))
        return expected_gradient_length(sq.sqrt(), probs)
@register("egl-code")
class EGLCodeStrategy(_EGLBase):
    pointwise = False  # a chunk's summed loss gives one gradient per chunk: scores depend on the chunk's company

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        """DAL's reference: sum_c p(c|x) ||grad_theta mean_{x' in chunk} l(x', c)||^2 (Settles et al. 2008, Eq. 1
        with the gradient of a chunk's mean loss, squared)."""
        model = ctx.model.eval()
        params = list(_param_set(model, self.options.params).values())
        logits, _ = ctx.predict(candidates)
        probs = torch.softmax(logits, 1)
        scores = torch.zeros(len(candidates), device=probs.device)
        x_all = self._inputs(ctx, candidates)
        for start in range(0, len(x_all), self.options.chunk):
            x = x_all[start : start + self.options.chunk]
            out = model(x).logits.float()  # one forward per chunk, one backward per class
            for c in range(probs.shape[1]):
                labels = torch.full((len(x),), c, dtype=torch.long, device=x.device)
                g = torch.autograd.grad(F.cross_entropy(out, labels), params, retain_graph=c < probs.shape[1] - 1)
                sq = sum(v.pow(2).sum() for v in g)
                scores[start : start + len(x)] += probs[start : start + len(x), c] * sq.detach()
        return scores
