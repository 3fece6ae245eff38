"""Discriminative Active Learning (Gissin & Shalev-Shwartz 2019): a binary MLP on the task model's
representation Psi(x) learns labeled vs unlabeled; the query is split into mini-queries, each taking the
unlabeled examples the discriminator is most sure are unlabeled, with the discriminator retrained between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.al.selection import select_topk, split_budget
from repro.al.strategies.base import QueryContext, Strategy, StrategyOptions, register
from repro.core.infer import predict
from repro.core.train import FeatureData, NoAugment, TrainContext, TrainingHook, derive_seed, fit
from repro.models.base import ModelOutput
from repro.spec.recipe import Recipe
from repro.spec.schema import Bool, Choice, Float, Int, Optional, spec


@dataclass(frozen=True, kw_only=True)
class DALOptions(StrategyOptions):
    mini_queries: int = spec(Int(1, 10_000), 20)  # n: the query is split into min(n, K) mini-queries
    # 'none' (default): the paper names no class weights (Sec. 3: "minimize the log loss"), and the reference
    # code's weights evaluate to 1 for both classes (dsgissin/DiscriminativeActiveLearning@625e9a1); 'balanced' = N / N_class.
    class_weight: str = spec(Choice(("balanced", "none")), "none")
    # True (default): the unlabeled side is a random min(10 |L|, |U|) subsample, redrawn per mini-query: the
    # paper tunes its 98% stopping rule "for an unlabeled pool 10 times the size of the labeled set" (Sec. 4.3),
    # as the code does. False: the whole unlabeled pool.
    subsample: bool = spec(Bool(), True)
    stop_accuracy: float = spec(Float(0.5, 1.0), 0.98)  # stop when training accuracy exceeds this
    # Discriminator training, None = the reference's choice by input size (dsgissin/DiscriminativeActiveLearning@625e9a1).
    lr: float | None = spec(Optional(Float(0.0, 1.0, lo_open=True)), None)
    max_epochs: int | None = spec(Optional(Int(1, 100_000)), None)
    batch_size: int | None = spec(Optional(Int(1, 1_000_000)), None)


def reference_discriminator_recipe(input_dim: int) -> tuple[float, int, int]:
    """(Adam lr, max epochs, batch) the DAL reference picks by representation size."""
    return {28: (3e-4, 200, 1024), 128: (1e-4, 1000, 128), 512: (2e-4, 500, 1024), 32: (3e-4, 500, 1024)}.get(
        input_dim, (1e-3, 1000, 32)
    )


class Discriminator(nn.Module):
    """MLP Psi -> 256 -> 256 -> 256 -> 2 with ReLU (DAL Sec. 4; width 20 for tiny inputs as the code)."""

    def __init__(self, input_dim: int):
        super().__init__()
        width = 20 if input_dim < 30 else 256
        self.body = nn.Sequential(
            nn.Linear(input_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
        )
        self.out = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.body(x)
        return ModelOutput(self.out(h), h)


class DiscriminatorHook(TrainingHook):
    """Class-weighted log loss (Keras semantics: per-sample weight, mean over the batch); stops once the
    epoch's running training accuracy exceeds the threshold (the reference's DiscriminativeEarlyStopping)."""

    def __init__(self, weights: torch.Tensor, stop_accuracy: float):
        self.weights, self.stop_accuracy = weights, stop_accuracy

    def setup(self, ctx: TrainContext) -> None:
        self._correct = torch.zeros((), device=ctx.device)
        self._seen = 0

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = ctx.model(x).logits.float()
        loss = ctx.step(ctx.task_optimizer, (F.cross_entropy(logits, y, reduction="none") * self.weights[y]).mean())
        self._correct += (logits.argmax(1) == y).sum()
        self._seen += len(y)
        return loss.detach()

    def should_stop(self, ctx: TrainContext) -> bool:
        acc = float(self._correct) / max(1, self._seen)  # one host sync per epoch
        self._correct.zero_()
        self._seen = 0
        return acc > self.stop_accuracy


def train_discriminator(features: torch.Tensor, is_unlabeled: torch.Tensor, opts: DALOptions, seed: int) -> nn.Module:
    """Fit a fresh discriminator on (features, 0 = labeled / 1 = unlabeled) through the shared trainer."""
    lr, epochs, batch = reference_discriminator_recipe(features.shape[1])
    recipe = Recipe(optimizer="adam", lr=opts.lr or lr, batch_size=opts.batch_size or batch,
                    epochs=opts.max_epochs or epochs, eval_batch_size=8192, bf16=False)
    y = is_unlabeled.long()
    counts = torch.bincount(y, minlength=2).float()
    weights = (len(y) / counts.clamp_min(1)) if opts.class_weight == "balanced" else torch.ones(2)
    torch.manual_seed(seed)
    disc = Discriminator(features.shape[1]).to(features.device)
    fit(disc, FeatureData(features, y), np.arange(len(y)), recipe, seed,
        hook=DiscriminatorHook(weights.to(features.device), opts.stop_accuracy))
    return disc


def unlabeled_side(unlabeled: torch.Tensor, n_labeled: int, subsample: bool, gen: torch.Generator) -> torch.Tensor:
    """The unlabeled examples one discriminator sees: all, or (subsample) a random min(10 |L|, |U|) of them, sorted."""
    if not subsample:
        return unlabeled
    m = min(10 * n_labeled, unlabeled.numel())
    perm = torch.randperm(unlabeled.numel(), generator=gen, device=unlabeled.device)
    return torch.sort(unlabeled[perm[:m]]).values


def fit_labeled_vs_unlabeled(psi: torch.Tensor, labeled: torch.Tensor, unlabeled: torch.Tensor, opts: DALOptions,
                             seed: int) -> nn.Module:
    """A fresh discriminator on Psi of the labeled (class 0) and unlabeled (class 1) pool indices."""
    idx = torch.cat([labeled, unlabeled])
    target = torch.cat([torch.zeros(labeled.numel()), torch.ones(unlabeled.numel())]).to(psi.device)
    return train_discriminator(psi[idx], target, opts, seed)


def unlabeled_probability(disc: nn.Module, features: torch.Tensor) -> torch.Tensor:
    logits, _ = predict(disc, features, None, NoAugment(), 8192, bf16=False)
    return torch.softmax(logits, dim=1)[:, 1]


@register("dal")
class DALStrategy(Strategy):
    """min(n, K) mini-queries; each retrains the discriminator on Psi(x) (the task model's penultimate
    features, computed once) and takes the top share by P(unlabeled | Psi(x)) (DAL Sec. 3-4)."""

    Options = DALOptions
    ranks_pool = True
    quick_options = {"max_epochs": 40, "mini_queries": 3}

    def method_modules(self, model, spec) -> dict[str, nn.Module]:
        return {"discriminator": Discriminator(model.feature_dim)}  # trained inside each mini-query

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        self.check_budget(ctx, budget)
        _, psi = ctx.predict(np.arange(ctx.pool.size))
        labeled = torch.as_tensor(ctx.pool.labeled_mask, device=psi.device)
        picked: list[np.ndarray] = []
        for i, share in enumerate(split_budget(budget, self.options.mini_queries)):
            lab = torch.nonzero(labeled).squeeze(1)
            unl = unlabeled_side(torch.nonzero(~labeled).squeeze(1), lab.numel(), self.options.subsample,
                                 ctx.generator(f"dal-sub:{i}"))
            disc = fit_labeled_vs_unlabeled(psi, lab, unl, self.options, seed=derive_seed(ctx.seed, ctx.stage, f"dal-disc:{i}"))
            p_unl = unlabeled_probability(disc, psi[unl])
            top = unl[select_topk(p_unl, share)]
            labeled[top] = True
            picked.append(top.cpu().numpy())
        return np.concatenate(picked).astype(np.int64)

    def pool_scores(self, ctx: QueryContext, unlabeled: np.ndarray) -> torch.Tensor:
        """One discriminator, labeled vs unlabeled (its 10 |L| subsample): P(unlabeled) of every given example."""
        _, psi = ctx.predict(np.arange(ctx.pool.size))
        lab, unl = (torch.as_tensor(i, device=psi.device) for i in (ctx.pool.labeled, ctx.pool.unlabeled))
        disc = fit_labeled_vs_unlabeled(psi, lab, unlabeled_side(unl, lab.numel(), self.options.subsample,
                                                                  ctx.generator("dal-rank-sub")),
                                        self.options, seed=derive_seed(ctx.seed, ctx.stage, "dal-rank"))
        return unlabeled_probability(disc, psi[torch.as_tensor(unlabeled, device=psi.device)])
