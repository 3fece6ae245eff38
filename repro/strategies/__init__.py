"""Active-learning strategies by registered name. Importing this package registers them all."""

from repro.strategies import (  # noqa: F401  (registration side effects)
    ads,
    coreset,
    coreset_robust,
    dal,
    dfal,
    egl,
    mc_dropout,
    mcdal,
    random,
    uncertainty,
)
from repro.strategies.base import STRATEGIES, BudgetError, QueryContext, ScoreStrategy, Strategy, register


def build_strategy(name: str, options=None) -> Strategy:
    """A registered strategy with its options (default options when None)."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown method {name!r}; allowed: {sorted(STRATEGIES)}")
    return STRATEGIES[name](options)


__all__ = ["STRATEGIES", "BudgetError", "QueryContext", "ScoreStrategy", "Strategy", "build_strategy", "register"]
