"""The run plan's cost model: estimated seconds per experiment of a profile, before anything runs.

Per run and stage: training steps (from the recipe) x the measured seconds per step of its (backbone, width,
input shape, batch, method), plus the unlabeled pool x the measured query seconds per unlabeled example of the
same key. The per-key constants come from the run records of a measured smoke `dvc repro` on the reference
machine (2 CPU cores): `python -m repro budget --fit` refits them into repro/exec/budget_costs.json from results/.
`python -m repro budget` prints the plan; tests/test_budget.py sums the smoke plan against the budget, so a
changed default that would blow the 30-minute `nox -s repro` fails a test, not a nightly job.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from repro.spec.artifacts import ARTIFACTS, SamplingTable
from repro.spec.datasets import get_spec
from repro.spec.params import Params
from repro.spec.runs import RecordError, load_records

COSTS_FILE = Path(__file__).with_name("budget_costs.json")
# Calibrated from clean-clone runs on the 2-core reference machine. First (64 stages): run phases 817 s where the
# per-step / per-example constants predicted 571 s, and 573 s outside them (about 1.25 s a run, 9 s a stage).
# Refitted after the dense artifacts (75 stages; provenance no longer imports torchvision, ~2 s per process, and
# experiments of fewer than 8 runs stay in one process): `dvc repro` took about 1,306 s of a 1,396-s
# `nox -s nightly`, which 1.0 s a run and 7 s a stage reproduce (the plan then says 1,316 s beside its 240-s venv).
# MCDAL Table 1's timing stage trains and queries every method once (about 60 s more).
RUN_FIXED_S = 1.0  # per (method, seed) run
STAGE_OVERHEAD_S = 7.0  # per DVC stage
SAMPLING_TABLE_S = 60.0  # per sampling-time table, beyond its stage overhead
VENV_S = 240.0  # `nox -s repro` creating its virtual environment (torch wheels from the pip cache: 1.5-4.5 min)
BUDGET_S = 30 * 60  # the limit for the embedded default on 2 cores, venv included
# the constants are measured with the runs in 2 single-threaded worker processes (repro.exec.workers, the default on
# the 2-core reference machine): an experiment's wall time is its runs' summed seconds / 2
REFERENCE_JOBS = 2


def cost_key(params: Params, experiment: str, method: str) -> str:

    exp = params.experiment(experiment)
    spec = get_spec(exp.dataset)
    r = params.recipe(exp.recipe)
    return f"{exp.backbone} x{exp.width:g} {spec.channels}x{spec.height}x{spec.width} b{r.batch_size} | {method}"


def stage_steps(params: Params, experiment: str) -> list[tuple[int, int]]:
    """(training steps, unlabeled examples) per stage of one run."""
    exp = params.experiment(experiment)
    r = params.recipe(exp.recipe)
    pool = exp.pool_size()
    out = []
    for n in exp.schedule.labeled_counts(pool):
        n_train = n - math.floor(n * r.validation_fraction)
        per_epoch = r.epoch_iterations or math.ceil(n_train / r.batch_size)
        out.append((per_epoch * r.epochs, pool - n))
    return out


def load_costs(path: Path | str = COSTS_FILE) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {"train_s_per_step": {}, "query_s_per_example": {}}


def estimate_runs(params: Params, experiment: str, method: str, costs: dict | None = None) -> float | None:
    """Estimated seconds of one (method, seed) run; None without measured constants for its key."""
    costs = costs or load_costs()
    key = cost_key(params, experiment, method)
    step_s, query_s = costs["train_s_per_step"].get(key), costs["query_s_per_example"].get(key)
    if step_s is None or query_s is None:
        return None
    steps = stage_steps(params, experiment)
    return sum(s * step_s for s, _ in steps) + sum(u * query_s for _, u in steps[:-1])


def estimate(params: Params, experiment: str, costs: dict | None = None) -> dict:
    """{"seconds": total, "runs": n, "uncalibrated": [keys without measured constants]} for one experiment."""
    costs = costs or load_costs()
    exp = params.experiment(experiment)
    total, missing = STAGE_OVERHEAD_S, []
    for method in exp.methods:
        per_run = estimate_runs(params, experiment, method, costs)
        if per_run is None:
            missing.append(cost_key(params, experiment, method))
            continue
        total += (per_run + RUN_FIXED_S) * len(exp.seeds) / REFERENCE_JOBS
    return {"seconds": total, "runs": len(exp.methods) * len(exp.seeds), "uncalibrated": missing}


def plan(params: Params, costs: dict | None = None) -> dict:
    """Every experiment's estimate, the figure stages, and the total against the budget."""

    costs = costs or load_costs()
    rows = {name: estimate(params, name, costs) for name, _ in params.experiments}
    rankings = len(params.rankings) * 2 * STAGE_OVERHEAD_S  # a rankings stage: one short training per seed
    tables = sum(SAMPLING_TABLE_S for a in ARTIFACTS.values() if isinstance(a, SamplingTable))
    figures = (len(ARTIFACTS) + 2) * STAGE_OVERHEAD_S + tables  # + the parameters and audit stages
    total = sum(r["seconds"] for r in rows.values()) + rankings + figures + VENV_S
    return {"experiments": rows, "figures_s": figures, "rankings_s": rankings, "venv_s": VENV_S, "total_s": total,
            "budget_s": BUDGET_S}


def fit(params: Params, results_dir: Path | str | None = None) -> dict:
    """Per cost key, the median measured seconds per training step and per unlabeled example queried, over
    every stage of every run record under results/ of the active profile."""

    train: dict[str, list[float]] = {}
    query: dict[str, list[float]] = {}
    root = results_dir or params.results_dir
    for name, exp in params.experiments:
        steps = stage_steps(params, name)
        for method in exp.methods:
            try:
                records = load_records(root, name, [method], exp.seeds, params)
            except RecordError:
                continue
            key = cost_key(params, name, method)
            for rec in records:
                for k, ((s, _), st) in enumerate(zip(steps, rec["stages"])):
                    if st.get("train_seconds") is not None and s:
                        train.setdefault(key, []).append(st["train_seconds"] / s)
                    # stage k's query_seconds: the query after stage k - 1, over that stage's unlabeled pool
                    if k and st.get("query_seconds") is not None and steps[k - 1][1]:
                        query.setdefault(key, []).append(st["query_seconds"] / steps[k - 1][1])
            query.setdefault(key, [0.0])  # single-stage runs (upper bounds) never query
    return {"train_s_per_step": {k: statistics.median(v) for k, v in sorted(train.items())},
            "query_s_per_example": {k: statistics.median(v) for k, v in sorted(query.items())}}


def describe(p: dict) -> str:
    lines = [f"{'experiment':<32} {'runs':>4} {'est. s':>8}"]
    for name, r in p["experiments"].items():
        flag = f"  (uncalibrated: {len(r['uncalibrated'])} method(s))" if r["uncalibrated"] else ""
        lines.append(f"{name:<32} {r['runs']:>4} {r['seconds']:>8.0f}{flag}")
    lines.append(f"{'figures, tables, audit':<32} {'':>4} {p['figures_s']:>8.0f}")
    lines.append(f"{'rankings':<32} {'':>4} {p['rankings_s']:>8.0f}")
    lines.append(f"{'virtual environment':<32} {'':>4} {p['venv_s']:>8.0f}")
    lines.append(f"{'total':<32} {'':>4} {p['total_s']:>8.0f}  ({p['total_s'] / 60:.1f} of {p['budget_s'] / 60:.0f} min)")
    return "\n".join(lines)
