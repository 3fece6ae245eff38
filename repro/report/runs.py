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
