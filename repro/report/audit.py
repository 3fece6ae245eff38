"""The audit: every registered claim beside what this suite measured, with a verdict.

Verdicts: `reproduced`, `deviates`, or `not comparable` (with a reason: an experiment that is not in
params.yaml, runs or rankings that are absent). Every number carries the run records and commit it came from.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from repro.config import Params
from repro.records import atomic_write_json, atomic_write_text, git_commit
from repro.report.claims import load_registries
from repro.report.runs import RecordError, load_records, paired_differences, resolve_groups, stages_frame


class NotComparable(Exception):
    pass


def _frame(params: Params, experiment: str, cache: dict) -> tuple[pd.DataFrame, list[str]]:
    if experiment not in cache:
        if experiment not in dict(params.experiments):
            raise NotComparable(f"no experiment {experiment!r} in params.yaml (not built yet)")
        exp = params.experiment(experiment)
        try:
            records = load_records(params.results_dir, experiment, exp.methods, exp.seeds)
        except RecordError as e:
            raise NotComparable(str(e)) from None
        cache[experiment] = (stages_frame(records), [r["_path"] for r in records],
                             sorted({(r["provenance"]["git"] or {}).get("commit") or "unknown" for r in records}))
    return cache[experiment]


def _resolve(name: str, df: pd.DataFrame, groups: dict) -> str:
    if name in groups:
        chosen = resolve_groups(df, {name: groups[name]})
        if name not in chosen:
            raise NotComparable(f"no member of group {name} {groups[name]} was run")
        return chosen[name]
    if not (df.method == name).any():
        raise NotComparable(f"method {name!r} was not run")
    return name


def _stage_filter(diffs: list[dict], stages: str) -> list[dict]:
    return diffs[: max(1, (len(diffs) + 1) // 2)] if stages == "first_half" else diffs


def judge_comparisons(params, claim, groups, cache) -> tuple[bool, list[dict], list[str], list[str]]:
    evidence, runs, commits, ok_all = [], [], [], True
    for cmp in claim["comparisons"]:
        for experiment in cmp["experiments"]:
            df, paths, commit = _frame(params, experiment, cache)
            runs += paths
            commits += commit
            than = _resolve(cmp["than"], df, groups)
            for better in cmp["better"]:
                b = _resolve(better, df, groups)
                diffs = _stage_filter(paired_differences(df, b, than), claim.get("stages", "all"))
                above = sum(d["ci95"][0] > 0 for d in diffs)
                ok = above > len(diffs) / 2 if claim["kind"] == "ordering" else above <= len(diffs) / 2
                ok_all &= ok
                evidence.append({"experiment": experiment, "better": better, "better_method": b, "than": cmp["than"],
                                 "than_method": than, "stages_ci_above_0": above, "stages": len(diffs),
                                 "holds": ok, "differences": diffs})
    return ok_all, evidence, runs, commits


def judge_parity(params, claim, groups, cache):
    evidence, runs, commits, ok_all = [], [], [], True
    for experiment in claim["experiments"]:
        df, paths, commit = _frame(params, experiment, cache)
        runs += paths
        commits += commit
        names = claim["methods"]
        resolved = {n: _resolve(n, df, groups) for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                diffs = paired_differences(df, resolved[a], resolved[b])
                inside = sum(d["ci95"][0] <= 0 <= d["ci95"][1] for d in diffs)
                ok = inside > len(diffs) / 2
                ok_all &= ok
                evidence.append({"experiment": experiment, "a": a, "a_method": resolved[a], "b": b,
                                 "b_method": resolved[b], "stages_ci_contains_0": inside, "stages": len(diffs),
                                 "holds": ok, "differences": diffs})
    return ok_all, evidence, runs, commits


def judge_rankings(params, claim, groups, cache):
    import numpy as np
    from scipy.stats import spearmanr

    from repro.report.rankings_fig import load_scores

    name = claim["rankings"]
    if name not in dict(params.rankings):
        raise NotComparable(f"no rankings {name!r} in params.yaml")
    try:
        scores = load_scores(params, name)
    except RecordError as e:
        raise NotComparable(str(e)) from None
    of = params.ranking(name).of
    df, _, commit = _frame(params, of, cache)  # group choice: the same as the curve figure of `of`
    a, b = (_resolve(n, df, groups) if n in groups else n for n in claim["pair"])
    rhos = {int(s): float(spearmanr(v[a], v[b]).statistic) for s, v in scores.items()}
    mean = float(np.mean(list(rhos.values())))
    ok = mean >= claim["min_rho"] if claim["kind"] == "similarity" else abs(mean) <= claim["max_abs_rho"]
    bound = {"min_rho": claim["min_rho"]} if claim["kind"] == "similarity" else {"max_abs_rho": claim["max_abs_rho"]}
    ev = [{"pair": claim["pair"], "methods": [a, b], "rho_per_seed": rhos, "rho_mean": mean, **bound, "holds": ok}]
    runs = [str(Path(params.results_dir) / name / f"seed{s}.npz") for s in scores]
    return ok, ev, runs, commit


JUDGES = {"ordering": judge_comparisons, "not_better": judge_comparisons, "parity": judge_parity,
          "similarity": judge_rankings, "dissimilarity": judge_rankings}


def audit(params: Params, tables: Path | str = "paper_tables") -> dict:
    cache: dict = {}
    rows = []
    for paper, reg in load_registries(tables).items():
        groups = (reg["protocol"] or {}).get("groups", {}) or {}
        for claim in reg["claims"]:
            row = {"id": claim["id"], "paper": paper, "where": claim["where"], "kind": claim["kind"],
                   "quote": claim["quote"], "setting": claim["setting"], "profile": params.profile}
            try:
                ok, evidence, runs, commits = JUDGES[claim["kind"]](params, claim, groups, cache)
                row.update(verdict="reproduced" if ok else "deviates", evidence=evidence,
                           runs=sorted(set(runs)), commits=sorted(set(commits)))
            except NotComparable as e:
                row.update(verdict="not comparable", reason=str(e), evidence=[], runs=[], commits=[])
            if claim.get("note"):
                row["note"] = claim["note"]
            rows.append(row)
    counts = Counter(r["verdict"] for r in rows)
    summary = {"profile": params.profile, "claims": len(rows),
               "verdicts": {params.profile: {v: counts.get(v, 0) for v in ("reproduced", "deviates", "not comparable")}},
               "git": git_commit()}
    return {"summary": summary, "claims": rows}


def _cell(row: dict) -> str:
    if row["verdict"] == "not comparable":
        return row["reason"]
    parts = []
    for e in row["evidence"]:
        if "rho_mean" in e:
            parts.append(f"rho({e['methods'][0]}, {e['methods'][1]}) = {e['rho_mean']:.2f}")
        elif "better" in e:
            parts.append(f"{e['experiment'].split('_')[-1]}: {e['better_method']} > {e['than_method']} at "
                         f"{e['stages_ci_above_0']}/{e['stages']}")
        else:
            parts.append(f"{e['experiment'].split('_')[-1]}: {e['a_method']} ~ {e['b_method']} at "
                         f"{e['stages_ci_contains_0']}/{e['stages']}")
    return "; ".join(parts)


def render_markdown(result: dict) -> str:
    s = result["summary"]
    counts = s["verdicts"][s["profile"]]
    lines = [
        "# Claims audit", "",
        f"Profile **{s['profile']}** (commit {(s['git'] or {}).get('commit') or 'unknown'}): "
        f"{counts['reproduced']} reproduced, {counts['deviates']} deviate, {counts['not comparable']} not comparable "
        f"of {s['claims']} claims.", "",
        "Rules: ordering = paired difference (seeds share the initial pool) with its 95% bootstrap CI above 0 at "
        "more than half of the stages after the first; not_better = at no more than half; parity = CI contains 0 "
        "at more than half; similarity = mean Spearman rho >= threshold. `X at k/n` = stages where it holds. "
        "Smoke-profile verdicts are computed the same way on reduced runs: they test the machinery, not the paper.",
        "", "| claim | where | verdict | evidence |", "| --- | --- | --- | --- |",
    ]
    for r in result["claims"]:
        lines.append(f"| `{r['id']}` | {r['where']} | **{r['verdict']}** ({r['profile']}) | {_cell(r)} |")
    lines += ["", "Quotes, settings, per-stage differences with CIs and the run records behind every number are in "
              "`reports/audit.json`."]
    return "\n".join(lines) + "\n"


def build_audit(params: Params, tables: Path | str = "paper_tables") -> tuple[Path, Path]:
    result = audit(params, tables)
    out = Path(params.reports_dir)
    js, md = out / "audit.json", out / "audit.md"
    atomic_write_json(js, result)
    atomic_write_text(md, render_markdown(result))
    return js, md
