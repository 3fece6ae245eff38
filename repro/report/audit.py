"""The audit: every registered claim beside what this suite measured, with a verdict.

Verdicts: `reproduced`, `deviates`, or `not comparable` with a reason: an experiment that is not built,
missing, stale or incomplete records, NaN values, no evidence, or fewer than MIN_SEEDS paired seeds (the
evidence is still shown, with what the rule gives on it). Rules per kind are in `repro/report/stats.py`
and `describe_rule`; every number carries the run records and commit it came from.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from repro.config import Params
from repro.records import atomic_write_json, atomic_write_text, git_commit
from repro.report.audit_markdown import render_markdown  # noqa: F401  (re-exported: the audit's Markdown)
from repro.report.claims import CURVE_METRICS, NUMERIC_KINDS, load_registries
from repro.report.runs import (
    RecordError,
    check_pool_identity,
    load_records,
    paired_values,
    resolve_groups,
    stages_frame,
)
from repro.report.stats import MIN_SEEDS, combine, select_stages, stage_test


class NotComparable(Exception):
    pass


@dataclass
class Judgement:
    ok: bool
    evidence: list[dict]
    runs: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    n_min: int = 0  # the fewest paired seeds behind any piece of evidence
    exact: bool = False  # deterministic evidence (a parameter count): no seed rule


def describe_rule(claim: dict) -> str:
    """The claim's test in words (rendered next to the quote in the audit)."""
    kind = claim["kind"]
    if kind == "ratio" and "table" in (claim.get("evidence") or {}):
        return (f"|time ratio on a GPU - {claim['value']}x| <= {claim['tolerance']} (one timing per method; the "
                "paper timed a GPU, so a ratio measured elsewhere is not comparable)")
    if kind in NUMERIC_KINDS and "parameters" in (claim.get("evidence") or {}):
        return (f"|parameters of the instantiated modules - {claim['value']:,.0f}| <= {claim.get('tolerance') or 0:,.0f} "
                "(the printed rounding; an exact count, no seeds)")
    if kind in NUMERIC_KINDS:
        what = {"value": "the measured mean", "difference": "the mean paired difference",
                "ratio": "the mean per-seed ratio"}[kind]
        tol = f", {claim['tolerance']}" if claim.get("tolerance") else ""
        return (f"|{what} - {claim['value']} {claim['unit']}| <= max(2 x combined std (paper's and ours){tol}), "
                f"over >= {MIN_SEEDS} seeds")
    if kind in ("similarity", "dissimilarity"):
        if kind == "similarity":
            return f"Spearman rho >= {claim['min_rho']} in every seed (n >= {MIN_SEEDS})"
        return f"|Spearman rho| < {claim['max_abs_rho']} in every seed (n >= {MIN_SEEDS})"
    stages = {"all": "stages", "after_first": "stages after the first", "first_half": "first half of the stages",
              "first_half_after_first": "first half of the stages after the first",
              "first": "first stage (the initial labeled pool)", "last": "last stage"}[claim["stages"]]
    req = "every one of the" if claim["require"] == "every" else "more than half of the"
    metric = claim.get("metric", "accuracy")
    what = {"ordering": "95% t-interval of the paired difference (better - than) above 0",
            "not_better": f"one-sided 95% upper bound of (better - than) below +{claim.get('margin')}",
            "parity": f"90% t-interval of the paired difference inside (-{claim.get('margin')}, +{claim.get('margin')}) (TOST)"}[kind]
    return f"{what} at {req} {stages}, on {metric}, over >= {MIN_SEEDS} paired seeds"


