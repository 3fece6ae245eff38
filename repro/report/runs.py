"""Reading run records back, and the checks every aggregation makes first."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


class RecordError(RuntimeError):
    """Run records are missing or inconsistent (one clear line)."""


def load_records(results_dir: Path | str, experiment: str, methods, seeds) -> list[dict]:
    records = []
    for method in methods:
        for seed in seeds:
            path = Path(results_dir) / experiment / method / f"seed{seed}.json"
            if not path.is_file():
                raise RecordError(f"missing run record {path}: run `dvc repro` (or `python -m repro run {experiment} {method}`)")
            rec = json.loads(path.read_text())
            rec["_path"] = str(path)
            records.append(rec)
    check_pool_identity(records)
    return records


def check_pool_identity(records: list[dict]) -> None:
    """Every method of one (experiment, seed) must start from the same initial labeled pool."""
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for rec in records:
        key = (rec["experiment"], rec["seed"])
        h = rec["initial_pool_sha256"]
        if key in seen and seen[key][0] != h:
            raise RecordError(
                f"{rec['experiment']} seed {rec['seed']}: method {rec['method']!r} started from initial pool "
                f"{h[:12]} but {seen[key][1]!r} from {seen[key][0][:12]}; re-run both with the same params"
            )
        seen.setdefault(key, (h, rec["method"]))


def stages_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (method, seed, stage)."""
    rows = [
        {"experiment": r["experiment"], "method": r["method"], "seed": r["seed"], **{
            k: s[k] for k in ("stage", "labeled", "labeled_fraction", "metric", "value")}}
        for r in records for s in r["stages"]
    ]
    return pd.DataFrame(rows)


def resolve_groups(df: pd.DataFrame, groups: dict[str, list[str]]) -> dict[str, str]:
    """For each group (e.g. DAL's "Uncertainty" = best of entropy and least-confidence), the member with the
    higher mean accuracy over the stages after the first (the first stage is shared by every method),
    averaged over seeds. Members absent from `df` are skipped; a group with no member present is left out."""
    chosen = {}
    later = df[df.stage > 0]
    for group, members in groups.items():
        means = {m: later[later.method == m].value.mean() for m in members if (later.method == m).any()}
        if means:
            chosen[group] = max(means, key=lambda m: (means[m], -members.index(m)))
    return chosen


def paired_differences(df: pd.DataFrame, a: str, b: str, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Per stage after the first: the mean over seeds of value(a) - value(b) (seeds share the initial pool)
    with a 95% percentile-bootstrap CI over seeds."""
    import numpy as np

    out = []
    rng = np.random.default_rng(seed)
    for stage, g in df[df.stage > 0].groupby("stage"):
        pa = g[g.method == a].set_index("seed").value
        pb = g[g.method == b].set_index("seed").value
        seeds = sorted(set(pa.index) & set(pb.index))
        if not seeds:
            continue
        d = (pa.loc[seeds] - pb.loc[seeds]).to_numpy()
        boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        out.append({"stage": int(stage), "labeled": int(g.labeled.iloc[0]), "mean": float(d.mean()),
                    "ci95": [float(lo), float(hi)], "n": len(seeds)})
    return out
