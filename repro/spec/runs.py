"""Reading run records back, and the checks every reader makes first: the record is the run its path names, made
with the current params (the raw params hash, no strategy registry, no torch), complete and all numbers."""

from __future__ import annotations

import json
from pathlib import Path

from repro.spec.fingerprint import raw_run_hash
from repro.spec.layout import run_stem


class RecordError(RuntimeError):
    """Run records are missing or inconsistent (one clear line)."""


def load_records(results_dir: Path | str, experiment: str, methods, seeds, params=None) -> list[dict]:
    """Every (method, seed) record of an experiment. With `params`, each is checked against the current
    params (`check_record`): a stale or incomplete record is a RecordError, never silently aggregated."""
    records = []
    for method in methods:
        for seed in seeds:
            path = run_stem(results_dir, experiment, method, seed).with_suffix(".json")
            if not path.is_file():
                raise RecordError(f"missing run record {path}: run `dvc repro` (or `python -m repro run {experiment} {method}`)")
            try:
                rec = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise RecordError(f"run record {path} is not valid JSON ({e}); delete it and re-run the stage") from None
            rec["_path"] = str(path)
            if params is not None:
                check_record(params, rec, experiment, method, seed)
            records.append(rec)
    check_pool_identity(records)
    return records


def check_record(params, rec: dict, experiment: str, method: str, seed: int) -> None:
    """The record is the run its path names, made with the current params, complete, and all numbers."""
    path = rec.get("_path", f"{experiment}/{method}/seed{seed}")
    for key, want in (("experiment", experiment), ("method", method), ("seed", seed)):
        if rec.get(key) != want:
            raise RecordError(f"{path}: its {key} is {rec.get(key)!r}, but its path says {want!r} (a moved or copied record)")
    have = (rec.get("provenance") or {}).get("params_raw_sha256")
    want_hash = raw_run_hash(params, experiment, method)
    if have != want_hash:
        raise RecordError(f"{path}: stale, made with other params (params_raw_sha256 {str(have)[:12]} != current "
                          f"{want_hash[:12]}); re-run `dvc repro`")
    exp = params.experiment(experiment)
    try:
        counts = exp.schedule.labeled_counts(int(rec["pool_size"]))
    except (KeyError, TypeError, ValueError):
        raise RecordError(f"{path}: no usable pool_size; re-run `dvc repro`") from None
    stages = rec.get("stages") or []
    if [s.get("labeled") for s in stages] != list(counts):
        raise RecordError(f"{path}: incomplete, {len(stages)} stage(s) with labeled sizes "
                          f"{[s.get('labeled') for s in stages]} but the schedule has {len(counts)}: {list(counts)}")
    bad = [s.get("stage") for s in stages if not isinstance(s.get("value"), (int, float)) or s["value"] != s["value"]]
    if bad:
        raise RecordError(f"{path}: the metric is missing or NaN at stage(s) {bad}")


def check_pool_identity(records: list[dict], across_experiments: bool = False) -> None:
    """Every method of one (experiment, seed) must start from the same initial labeled pool. With
    `across_experiments`, so must every experiment of one (dataset, pool size, initial size, seed) (e.g. DAL's
    batch sizes 10 / 100 / 1000 share one initial pool per seed)."""
    seen: dict[tuple, tuple[str, str]] = {}
    for rec in records:
        if across_experiments:
            first = (rec.get("stages") or [{}])[0].get("labeled")
            key = (rec.get("dataset"), rec.get("pool_size"), first, rec["seed"])
        else:
            key = (rec["experiment"], rec["seed"])
        h = rec["initial_pool_sha256"]
        who = f"{rec['experiment']}/{rec['method']}"
        if key in seen and seen[key][0] != h:
            raise RecordError(
                f"{rec['experiment']} seed {rec['seed']}: method {rec['method']!r} started from initial pool "
                f"{h[:12]} but {seen[key][1]!r} from {seen[key][0][:12]}; re-run both with the same params"
            )
        seen.setdefault(key, (h, who if across_experiments else rec["method"]))