class Evidence:
    """Run records per experiment, loaded once, checked against the current params."""

    def __init__(self, params: Params):
        self.params, self.cache = params, {}

    def frame(self, experiment: str) -> tuple[pd.DataFrame, list[dict]]:
        """One experiment's records, or a panel's: "a+b" joins experiments that share the initial pool per seed
        (DAAL Fig. 4 draws VAAL, LL and DAAL from the Fig. 3 runs), each method taken from the one that runs it."""
        if "+" in experiment and experiment not in self.cache:
            parts = experiment.split("+")
            frames = [self.frame(p) for p in parts]
            records = self.records(parts)
            owners = [m for df, _ in frames for m in df.method.unique()]
            dup = sorted({m for m in owners if owners.count(m) > 1})
            if dup:
                raise NotComparable(f"{experiment}: method(s) {dup} run in more than one of {parts}")
            self.cache[experiment] = (pd.concat([df for df, _ in frames], ignore_index=True), records)
        if experiment not in self.cache:
            if experiment not in dict(self.params.experiments):
                raise NotComparable(f"no experiment {experiment!r} in params.yaml (not built yet)")
            exp = self.params.experiment(experiment)
            try:
                records = load_records(self.params.results_dir, experiment, exp.methods, exp.seeds, self.params)
            except RecordError as e:
                raise NotComparable(str(e)) from None
            self.cache[experiment] = (stages_frame(records), records)
        return self.cache[experiment]

    def records(self, experiments) -> list[dict]:
        recs = [r for e in experiments for r in self.frame(e)[1]]
        try:
            check_pool_identity(recs, across_experiments=True)
        except RecordError as e:
            raise NotComparable(str(e)) from None
        return recs


def _provenance(records: list[dict]) -> tuple[list[str], list[str]]:
    runs = [r["_path"] for r in records]
    commits = [((r.get("provenance") or {}).get("git") or {}).get("commit") or "unknown" for r in records]
    return runs, commits


def _resolve(name: str, df: pd.DataFrame, groups: dict) -> str:
    if name in groups:
        chosen = resolve_groups(df, {name: groups[name]})
        if name not in chosen:
            raise NotComparable(f"no member of group {name} {groups[name]} was run")
        return chosen[name]
    if not (df.method == name).any():
        raise NotComparable(f"method {name!r} was not run")
    return name


def _judge_pair(claim: dict, df: pd.DataFrame, a: str, b: str) -> tuple[bool, list[dict], int]:
    column = claim.get("metric", "accuracy")
    column = "value" if column in CURVE_METRICS else column
    vals = paired_values(df, a, b, column)
    chosen = select_stages(list(vals), claim["stages"])
    if not chosen:
        raise NotComparable(f"no stage selected by stages: {claim['stages']} for {a} vs {b}")
    per_stage = []
    for st in chosen:
        labeled, seeds, d = vals[st]
        if not np.isfinite(d).all():
            raise NotComparable(f"{column} is NaN for {a} or {b} at stage {st}")
        per_stage.append({"stage": st, "labeled": labeled, **stage_test(claim["kind"], d, claim.get("margin"))})
    ok = combine([s["holds"] for s in per_stage], claim["require"])
    return ok, per_stage, min(s["n"] for s in per_stage)


