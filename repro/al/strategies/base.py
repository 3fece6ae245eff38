"""The strategy interface: a method = an optional training hook + `query(ctx, budget) -> indices`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from repro.al.parameters import MCDAL_TABLE1, ParameterConfig
from repro.al.selection import select_topk
from repro.core.infer import map_outputs, predict
from repro.core.tasks import Task, task_of
from repro.core.train import TrainingHook, derive_seed
from repro.data.augment import Augmenter
from repro.data.datasets import ImageData
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.models.base import Backbone
from repro.spec.datasets import get_spec
from repro.spec.recipe import Recipe
from repro.spec.schema import Int, Optional, spec

STRATEGIES: dict[str, type[Strategy]] = {}


class BudgetError(ValueError):
    """A query asked for more examples than the unlabeled pool holds, or for none."""


def register(name: str):
    """Class decorator: register a strategy under `name` (what params.yaml's `methods` lists)."""

    def deco(cls):
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


def run_rng(seed: int, stage: int, salt: str) -> np.random.Generator:
    """A numpy generator seeded by derive_seed(run seed, stage, salt): the same draw at training and at query."""
    return np.random.default_rng(derive_seed(seed, stage, salt))


@dataclass
class QueryContext:
    """What a query sees: the trained task model, the method's trained modules (`state`, what `fit` returned),
    the data, the pool, the budget and a seed for its own randomness."""

    model: Backbone
    data: ImageData
    pool: ActivePool
    augmenter: Augmenter
    recipe: Recipe
    seed: int
    stage: int
    # How many examples the query takes (set by `ScoreStrategy.query`); scorers that iterate until enough
    # candidates qualify read it (DFAL's code variant).
    budget: int = 1
    # The method's own trained networks (its hook's `build_modules`, as trained by `fit`): empty for methods
    # that train none.
    state: nn.ModuleDict = field(default_factory=nn.ModuleDict)

    def generator(self, salt: str = "") -> torch.Generator:
        """A generator on the data's device seeded by derive_seed(run seed, stage, salt): same seed => same query."""
        return torch.Generator(device=self.data.train_x.device).manual_seed(derive_seed(self.seed, self.stage, salt))

    def rng(self, salt: str = "") -> np.random.Generator:
        return run_rng(self.seed, self.stage, salt)

    @property
    def task(self) -> Task:
        return task_of(self.data)

    def predict(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of train_x[indices] with the trained task model, eval mode, in fp32 on every
        device: bf16 logits tie often enough to change a top-k selection (bf16 autocast stays for training).
        Classification only: dense outputs go through `map`, `embeddings`, `position_scores`, `class_probs`."""
        if self.task.name != "classification":
            raise NotImplementedError(
                f"this method reads whole-pool logits, which a {self.task.name} task never holds; it has no "
                f"{self.task.name} reading (use ctx.position_scores / ctx.embeddings / ctx.class_probs)")
        return predict(self.model, self.data.train_x, indices, self.augmenter, self.recipe.eval_batch_size,
                       bf16=False)

    def map(self, indices, fn: Callable, model: nn.Module | None = None):
        """fn(output) of the task model (or `model`) on train_x[indices], eval mode, fp32, chunk by chunk."""
        return map_outputs(model or self.model, self.data.train_x, indices, self.augmenter, fn,
                           self.recipe.eval_batch_size, bf16=False)

    def embeddings(self, indices) -> torch.Tensor:
        """(N, D) per-image features: the penultimate features, or the task's pooling of dense feature maps."""
        return self.task.embeddings(self.model, self.data.train_x, indices, self.augmenter,
                                    self.recipe.eval_batch_size, bf16=False)

    def position_scores(self, indices, score_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(N,) per-image scores: `score_fn` (class-last probabilities -> per-position score, e.g. entropy) on the
        softmax of every position, reduced per image by the task (classification: one position)."""
        task = self.task
        if task.name == "classification":
            return score_fn(torch.softmax(self.predict(indices)[0], dim=1))
        return self.map(indices, lambda out: task.reduce(score_fn(task.class_last(
            torch.softmax(out.logits.float(), dim=-1 if task.name == "detection" else 1)))))

    def class_probs(self, indices) -> torch.Tensor:
        """(N, C) per-image class distribution (the task's reduction of dense outputs)."""
        if self.task.name == "classification":
            return torch.softmax(self.predict(indices)[0], dim=1)
        return self.map(indices, lambda out: self.task.class_probs(out.logits))


@dataclass(frozen=True, kw_only=True)
class StrategyOptions:
    """Options every strategy takes (params.yaml `variants`); subclasses add their own fields."""


@dataclass(frozen=True, kw_only=True)
class ScoreOptions(StrategyOptions):
    # Score only a seeded random subset of this many unlabeled examples (Beluch et al. 2018; LL4AL; ADS).
    subset: int | None = spec(Optional(Int(1)), None)


class Strategy:
    """Base class. Subclasses implement `query`; methods that change training also return a hook, whose
    trained modules reach `query` as `ctx.state` (a strategy object keeps no trained state of its own).

    Capabilities (class attributes, read by tests, rankings and the parameter table instead of hand lists):
    `pointwise` (each example's score depends on that example only, deterministically), `ranks_pool` (it can
    score every unlabeled example: `pool_scores`, DAL Fig. 3) and `quick_options` (options that only shorten its
    loops, for tests and quick checks). The files a method's runs depend on are computed from its module's
    imports (repro/spec/codedeps.py), never listed by hand.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = StrategyOptions
    reinit_each_stage: ClassVar[bool] = True  # task model re-initialised every stage unless a method says otherwise
    pointwise: ClassVar[bool] = False
    ranks_pool: ClassVar[bool] = False
    quick_options: ClassVar[dict[str, Any]] = {}
    full_pool: ClassVar[bool] = False  # trains on the whole pool in one stage and never queries (upper bounds)
    needs_dropout: ClassVar[bool] = False  # samples the task model's head dropout (MC dropout)
    # the tasks it has a reading for (checked when params load: any other fails loudly, never falls back)
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()
        if not isinstance(self.options, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, got {type(self.options).__name__}")

    @classmethod
    def parameter_configs(cls) -> list:
        """What `python -m repro params` reports for this method: by default MCDAL Table 1's setting (CIFAR-10,
        ResNet-18) with the method's own modules; methods reported elsewhere add their settings."""

        spec, strategy = get_spec("cifar10"), cls()
        model = strategy.adapt_model(build_model("resnet18", spec.num_classes, spec.channels, (spec.height, spec.width)))
        modules = {"task model": model, **strategy.method_modules(model, spec)}
        printed = {"total": MCDAL_TABLE1[cls.name]} if cls.name in MCDAL_TABLE1 else {}
        return [ParameterConfig(cls.name, "CIFAR-10, ResNet-18", modules, printed, "MCDAL Table 1" if printed else "")]

    def method_modules(self, model: Backbone, spec) -> dict[str, nn.Module]:
        """The networks the method trains beyond the task model (fresh, on the CPU), for parameter tables."""
        hook = self.training_hook()
        return hook.build_modules(model, spec) if hook is not None else {}

    def adapt_model(self, model: Backbone) -> Backbone:
        """Change the freshly built task model where a method needs to (e.g. ADS's two sigmoid heads)."""
        return model

    def training_hook(self) -> TrainingHook | None:
        """A fresh hook per call (hooks hold per-fit scratch only; trained modules come back from `fit`)."""
        return None

    def random_subset(self, pool: ActivePool, seed: int, stage: int) -> np.ndarray:
        """The unlabeled pool, or its seeded random subset of `options.subset` examples (sorted) for this
        (run seed, stage) where the method takes that option: the same subset at training and at query."""
        unlabeled = pool.unlabeled
        m = getattr(self.options, "subset", None)
        if m is None or m >= len(unlabeled):
            return unlabeled
        return np.sort(run_rng(seed, stage, "subset").choice(unlabeled, size=m, replace=False))

    def candidates(self, ctx: QueryContext, budget: int) -> np.ndarray:
        """The examples a query chooses from: `random_subset`, checked against the budget."""
        m = getattr(self.options, "subset", None)
        if m is not None and m < budget and m < ctx.pool.n_unlabeled:
            raise BudgetError(f"{self.name}: subset of {m} is smaller than the query budget {budget}")
        return self.random_subset(ctx.pool, ctx.seed, ctx.stage)

    def training_unlabeled(self, pool: ActivePool, seed: int, stage: int) -> np.ndarray:
        """The unlabeled examples the method's training hook may read (default: the whole unlabeled pool)."""
        return pool.unlabeled

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        raise NotImplementedError(f"strategy {self.name!r} does not implement query")

    def prediction_maps(self, ctx: QueryContext, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays a figure draws of the model's predictions on train_x[indices] (an experiment's
        `predictions_of`; ADS Fig. 7); methods without a drawing fail loudly."""
        raise NotImplementedError(f"strategy {self.name!r} has no prediction drawing (predictions_of)")

    def pool_scores(self, ctx: QueryContext, unlabeled: np.ndarray) -> torch.Tensor:
        """A score for every given unlabeled example, "higher = query first" (methods with `ranks_pool`)."""
        raise NotImplementedError(f"strategy {self.name!r} cannot score the whole pool (ranks_pool is False)")

    @staticmethod
    def check_budget(ctx: QueryContext, budget: int) -> None:
        if budget < 1 or budget > ctx.pool.n_unlabeled:
            raise BudgetError(f"query budget {budget} must be in 1..{ctx.pool.n_unlabeled} (the unlabeled pool)")


class ScoreStrategy(Strategy):
    """Top-k of a per-example acquisition score ("higher = query first"; ties to the lowest index).

    With `subset: M`, only a seeded random subset of M unlabeled examples is scored.
    """

    Options = ScoreOptions
    ranks_pool = True

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        """(len(candidates),) scores of the candidate pool indices, in the candidates' order."""
        raise NotImplementedError

    def ties_random(self) -> bool:
        """Discrete scores (e.g. vote counts) tie often: True breaks exact ties by a random permutation of the
        pool drawn from (run seed, stage) instead of always preferring the lowest index."""
        return False

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        self.check_budget(ctx, budget)
        ctx = replace(ctx, budget=budget)
        candidates = self.candidates(ctx, budget)
        scores = self.score(ctx, candidates).float()
        full = torch.full((ctx.pool.size,), float("-inf"), device=scores.device)
        cand_t = torch.as_tensor(candidates, device=scores.device)
        full[cand_t] = scores
        tiebreak = None
        if self.ties_random():
            tiebreak = torch.randperm(ctx.pool.size, generator=ctx.generator("ties"), device=ctx.data.train_x.device)
        return select_topk(full, budget, cand_t, tiebreak).cpu().numpy()

    def pool_scores(self, ctx: QueryContext, unlabeled: np.ndarray) -> torch.Tensor:
        """Every given example scored (a ranking needs all of them, so no random subset)."""
        if getattr(self.options, "subset", None) is not None:
            return type(self)(replace(self.options, subset=None)).score(ctx, unlabeled)
        return self.score(ctx, unlabeled)
