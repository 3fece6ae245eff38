"""Reading run records back, and the checks every aggregation makes first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


class RecordError(RuntimeError):
    """Run records are missing or inconsistent (one clear line)."""


def load_records(results_dir: Path | str, experiment: str, methods, seeds, params=None) -> list[dict]:
    """Every (method, seed) record of an experiment. With `params`, each is checked against the current
    params (`check_record`): a stale or incomplete record is a RecordError, never silently aggregated."""
    records = []
    for method in methods:
        for seed in seeds:
            path = Path(results_dir) / experiment / method / f"seed{seed}.json"
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
    from repro.spec.fingerprint import (
        raw_run_hash,  # the raw params the run read (no strategy registry, no torch)
    )

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


def modal_class_share(counts) -> float:
    """Share of a query's picks from its most frequent class (1 = every pick from one class)."""
    total = sum(counts)
    return max(counts) / total if total else float("nan")


def stages_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (method, seed, stage)."""
    rows = [
        {"experiment": r["experiment"], "method": r["method"], "seed": r["seed"], **{
            k: s[k] for k in ("stage", "labeled", "labeled_fraction", "metric", "value")},
         "labeled_sha256": s.get("labeled_sha256"), "test_size": r.get("test_size"),
         "query_modal_class_share": modal_class_share(s["selected_classes"]) if s.get("selected_classes") else float("nan")}
        for r in records for s in r["stages"]
    ]
    return pd.DataFrame(rows)


def resolve_groups(df: pd.DataFrame, groups: dict[str, list[str]]) -> dict[str, str]:
    """For each group (e.g. DAL's "Uncertainty" = entropy or least-confidence), the member a figure draws it as
    (and DAL Fig. 3 ranks, following Fig. 1): the first member listed (experiments.py's groups, in
    paper_tables' protocol.groups order) that `df` ran. Fixed by the definition, never by the results: DAL
    reports the better of the two (Sec. 5.1), but the better member on the very seeds then drawn and compared is
    the maximum of two noisy means (biased upward) and is re-chosen by noise between runs (the nightly saw a
    series vanish). Members absent from `df` are skipped; a group with no member present is left out."""
    ran = set(df.method.unique()) if "method" in df else set()
    return {group: next(m for m in members if m in ran)
            for group, members in groups.items() if any(m in ran for m in members)}


def paired_values(df: pd.DataFrame, a: str, b: str, column: str = "value") -> dict[int, tuple[int, list[int], np.ndarray]]:
    """Per stage: (labeled count, seeds, the paired differences a - b over the seeds both ran)."""
    out = {}
    for stage, g in df.groupby("stage"):
        pa = g[g.method == a].set_index("seed")[column]
        pb = g[g.method == b].set_index("seed")[column]
        seeds = sorted(set(pa.index) & set(pb.index))
        if seeds:
            out[int(stage)] = (int(g.labeled.iloc[0]), seeds, (pa.loc[seeds] - pb.loc[seeds]).to_numpy(dtype=float))
    return out


def paired_differences(df: pd.DataFrame, a: str, b: str) -> list[dict]:
    """Per stage after the first: the mean over seeds of value(a) - value(b) (seeds share the initial pool)
    with its 95% t-interval over seeds (`repro.report.stats.t_interval`)."""
    from repro.report.stats import t_interval

    vals = paired_values(df, a, b)
    return [{"stage": st, "labeled": lab, "mean": float(d.mean()), "ci95": list(t_interval(d)), "n": len(seeds)}
            for st, (lab, seeds, d) in sorted(vals.items()) if st != min(vals)]
