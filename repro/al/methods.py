"""Method names in params.yaml (registered strategies and named `variants`), checked against the strategy
registry; the per-run parameter hash; and the code a run depends on (shared core + its method's files).

`repro.spec.params` knows nothing of strategies: it parses the file; this module adds the method checks, so the
dependencies run one way (config <- methods -> strategies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.al.strategies import STRATEGIES
from repro.core import distributed
from repro.core.train import TrainingHook
from repro.spec import codedeps
from repro.spec import params as config
from repro.spec.datasets import get_spec
from repro.spec.params import Params
from repro.spec.records import PACKAGE_DIR
from repro.spec.schema import Choice, ConfigError, build


def registered_method(params: Params, name: str) -> str:
    """The registered strategy behind a method or variant name."""
    variants = dict(params.variants)
    if name in variants:
        return variants[name][0]
    if name in STRATEGIES:
        return name
    raise ConfigError("method", name, f"allowed: {sorted(set(STRATEGIES) | set(variants))}")


def method_spec(params: Params, name: str, experiment: str | None = None) -> tuple[str, Any]:
    """(registered method, its validated Options) for a method or variant name, with the experiment's
    per-method `options` applied."""
    method = registered_method(params, name)
    variants = dict(params.variants)
    raw = {**dict(dict(params.method_options).get(method, ())),
           **(dict(variants[name][1]) if name in variants else {})}
    where = f"variants.{name}" if name in variants else f"method {name}"
    overrides = dict(dict(params.experiment(experiment).options).get(name, ())) if experiment else {}
    if overrides:
        where = f"experiments.{experiment}.options.{name}"
        if name in variants:  # a variant's own options are checked first, so an error names where it is
            build(STRATEGIES[method].Options, raw, f"variants.{name}")
    return method, build(STRATEGIES[method].Options, {**raw, **overrides}, where)


BACKBONES_WITH_DROPOUT = ("lenet",)  # backbones whose head has dropout by default (LeNet: 0.5)


def check_methods(params: Params) -> None:
    """Every variant names a registered method with valid options and no registered name; every experiment's
    methods exist and their options build; every ranking's methods can score the whole pool."""
    for name, (method, _) in params.variants:
        if name in STRATEGIES:
            raise ConfigError(f"variants.{name}", name, "a variant cannot reuse a registered method's name")
        Choice(STRATEGIES)(f"variants.{name}.method", method)
        method_spec(params, name)
    for name, raw in params.method_options:
        Choice(STRATEGIES)(f"method_options.{name}", name)
        build(STRATEGIES[name].Options, dict(raw), f"method_options.{name}")
    names = set(STRATEGIES) | {n for n, _ in params.variants}
    for exp_name, exp in params.experiments:
        for i, m in enumerate(exp.methods):
            if m not in names:
                raise ConfigError(f"experiments.{exp_name}.methods[{i}]", m, f"allowed: {sorted(names)}")
        for m, _ in exp.options:
            method_spec(params, m, exp_name)
        counts = exp.schedule.labeled_counts(exp.pool_size())
        largest = max((b - a for a, b in zip(counts, counts[1:])), default=0)
        for m in exp.methods:  # a query picks from its random subset: the subset must hold the budget
            subset = getattr(method_spec(params, m, exp_name)[1], "subset", None)
            if subset is not None and subset < largest:
                raise ConfigError(f"experiments.{exp_name}.options.{m}.subset", subset,
                                  f"smaller than the largest query budget {largest} of the schedule")
        task = get_spec(exp.dataset).task
        for m in exp.methods:  # no method falls back to another reading on a task it does not define
            cls = STRATEGIES[registered_method(params, m)]
            if task not in cls.tasks:
                raise ConfigError(f"experiments.{exp_name}.methods", m,
                                  f"{cls.name} has no {task} reading (it defines: {', '.join(cls.tasks)})")
        mc = [m for m in exp.methods if STRATEGIES[registered_method(params, m)].needs_dropout]
        if mc and exp.dropout is None and exp.backbone not in BACKBONES_WITH_DROPOUT and task == "classification":
            raise ConfigError(f"experiments.{exp_name}.dropout", None,
                              f"{mc} sample the task model's head dropout: set `dropout` (e.g. 0.5); "
                              f"{exp.backbone} has none by default")
        whole = [m for m in exp.methods if STRATEGIES[registered_method(params, m)].full_pool]
        if whole:
            counts = exp.schedule.labeled_counts(exp.pool_size())
            if counts != (exp.pool_size(),):
                raise ConfigError(f"experiments.{exp_name}.schedule", list(counts),
                                  f"{whole[0]} trains on the whole pool: one stage of {exp.pool_size()} labeled "
                                  "(initial_fraction = final_fraction = 1.0)")
    for name, r in params.rankings:
        for i, m in enumerate(r.methods):
            if m not in names or not STRATEGIES[registered_method(params, m)].ranks_pool:
                allowed = sorted(k for k, v in STRATEGIES.items() if v.ranks_pool)
                raise ConfigError(f"rankings.{name}.methods[{i}]", m, f"methods that rank the pool: {allowed}")


def parse_params(raw: Any, profile: str | None = None) -> Params:
    """config.parse_params with the method checks (every profile)."""
    return config.parse_params(raw, profile, checks=(check_methods,))


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """config.load_params with the method checks (every profile): what the CLI and the loop use."""
    return config.load_params(path, profile, checks=(check_methods,))


def strategy_module(method: str) -> str:
    """The module that defines a registered method's strategy."""
    return STRATEGIES[method].__module__


def run_code(method: str) -> tuple[str, ...]:
    """The package-relative files a run of `method` depends on: the static import closure of the loop and the
    method's strategy module (repro/spec/codedeps.py); what keys its checkpoints and lists its DVC deps."""
    return codedeps.run_files(strategy_module(method), PACKAGE_DIR)


def code_sha256(method: str) -> str:
    """Fingerprint of the source a run of `method` depends on: changing the core or this method's files
    invalidates its checkpoints; changing another method, the reports, the CLI or benchmarks does not."""
    return codedeps.files_sha256(run_code(method), PACKAGE_DIR)


def stage_code_deps(params: Params, names) -> list[str]:
    """dvc.yaml deps of a stage running these method/variant names: the core's files first, then the methods'."""
    core = codedeps.core_files(PACKAGE_DIR)
    own = sorted({f for n in names for f in run_code(registered_method(params, n))} - set(core))
    return [f"repro/{p}" for p in (*codedeps.folded(core, PACKAGE_DIR), *codedeps.folded(own, PACKAGE_DIR))]


def check_default_steps(params, experiment: str, methods: list[str]) -> None:
    """Stop before any work when a method trains its task model with its own step (not data-parallel yet)."""
    for m in methods:
        name, options = method_spec(params, m, experiment)
        hook = STRATEGIES[name](options).training_hook()
        if hook is not None and type(hook).training_step is not TrainingHook.training_step:
            raise distributed.DistributedError(
                f"method {m} trains with its own step ({type(hook).__name__}); torchrun runs only methods trained "
                "with the default step so far: run it without torchrun")
