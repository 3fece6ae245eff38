"""Before a long run: how many runs, which are already done, and the cost model's estimate (repro.exec.budget)."""

from __future__ import annotations

import json

from repro.al.loop import run_key
from repro.exec import budget
from repro.spec.layout import checkpoint_dir
from repro.spec.params import Params


def run_is_done(params: Params, experiment: str, method: str, seed: int) -> bool:

    state = checkpoint_dir(params, experiment, method, seed) / "state.json"
    if not state.is_file():
        return False
    st = json.loads(state.read_text())
    exp = params.experiment(experiment)
    n_stages = len(exp.schedule.labeled_counts(exp.pool_size()))
    return st.get("key") == run_key(params, experiment, method, seed) and st.get("next_stage") == n_stages


def describe_plan(params: Params, experiment: str, runs: list[tuple[str, int]], data=None) -> str:
    """Runs, runs already done, and the cost model's estimate for the runs to go (`repro.exec.budget`: measured
    seconds per step and per queried example on the reference machine; no probe training)."""

    todo = [(m, s) for m, s in runs if not run_is_done(params, experiment, m, s)]
    if not todo:
        return f"plan for {experiment}: all {len(runs)} run(s) already done (records re-emitted from checkpoints)"
    costs = budget.load_costs()
    per_method = {}
    for m in {m for m, _ in todo}:
        est = budget.estimate_runs(params, experiment, m, costs)
        per_method[m] = est
    known = [per_method[m] for m, _ in todo if per_method[m] is not None]
    unknown = sorted({m for m, _ in todo if per_method[m] is None})
    total = sum(known)
    text = (f"plan for {experiment}: {len(runs)} run(s) ({len(runs) - len(todo)} done, {len(todo)} to go), "
            f"estimated ~{total:.0f} s (~{total / 60:.1f} min; repro/exec/budget_costs.json, 2-core reference machine)")
    if unknown:
        text += f"; no measured cost for {unknown} (python -m repro budget --fit)"
    return text
