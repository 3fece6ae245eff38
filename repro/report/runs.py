"""Run records as tables: per-stage frames, groups, paired values across methods (records are read by
repro.spec.runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.report.stats import t_interval


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

    vals = paired_values(df, a, b)
    return [{"stage": st, "labeled": lab, "mean": float(d.mean()), "ci95": list(t_interval(d)), "n": len(seeds)}
            for st, (lab, seeds, d) in sorted(vals.items()) if st != min(vals)]