def judge_comparisons(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    evidence, records, ok_all, n_min = [], [], True, None
    for cmp in claim["comparisons"]:
        records += ev.records(cmp["experiments"])
        for experiment in cmp["experiments"]:
            df, _ = ev.frame(experiment)
            than = _resolve(cmp["than"], df, groups)
            for better in cmp["better"]:
                b = _resolve(better, df, groups)
                ok, stages, n = _judge_pair(claim, df, b, than)
                ok_all &= ok
                n_min = n if n_min is None else min(n_min, n)
                evidence.append({"experiment": experiment, "better": better, "better_method": b, "than": cmp["than"],
                                 "than_method": than, "stages_holding": sum(s["holds"] for s in stages),
                                 "stages": len(stages), "holds": ok, "per_stage": stages})
    return Judgement(ok_all, evidence, *_provenance(records), n_min or 0)


def judge_parity(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    evidence, ok_all, n_min = [], True, None
    records = ev.records(claim["experiments"])
    names = claim["methods"]
    ref = claim.get("reference")
    pairs = [(ref, m) for m in names if m != ref] if ref else [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    for experiment in claim["experiments"]:
        df, _ = ev.frame(experiment)
        resolved = {n: _resolve(n, df, groups) for n in set(names) | ({ref} if ref else set())}
        for a, b in pairs:
            ok, stages, n = _judge_pair(claim, df, resolved[a], resolved[b])
            ok_all &= ok
            n_min = n if n_min is None else min(n_min, n)
            evidence.append({"experiment": experiment, "a": a, "a_method": resolved[a], "b": b, "b_method": resolved[b],
                             "stages_holding": sum(s["holds"] for s in stages), "stages": len(stages), "holds": ok,
                             "per_stage": stages})
    return Judgement(ok_all, evidence, *_provenance(records), n_min or 0)


def judge_rho(kind: str, rhos: dict[int, float], claim: dict) -> bool:
    """similarity: every seed's rho >= min_rho; dissimilarity: every seed's |rho| < max_abs_rho."""
    vals = list(rhos.values())
    if not vals or not all(np.isfinite(vals)):
        return False
    if kind == "similarity":
        return all(r >= claim["min_rho"] for r in vals)
    return all(abs(r) < claim["max_abs_rho"] for r in vals)


def judge_rankings(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    from scipy.stats import spearmanr

    from repro.report.rankings_fig import load_scores

    params = ev.params
    name = claim["rankings"]
    if name not in dict(params.rankings):
        raise NotComparable(f"no rankings {name!r} in params.yaml")
    try:
        scores = load_scores(params, name)
    except RecordError as e:
        raise NotComparable(str(e)) from None
    of = params.ranking(name).of
    df, records = ev.frame(of)  # group choice: the same as the curve figure of `of`
    pools = {r["seed"]: r["initial_pool_sha256"] for r in records}
    for s, v in scores.items():
        have = str(v["initial_pool_sha256"]) if "initial_pool_sha256" in v else None
        if have != pools.get(s):
            raise NotComparable(f"rankings {name} seed {s}: initial pool {str(have)[:12]} is not the one {of}'s runs "
                                f"started from ({str(pools.get(s))[:12]}); re-run `python -m repro rank {name}`")
    a, b = (_resolve(n, df, groups) if n in groups else n for n in claim["pair"])
    for m in (a, b):
        if any(m not in v for v in scores.values()):
            raise NotComparable(f"rankings {name} have no scores for {m!r}")
    rhos = {int(s): float(spearmanr(v[a], v[b]).statistic) for s, v in scores.items()}
    ok = judge_rho(claim["kind"], rhos, claim)
    bound = {"min_rho": claim["min_rho"]} if claim["kind"] == "similarity" else {"max_abs_rho": claim["max_abs_rho"]}
    ev_row = {"pair": claim["pair"], "methods": [a, b], "rho_per_seed": rhos,
              "rho_mean": float(np.mean(list(rhos.values()))), **bound, "holds": ok}
    runs = [str(Path(params.results_dir) / name / f"seed{s}.npz") for s in scores]
    return Judgement(ok, [ev_row], runs, _provenance(records)[1], len(rhos))


def judge_numeric(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    """A stated number beside the suite's measurement: the per-seed values (or paired differences / ratios) at
    the evidence's stage, scaled to the claim's unit; it holds when |mean - value| is within twice the combined
    std (the paper's where stated, ours over seeds) or the claim's tolerance."""
    e = claim.get("evidence")
    if not e:
        why = " ".join(str(claim.get("note") or "").split())
        raise NotComparable("no run of the suite measures it" + (f": {why}" if why else " yet"))
    if "parameters" in e:
        return judge_parameters(claim, e["parameters"], Path(ev.params.reports_dir) / "parameters.json")
    if "table" in e:
        return judge_table_ratio(ev.params, claim, e["table"])
    df, records = ev.frame(e["experiment"])
    names = [_resolve(e["method"], df, groups)]
    other = e.get("minus") or e.get("over")
    if other:
        names.append(_resolve(other, df, groups))
    stage = int(df.stage.max()) if e.get("stage", "last") == "last" else int(e["stage"])
    if not (df.stage == stage).any():
        raise NotComparable(f"{e['experiment']} has no stage {stage}")
    at = df[df.stage == stage]
    per = [at[at.method == m].set_index("seed").value.astype(float) * e.get("scale", 1) for m in names]
    seeds = sorted(set(per[0].index).intersection(*[set(p.index) for p in per[1:]]))
    a = per[0].loc[seeds].to_numpy()
    vals = a if not other else (a - per[1].loc[seeds].to_numpy() if claim["kind"] == "difference"
                                else a / per[1].loc[seeds].to_numpy())
    if not len(vals) or not np.isfinite(vals).all():
        raise NotComparable(f"no finite measurement at stage {stage} of {e['experiment']}")
    mean = float(vals.mean())
    ours = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
    combined = float(np.hypot(claim.get("std") or 0.0, ours if np.isfinite(ours) else 0.0))
    bound = max(2 * combined, claim.get("tolerance") or 0.0)
    ok = abs(mean - claim["value"]) <= bound
    row = {"experiment": e["experiment"], "method": names[0], "other": names[1] if other else None,
           "stage": stage, "labeled": int(at.labeled.iloc[0]), "measured_mean": mean, "measured_std": ours,
           "n": len(vals), "paper": claim["value"], "paper_std": claim.get("std"), "unit": claim["unit"],
           "delta": mean - claim["value"], "bound": bound, "holds": ok}
    used = [r for r in records if r["method"] in names]
    return Judgement(ok, [row], *_provenance(used), len(vals))


def judge_table_ratio(params: Params, claim: dict, where: dict) -> Judgement:
    """A stated time ratio against a sampling table artifact (reports/<artifact>.json). The papers timed GPUs:
    a ratio measured on another kind of device is `not comparable` (shown with its value)."""
    import json

    path = Path(params.reports_dir) / f"{where['artifact']}.json"
    if not path.is_file():
        raise NotComparable(f"{path} is missing (run `python -m repro figure {where['artifact']}`)")
    table = json.loads(path.read_text())
    row = next((q for q in table["ratios"] if q["of"] == where["of"]), None)
    if row is None or row["ours"] is None:
        raise NotComparable(f"{path} has no time ratio of {where['of']}")
    if table["device"] != "cuda":
        raise NotComparable(f"the paper timed a GPU; {where['artifact']} was measured on {table['device']} "
                            f"({where['of']} / {row['over']} = {row['ours']:.1f}x here vs {claim['value']}x in the paper)")
    ok = abs(row["ours"] - claim["value"]) <= claim["tolerance"]
    ev_row = {"measured_ratio": row["ours"], "of": where["of"], "over": row["over"], "paper": claim["value"],
              "delta": row["ours"] - claim["value"], "bound": claim["tolerance"], "holds": ok, "device": table["device"]}
    return Judgement(ok, [ev_row], [str(path)], [((table.get("git") or {}).get("commit")) or "unknown"], 0, exact=True)


_PARAMETER_ROWS: dict | None = None


def judge_parameters(claim: dict, where: dict, table_json: Path | None = None) -> Judgement:
    """A printed parameter count beside the count of the instantiated modules (`python -m repro params`):
    deterministic, so it holds when |ours - printed| <= the claim's tolerance (the printed rounding)."""
    global _PARAMETER_ROWS
    if _PARAMETER_ROWS is None:
        if table_json is not None and table_json.is_file():  # the `parameters` stage's output (no torch here)
            table = json.loads(table_json.read_text())["rows"]
        else:
            from repro.params_table import rows

            table = rows()
        _PARAMETER_ROWS = {(r["method"], r["setting"], r["module"]): r["parameters"] for r in table}
    key = (where["method"], where["setting"], where["module"])
    if key not in _PARAMETER_ROWS:
        raise NotComparable(f"`python -m repro params` has no row {key}")
    ours = _PARAMETER_ROWS[key]
    bound = claim.get("tolerance") or 0.0
    ok = abs(ours - claim["value"]) <= bound
    row = {"parameters": ours, "method": where["method"], "setting": where["setting"], "module": where["module"],
           "paper": claim["value"], "delta": ours - claim["value"], "bound": bound, "holds": ok}
    return Judgement(ok, [row], ["python -m repro params"], [], 0, exact=True)


JUDGES = {"value": judge_numeric, "difference": judge_numeric, "ratio": judge_numeric,
          "ordering": judge_comparisons, "not_better": judge_comparisons, "parity": judge_parity,
          "similarity": judge_rankings, "dissimilarity": judge_rankings}


def verdict(j: Judgement) -> tuple[str, str | None]:
    """(verdict, reason): no verdict without evidence or on fewer than MIN_SEEDS paired seeds."""
    if not j.evidence:
        return "not comparable", "no evidence"
    if j.exact:
        return ("reproduced" if j.ok else "deviates"), None
    if j.n_min < MIN_SEEDS:
        return "not comparable", f"n = {j.n_min} seeds < {MIN_SEEDS}"
    return ("reproduced" if j.ok else "deviates"), None


def audit(params: Params, tables: Path | str = "paper_tables", paper_params: Params | None = None) -> dict:
    """Every claim judged; plus protocol drift (stated hyper-parameters beside `paper_params`, the paper
    profile) and the paper-vs-code differences with their variants' measured effects."""
    from repro.report.protocol import code_differences, protocol_drift

    ev = Evidence(params)
    rows = []
    registries = load_registries(tables)
    for paper, reg in registries.items():
        groups = (reg["protocol"] or {}).get("groups", {}) or {}
        for claim in reg["claims"]:
            row = {"id": claim["id"], "paper": paper, "where": claim["where"], "kind": claim["kind"],
                   "quote": claim["quote"], "rule": describe_rule(claim), "setting": claim["setting"],
                   "profile": params.profile}
            try:
                j = JUDGES[claim["kind"]](ev, claim, groups)
                v, reason = verdict(j)
                row.update(verdict=v, evidence=j.evidence, runs=sorted(set(j.runs)), commits=sorted(set(j.commits)),
                           n_seeds=j.n_min)
                if reason:
                    row.update(reason=reason, rule_on_this_evidence="holds" if j.ok else "fails")
            except NotComparable as e:
                row.update(verdict="not comparable", reason=str(e), evidence=[], runs=[], commits=[], n_seeds=0)
            for key in ("note", "reading"):
                if claim.get(key):
                    row[key] = claim[key]
            rows.append(row)
    counts = Counter(r["verdict"] for r in rows)
    verdicts = ("reproduced", "deviates", "not comparable")
    per_paper = {p: {v: sum(1 for r in rows if r["paper"] == p and r["verdict"] == v) for v in verdicts}
                 for p in dict.fromkeys(r["paper"] for r in rows)}
    summary = {"profile": params.profile, "claims": len(rows), "min_seeds": MIN_SEEDS,
               "verdicts": {params.profile: {v: counts.get(v, 0) for v in verdicts}}, "per_paper": per_paper,
               "git": git_commit()}
    drift = protocol_drift(registries, paper_params)
    summary["protocol_drift"] = {s: sum(1 for d in drift if d["status"] == s) for s in ("matches", "differs")}
    return {"summary": summary, "claims": rows, "protocol_drift": drift,
            "code_differences": code_differences(registries, params, lambda e: ev.frame(e)[0])}


def headline_accuracies(params: Params) -> dict[str, float]:
    """Each paper's own method at the last stage of every experiment that runs it (mean test accuracy, mIoU or
    VOC07 mAP over seeds, %, the key prefixed by the metric): the numbers `dvc exp show` sets side by side."""
    out = {}
    for name, exp in params.experiments:
        if exp.paper not in exp.methods:
            continue
        try:
            records = load_records(params.results_dir, name, [exp.paper], exp.seeds, params)
        except RecordError:
            continue
        prefix = "acc" if exp.metric == "accuracy" else exp.metric  # miou_..., map50_voc07_... for the dense ones
        out[f"{prefix}_{name}_{exp.paper}"] = round(100 * float(np.mean([r["stages"][-1]["value"] for r in records])), 3)
    return out


def headline_metrics(result: dict) -> dict:
    """The audit's verdict counts and the headline accuracies, flat (what `dvc metrics show` / `dvc exp show`
    print)."""
    s = result["summary"]
    out = {"claims": s["claims"], **{v.replace(" ", "_"): n for v, n in s["verdicts"][s["profile"]].items()}}
    out.update(result.get("headline") or {})
    for paper, counts in (s.get("per_paper") or {}).items():
        out.update({f"{paper}_{v.replace(' ', '_')}": n for v, n in counts.items()})
    out.update({f"protocol_{k}": n for k, n in (s.get("protocol_drift") or {}).items()})
    return out


def build_audit(params: Params, tables: Path | str = "paper_tables", paper_params: Params | None = None
                ) -> tuple[Path, Path]:
    result = audit(params, tables, paper_params)
    result["headline"] = headline_accuracies(params)
    out = Path(params.reports_dir)
    js, md = out / "audit.json", out / "audit.md"
    atomic_write_json(js, result)
    atomic_write_json(out / "metrics.json", headline_metrics(result))
    atomic_write_text(md, render_markdown(result))
    return js, md
