"""Monte-Carlo dropout acquisition (DBAL, Gal, Islam & Ghahramani 2017): T stochastic passes, dropout on.

Every backbone keeps its only post-trunk dropout in its head, so the trunk runs once (eval mode) and the
head is sampled T times: the same distribution as T full passes, T times cheaper. Masks come from a
generator seeded per (run seed, stage, pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro import losses
from repro.models.base import final_linear
from repro.schema import Choice, Int, spec
from repro.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register


@dataclass(frozen=True, kw_only=True)
class MCOptions(ScoreOptions):
    passes: int = spec(Int(2, 10_000), 20)  # T (DBAL and DAL's "Bayesian" code: 20; its "BayesianEntropy": 100)


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


class _MCScore(ScoreStrategy):
    needs_dropout = True  # checked when params load: the experiment sets `dropout` (or the backbone has one)
    Options = MCOptions
    quick_options = {"passes": 5}
    score_fn = staticmethod(losses.mc_entropy)

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        return self.score_fn(mc_dropout_probs(ctx, candidates, self.options.passes))


@register("mc-entropy")
class MCEntropyStrategy(_MCScore):
    """Entropy of the MC-dropout mean prediction (`losses.mc_entropy`; DBAL "Max Entropy")."""

    score_fn = staticmethod(losses.mc_entropy)


@dataclass(frozen=True, kw_only=True)
class VariationRatioOptions(MCOptions):
    # 'votes': 1 - modal vote share over the T passes (DBAL; Freeman's variation ratio), ties broken at random;
    # 'mean_probability': 1 - max of the mean probability (DAL's reference code, "Bayesian").
    reading: str = spec(Choice(("votes", "mean_probability")), "votes")


@register("mc-variation-ratio")
class MCVariationRatioStrategy(_MCScore):
    """1 - modal vote share over T passes (`losses.variation_ratio`; DBAL "Variation Ratios"); exact ties
    (scores are multiples of 1/T) are broken by a random permutation drawn from (run seed, stage). Option
    `reading: mean_probability` is DAL's code (`losses.mean_probability_variation_ratio`)."""

    Options = VariationRatioOptions

    def ties_random(self) -> bool:
        return self.options.reading == "votes"

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        fn = losses.variation_ratio if self.options.reading == "votes" else losses.mean_probability_variation_ratio
        return fn(mc_dropout_probs(ctx, candidates, self.options.passes))


@register("bald")
class BALDStrategy(_MCScore):
    """Mutual information between prediction and weights (`losses.bald`; DBAL Eq. 4)."""

    score_fn = staticmethod(losses.bald)
