"""Active-learning strategies by registered name. Importing this package registers them all."""

from repro.strategies import random, uncertainty  # noqa: F401  (registration side effects)
from repro.strategies.base import STRATEGIES, BudgetError, QueryContext, ScoreStrategy, Strategy, register


def build_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown method {name!r}; allowed: {sorted(STRATEGIES)}")
    return STRATEGIES[name]()


__all__ = ["STRATEGIES", "BudgetError", "QueryContext", "ScoreStrategy", "Strategy", "build_strategy", "register"]
