"""Monte-Carlo dropout acquisition (DBAL, Gal, Islam & Ghahramani 2017): T stochastic passes, dropout on.

Every backbone keeps its only post-trunk dropout in its head, so the trunk runs once (eval mode) and the
head is sampled T times: the same distribution as T full passes, T times cheaper. Masks come from a
generator seeded per (run seed, stage, pass).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro.al import scores
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.core.train import eval_mode
from repro.models.base import final_linear
from repro.spec.schema import Choice, Float, Int, spec


@dataclass(frozen=True, kw_only=True)
class MCOptions(ScoreOptions):
    passes: int = spec(Int(2, 10_000), 20)  # T (DBAL and DAL's "Bayesian" code: 20; its "BayesianEntropy": 100)
    # segmentation: the channel dropout put before DRN's 1x1 classifier when the experiment sets none (DRN has no
    # dropout; Gorriz et al. 2017, DAAL's MC Dropout [14], drop whole feature maps before their last layers)
    dense_dropout: float = spec(Float(0.0, 1.0, lo_open=True, hi_open=True), 0.5)


def head_dropout(model: nn.Module) -> tuple[float, nn.Linear]:
    """(dropout rate, final linear layer) of a backbone's head; a clear error when it has no dropout."""
    drops = [m for m in model.head.modules() if isinstance(m, nn.Dropout)]
    linear = final_linear(model)
    if not drops or drops[0].p <= 0:
        raise ValueError(
            "MC-dropout strategies need a backbone with dropout in its head: set the experiment's `dropout` "
            "(e.g. 0.5; LeNet has 0.5 by default)"
        )
    return float(drops[0].p), linear


def mc_dropout_probs(ctx: QueryContext, candidates: np.ndarray, passes: int) -> torch.Tensor:
    """(T, N, C) softmax outputs of T dropout samples of the head on the candidates' features."""
    p, linear = head_dropout(ctx.model)
    _, features = ctx.predict(candidates)
    out = []
    with torch.no_grad():
        for t in range(passes):
            g = ctx.generator(f"mc-dropout:{t}")
            keep = torch.bernoulli(torch.full_like(features, 1.0 - p), generator=g)
            out.append(torch.softmax(linear(features * keep / (1.0 - p)).float(), dim=-1))
    return torch.stack(out)


def dense_head_dropout(model: nn.Module) -> tuple[float, bool, nn.Module]:
    """(rate, channel-wise?, the head after its dropout) of a dense backbone (DRN: Dropout before the 1x1
    classifier, added by the experiment's `dropout` since DRN has none: our reading, as Gorriz et al.'s MC dropout
    sits before the last layers)."""
    children = list(model.head.children()) if isinstance(model.head, nn.Sequential) else []
    for i, m in enumerate(children):
        if isinstance(m, (nn.Dropout, nn.Dropout2d)) and m.p > 0:
            return float(m.p), isinstance(m, nn.Dropout2d), nn.Sequential(*children[i + 1:])
    raise ValueError("MC-dropout strategies need a backbone with dropout in its head: set the experiment's "
                     "`dropout` (DRN has none of its own)")


@torch.no_grad()
def dense_mc_scores(ctx: QueryContext, candidates: np.ndarray, passes: int, score_fn) -> torch.Tensor:
    """(N,) per image: score_fn over T dropout samples of every pixel's class distribution ((T, ..., C) -> per
    pixel), averaged over pixels; the trunk runs once per chunk, chunk by chunk (no N x H x W map kept)."""
    p, channelwise, rest = dense_head_dropout(ctx.model)
    gens = [ctx.generator(f"mc-dropout:{t}") for t in range(passes)]
    task = ctx.task

    def chunk_scores(out) -> torch.Tensor:
        f = out.features.float()
        shape = f.shape[:2] + (1,) * (f.dim() - 2) if channelwise else f.shape
        probs = []
        for g in gens:
            keep = torch.bernoulli(torch.full(shape, 1.0 - p, device=f.device), generator=g)
            probs.append(task.class_last(torch.softmax(rest(f * keep / (1.0 - p)).float(), dim=1)))
        return task.reduce(score_fn(torch.stack(probs)))

    with eval_mode(rest):
        return ctx.map(candidates, chunk_scores)


class _MCScore(ScoreStrategy):
    tasks = ("classification", "segmentation")
    needs_dropout = True  # checked when params load: the experiment sets `dropout` (or the backbone has one)
    Options = MCOptions
    quick_options = {"passes": 5}
    score_fn = staticmethod(scores.mc_entropy)

    def adapt_model(self, model):
        """Segmentation: a Dropout2d(dense_dropout) in front of the head when the model has no head dropout
        (only this method's task model changes; the experiment's other methods keep the plain DRN)."""
        if hasattr(model, "up") and not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) and m.p > 0
                                            for m in model.head.modules()):
            model.head = nn.Sequential(OrderedDict([("dropout", nn.Dropout2d(self.options.dense_dropout)),
                                                    *model.head.named_children()]))
        return model

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        if ctx.task.name != "classification":
            return dense_mc_scores(ctx, candidates, self.options.passes, self.score_fn)
        return self.score_fn(mc_dropout_probs(ctx, candidates, self.options.passes))


@register("mc-entropy")
class MCEntropyStrategy(_MCScore):
    """Entropy of the MC-dropout mean prediction (`scores.mc_entropy`; DBAL "Max Entropy")."""

    score_fn = staticmethod(scores.mc_entropy)


@dataclass(frozen=True, kw_only=True)
class VariationRatioOptions(MCOptions):
    # 'votes': 1 - modal vote share over the T passes (DBAL; Freeman's variation ratio), ties broken at random;
    # 'mean_probability': 1 - max of the mean probability (DAL's reference code, "Bayesian").
    reading: str = spec(Choice(("votes", "mean_probability")), "votes")


@register("mc-variation-ratio")
class MCVariationRatioStrategy(_MCScore):
    """1 - modal vote share over T passes (`scores.variation_ratio`; DBAL "Variation Ratios"); exact ties
    (scores are multiples of 1/T) are broken by a random permutation drawn from (run seed, stage). Option
    `reading: mean_probability` is DAL's code (`scores.mean_probability_variation_ratio`)."""

    Options = VariationRatioOptions

    def ties_random(self) -> bool:
        return self.options.reading == "votes"

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        fn = scores.variation_ratio if self.options.reading == "votes" else scores.mean_probability_variation_ratio
        if ctx.task.name != "classification":
            return dense_mc_scores(ctx, candidates, self.options.passes, fn)
        return fn(mc_dropout_probs(ctx, candidates, self.options.passes))


@register("bald")
class BALDStrategy(_MCScore):
    """Mutual information between prediction and weights (`scores.bald`; DBAL Eq. 4)."""

    score_fn = staticmethod(scores.bald)
