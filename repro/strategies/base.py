"""The strategy interface: a method = an optional training hook + `query(ctx, budget) -> indices`."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from repro.config import Recipe
from repro.data.augment import Augmenter
from repro.data.datasets import ImageData
from repro.data.pool import ActivePool
from repro.losses import select_topk
from repro.models.base import Backbone
from repro.train import TrainingHook, predict

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


@dataclass
class QueryContext:
    """What a query sees: the trained task model, the data, the pool and a seed for its own randomness."""

    model: Backbone
    data: ImageData
    pool: ActivePool
    augmenter: Augmenter
    recipe: Recipe
    seed: int
    stage: int

    def generator(self, salt: str = "") -> torch.Generator:
        """A generator on the data's device seeded by (run seed, stage, salt): same seed => same query."""
        key = zlib.crc32(f"{self.seed}:{self.stage}:{salt}".encode())
        return torch.Generator(device=self.data.train_x.device).manual_seed(key)

    def rng(self, salt: str = "") -> np.random.Generator:
        return np.random.default_rng([self.seed, self.stage, zlib.crc32(salt.encode())])

    def predict(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of train_x[indices] with the trained task model, eval mode."""
        return predict(self.model, self.data.train_x, indices, self.augmenter, self.recipe.eval_batch_size,
                       self.recipe.bf16)


class Strategy:
    """Base class. Subclasses implement `query`; methods that change training also return a hook."""

    name: ClassVar[str] = ""
    reinit_each_stage: ClassVar[bool] = True  # task model re-initialised every stage unless a method says otherwise

    def training_hook(self) -> TrainingHook | None:
        return None

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        raise NotImplementedError(f"strategy {self.name!r} does not implement query")

    @staticmethod
    def check_budget(ctx: QueryContext, budget: int) -> None:
        if budget < 1 or budget > ctx.pool.n_unlabeled:
            raise BudgetError(f"query budget {budget} must be in 1..{ctx.pool.n_unlabeled} (the unlabeled pool)")


class ScoreStrategy(Strategy):
    """Top-k of a per-example acquisition score ("higher = query first"; ties to the lowest index)."""

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        """(len(candidates),) scores of the candidate pool indices, in the candidates' order."""
        raise NotImplementedError

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        self.check_budget(ctx, budget)
        candidates = ctx.pool.unlabeled
        scores = self.score(ctx, candidates).float()
        full = torch.full((ctx.pool.size,), float("-inf"), device=scores.device)
        cand_t = torch.as_tensor(candidates, device=scores.device)
        full[cand_t] = scores
        return select_topk(full, budget, cand_t).cpu().numpy()
