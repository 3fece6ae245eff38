"""Active-learning strategies by registered name. Importing this package registers them all: every module
in this folder is imported (a new method is a new module; this file does not change, so adding one does not
touch the shared run code)."""

import importlib
import pkgutil

from repro.al.strategies.base import STRATEGIES, BudgetError, QueryContext, ScoreStrategy, Strategy, register

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")


def build_strategy(name: str, options=None) -> Strategy:
    """A registered strategy with its options (default options when None)."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown method {name!r}; allowed: {sorted(STRATEGIES)}")
    return STRATEGIES[name](options)


__all__ = ["STRATEGIES", "BudgetError", "QueryContext", "ScoreStrategy", "Strategy", "build_strategy", "register"]
