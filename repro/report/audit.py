"""The audit: every registered claim beside what this suite measured, with one of four verdicts.

- `reproduced` / `contradicted` / `inconclusive`: the claim's rule (repro/report/stats.py) on its units, one per
  stage x pair x experiment; `inconclusive` rows say roughly how many paired seeds the observed spread would need.
- `not comparable` (with the reason; the evidence is still shown where there is some): fewer than MIN_SEEDS paired
  seeds; a stand-in dataset (any dataset other than the claim's own); arms whose queries agree at every judged
  stage in every seed (the arms did not differ); records from different commits; the claim's metric not the
  experiment's; missing, stale, incomplete or NaN records; an experiment not built yet.

Groups (DAL's "Uncertainty" = entropy or least-confidence) are never resolved to a member chosen on the judged
seeds: "X beats the group" needs X to beat every member, "the group beats X" one member at alpha / |G|.
Every number carries the run records and commit it came from.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from repro.report.audit_markdown import render_markdown  # noqa: F401  (re-exported: the audit's Markdown)
from repro.report.claims import NUMERIC_KINDS, load_registries
from repro.report.evidence import (
    Evidence,
    Judgement,
    NotComparable,
    gates_for,
    members_of,
    metric_column,
    provenance_of,
)
from repro.report.numeric_claims import judge_numeric, numeric_tolerance
from repro.report.protocol import code_differences, protocol_drift, status_group
from repro.report.rankings_fig import load_scores
from repro.report.stats import (
    ALPHA,
    MIN_SEEDS,
    Band,
    Sample,
    Unit,
    band_for,
    claim_outcome,
    claim_seeds_needed,
    describe_seeds_needed,
    select_stages,
    unit_summary,
)
from repro.spec.layout import rankings_path
from repro.spec.params import Params
from repro.spec.records import atomic_write_json, atomic_write_text, git_commit
from repro.spec.runs import RecordError, load_records

VERDICTS = ("reproduced", "contradicted", "inconclusive", "not comparable")


def describe_rule(claim: dict) -> str:
    """The claim's test in words (rendered next to the quote in the audit)."""
    kind = claim["kind"]
    if kind == "ratio" and "table" in (claim.get("evidence") or {}):
        return (f"|time ratio on a GPU - {claim['value']}x| <= {claim['tolerance']} (one timing per method; the "
                "paper timed a GPU, so a ratio measured elsewhere is not comparable)")
    if kind in NUMERIC_KINDS and "parameters" in (claim.get("evidence") or {}):
        return (f"|parameters of the instantiated modules - {claim['value']:,.0f}| <= {claim.get('tolerance') or 0:,.0f} "
                "(half the printed unit; an exact count, no seeds)")
    if kind in NUMERIC_KINDS:
        what = {"value": "our mean", "difference": "the mean paired difference",
                "ratio": "the mean per-seed log ratio"}[kind]
        tau = numeric_tolerance(claim)
        welch = " (Welch, with the paper's std and runs)" if claim.get("std") is not None and claim.get("runs") else ""
        return (f"reproduced if the 90% interval of {what}{welch} lies inside {claim['value']} +- {tau:g} "
                f"{claim['unit']}; contradicted if it is disjoint from that band; over >= {MIN_SEEDS} seeds")
    if kind in ("similarity", "dissimilarity"):
        if kind == "similarity":
            return (f"one-sided 95% lower bound of the mean atanh(Spearman rho) over seeds above atanh({claim['min_rho']})"
                    f" (n >= {MIN_SEEDS})")
        return (f"90% interval of the mean atanh(Spearman rho) over seeds inside +-atanh({claim['max_abs_rho']}) "
                f"(n >= {MIN_SEEDS})")
    stages = {"all": "stages", "after_first": "stages after the first", "first_half": "first half of the stages",
              "first_half_after_first": "first half of the stages after the first",
              "first": "first stage (the initial labeled pool)", "last": "last stage"}[claim["stages"]]
    metric = claim.get("metric", "accuracy")
    what = {"ordering": "95% t-interval of the paired difference (better - than) above 0 (contradicted: at or below 0)",
            "not_better": f"one-sided 95% upper bound of (better - than) below +{claim.get('margin')} "
                          f"(contradicted: lower bound at or above it)",
            "parity": f"90% interval of the paired difference inside (-{claim.get('margin')}, +{claim.get('margin')}) "
                      f"(TOST; contradicted: entirely beyond a margin)"}[kind]
    req = ("every unit (contradicted: one at alpha / k)" if claim["require"] == "every"
           else "more than half of the units, each at alpha / k (contradicted: at least half)")
    return f"{what}, at {req}; a unit = one of the {stages} x pair x experiment; on {metric}, over >= {MIN_SEEDS} paired seeds"


def _pair_stages(df: pd.DataFrame, a: str, b: str, column: str) -> dict[int, dict]:
    """Per stage: labeled count, seeds both ran, paired differences a - b, and per seed whether the arms were
    identical (same labeled set; at the first stage, whose labeled set every method shares, the same value too)."""
    out = {}
    for stage, g in df.groupby("stage"):
        pa, pb = g[g.method == a].set_index("seed"), g[g.method == b].set_index("seed")
        seeds = sorted(set(pa.index) & set(pb.index))
        if not seeds:
            continue
        d = (pa.loc[seeds, column] - pb.loc[seeds, column]).to_numpy(dtype=float)
        same = [pa.loc[s, "labeled_sha256"] is not None and pa.loc[s, "labeled_sha256"] == pb.loc[s, "labeled_sha256"]
                and (int(stage) > df.stage.min() or pa.loc[s, "value"] == pb.loc[s, "value"]) for s in seeds]
        test = pa.loc[seeds, "test_size"].dropna()
        out[int(stage)] = {"labeled": int(g.labeled.iloc[0]), "seeds": seeds, "d": d, "identical": same,
                           "test_size": int(test.min()) if len(test) else None}
    return out


def _units_for_pairs(claim: dict, df: pd.DataFrame, pairs: list[tuple[str, str]], mode: str, band: Band,
                     column: str, info: dict) -> tuple[list[Unit], list[dict], list[str]]:
    """One unit per judged stage over `pairs` (several pairs: a group, combined by `mode`); the identity of the
    arms per pair; gates for pairs whose arms never differed."""
    per_pair = {p: _pair_stages(df, *p, column) for p in pairs}
    first = per_pair[pairs[0]]
    chosen = select_stages(list(first), claim["stages"])
    if not chosen:
        raise NotComparable(f"no stage selected by stages: {claim['stages']} for {pairs[0][0]} vs {pairs[0][1]}")
    units, identity, gates = [], [], []
    for a, b in pairs:
        same = [x for st in chosen for x in per_pair[(a, b)].get(st, {}).get("identical", [])]
        identity.append({"a": a, "b": b, "identical": f"{sum(same)}/{len(same)}"})
        if same and all(same):
            gates.append(f"the arms did not differ: {a} and {b} queried the same labeled sets at every judged stage "
                         f"in every seed ({len(same)}/{len(same)})")
    for st in chosen:
        samples = []
        for p in pairs:
            s = per_pair[p].get(st)
            if s is None:
                raise NotComparable(f"{p[0]} vs {p[1]} has no paired seeds at stage {st}")
            if not np.isfinite(s["d"]).all():
                raise NotComparable(f"{column} is NaN for {p[0]} or {p[1]} at stage {st}")
            floor = 0.0
            if len(s["d"]) > 1 and float(np.std(s["d"])) == 0 and not all(s["identical"]) and s["test_size"]:
                floor = 1.0 / s["test_size"]  # equal differences from differing queries: one test example
            samples.append(Sample(s["d"], sd_floor=floor))
        units.append(Unit(band, samples, mode, {**info, "stage": st, "labeled": first[st]["labeled"],
                                                "pairs": [list(p) for p in pairs]}))
    return units, identity, gates


def _mode(kind: str, better_is_group: bool, than_is_group: bool) -> str:
    """ordering: 'the group beats X' needs one member (any), 'X beats the group' every member (all);
    not_better reads the other way round (X not better than the group's best: any)."""
    if kind == "parity":
        return "any"  # parity with a group (or between two): some member pair, at alpha / |pairs|
    if better_is_group and than_is_group:
        raise NotComparable("a group on both sides of an ordering is not supported")
    if kind == "ordering":
        return "any" if better_is_group else "all"
    if kind == "not_better":
        return "any" if than_is_group else "all"
    raise ValueError(f"unknown kind {kind!r}")


def judge_comparisons(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    evidence, records, units, gates, exps = [], [], [], [], []
    band = band_for(claim["kind"], claim.get("margin"))
    for cmp in claim["comparisons"]:
        records += ev.records(cmp["experiments"])
        for experiment in cmp["experiments"]:
            exps.append(experiment)
            column = metric_column(claim, ev, experiment)
            df, _ = ev.frame(experiment)
            than = members_of(cmp["than"], df, groups)
            for better in cmp["better"]:
                b = members_of(better, df, groups)
                mode = _mode(claim["kind"], better in groups, cmp["than"] in groups)
                pairs = [(x, y) for x in b for y in than]
                us, identity, g = _units_for_pairs(claim, df, pairs, mode, band, column,
                                                   {"experiment": experiment, "better": better, "than": cmp["than"]})
                units += us
                gates += g
                evidence.append({"experiment": experiment, "better": better, "than": cmp["than"], "pairs": pairs,
                                 "mode": mode, "identity": identity, "outcome": claim_outcome(us, claim["require"]),
                                 "per_stage": [unit_summary(u) for u in us]})
    return _finish(ev, claim, units, evidence, records, gates, exps)


def judge_parity(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    evidence, units, gates = [], [], []
    records = ev.records(claim["experiments"])
    names, ref = claim["methods"], claim.get("reference")
    band = band_for("parity", claim["margin"])
    pairs = [(ref, m) for m in names if m != ref] if ref else [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    for experiment in claim["experiments"]:
        column = metric_column(claim, ev, experiment)
        df, _ = ev.frame(experiment)
        for a, b in pairs:
            ma, mb = members_of(a, df, groups), members_of(b, df, groups)
            mode = _mode("parity", a in groups, b in groups)
            us, identity, g = _units_for_pairs(claim, df, [(x, y) for x in ma for y in mb], mode, band, column,
                                               {"experiment": experiment, "a": a, "b": b})
            units += us
            gates += g
            evidence.append({"experiment": experiment, "a": a, "b": b, "pairs": [[x, y] for x in ma for y in mb],
                             "mode": mode, "identity": identity, "outcome": claim_outcome(us, claim["require"]),
                             "per_stage": [unit_summary(u) for u in us]})
    return _finish(ev, claim, units, evidence, records, gates, claim["experiments"])


def _finish(ev, claim, units, evidence, records, gates, experiments) -> Judgement:
    outcome = claim_outcome(units, claim.get("require", "every"))
    need = claim_seeds_needed(units, claim.get("require", "every")) if outcome == "inconclusive" else None
    return Judgement(outcome, evidence, *provenance_of(records), min(min(s.n for s in u.samples) for u in units),
                     gates=gates + gates_for(ev, experiments, records), seeds_needed=need,
                     protocol=ev.protocol(experiments))


def judge_rankings(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    """Spearman rho of two methods' rankings of the pool per seed; the rule reads the mean of atanh(rho)."""
    from scipy.stats import spearmanr

    params = ev.params
    name = claim["rankings"]
    if name not in dict(params.rankings):
        raise NotComparable(f"no rankings {name!r} in params.yaml")
    try:
        scores = load_scores(params, name)
    except RecordError as e:
        raise NotComparable(str(e)) from None
    of = params.ranking(name).of
    df, records = ev.frame(of)
    pools = {r["seed"]: r["initial_pool_sha256"] for r in records}
    for s, v in scores.items():
        have = str(v["initial_pool_sha256"]) if "initial_pool_sha256" in v else None
        if have != pools.get(s):
            raise NotComparable(f"rankings {name} seed {s}: initial pool {str(have)[:12]} is not the one {of}'s runs "
                                f"started from ({str(pools.get(s))[:12]}); re-run `python -m repro rank {name}`")
    a_members = groups.get(claim["pair"][0], [claim["pair"][0]])
    b_members = groups.get(claim["pair"][1], [claim["pair"][1]])
    pairs = [(a, b) for a in a_members for b in b_members if all(a in v and b in v for v in scores.values())]
    if not pairs:
        raise NotComparable(f"rankings {name} have no scores for {claim['pair']}")
    if claim["kind"] == "similarity":
        band = Band(math.atanh(claim["min_rho"]), math.inf, ALPHA, robust=True)
        bound = {"min_rho": claim["min_rho"]}
    else:
        band = Band(-math.atanh(claim["max_abs_rho"]), math.atanh(claim["max_abs_rho"]), ALPHA, robust=True)
        bound = {"max_abs_rho": claim["max_abs_rho"]}
    rows, samples = [], []
    for a, b in pairs:
        rhos = {int(s): float(spearmanr(v[a], v[b]).statistic) for s, v in scores.items()}
        if not all(np.isfinite(list(rhos.values()))):
            raise NotComparable(f"rho({a}, {b}) is NaN in a seed")
        samples.append(Sample(np.arctanh(np.clip(list(rhos.values()), -0.999999, 0.999999))))
        rows.append({"pair": claim["pair"], "methods": [a, b], "rho_per_seed": rhos,
                     "rho_mean": float(np.mean(list(rhos.values()))), **bound})
    unit = Unit(band, samples, "any" if len(pairs) > 1 else "all", {"pairs": [list(p) for p in pairs]})
    outcome = unit.outcome()
    for r in rows:
        r["outcome"] = outcome
        r["atanh_interval"] = unit_summary(unit)["interval"]
    runs = [str(rankings_path(params, name, s)) for s in scores]
    need = claim_seeds_needed([unit]) if outcome == "inconclusive" else None
    return Judgement(outcome, rows, runs, provenance_of(records)[1], samples[0].n, gates=gates_for(ev, [of], records),
                     seeds_needed=need, protocol=ev.protocol([of]))


JUDGES = {"value": judge_numeric, "difference": judge_numeric, "ratio": judge_numeric,
          "ordering": judge_comparisons, "not_better": judge_comparisons, "parity": judge_parity,
          "similarity": judge_rankings, "dissimilarity": judge_rankings}


def verdict(j: Judgement) -> tuple[str, str | None]:
    """(verdict, reason): `not comparable` without evidence, on a stand-in, on arms that did not differ, on records
    of several commits, or on fewer than MIN_SEEDS paired seeds; else the rule's outcome."""
    if not j.evidence:
        return "not comparable", "no evidence"
    if j.exact:
        return j.outcome, None
    reasons = list(dict.fromkeys(j.gates))
    if j.n_min < MIN_SEEDS:
        reasons.append(f"n = {j.n_min} paired seeds < {MIN_SEEDS}")
    if reasons:
        return "not comparable", "; ".join(reasons)
    return j.outcome, None


CHANCE_ALPHA = {"ordering": ALPHA / 2}  # a claim's false-contradiction rate at the band's edge (others: ALPHA)


def judge_claim(ev: Evidence, claim: dict, groups: dict, paper: str) -> dict:
    """One claim's audit row."""
    row = {"id": claim["id"], "paper": paper, "where": claim["where"], "kind": claim["kind"], "quote": claim["quote"],
           "rule": describe_rule(claim), "setting": claim["setting"], "profile": ev.params.profile}
    try:
        j = JUDGES[claim["kind"]](ev, claim, groups)
        v, reason = verdict(j)
        row.update(verdict=v, evidence=j.evidence, runs=sorted(set(j.runs)), commits=sorted(set(j.commits)),
                   n_seeds=j.n_min, protocol=j.protocol or {"profile": ev.params.profile})
        if reason:
            row.update(reason=reason, rule_on_this_evidence=j.outcome)
        if j.outcome == "inconclusive" and j.seeds_needed is not None:
            row["seeds_needed"] = j.seeds_needed
            row["seeds_needed_text"] = describe_seeds_needed(j.seeds_needed)
    except NotComparable as e:
        row.update(verdict="not comparable", reason=str(e), evidence=[], runs=[], commits=[], n_seeds=0,
                   protocol={"profile": ev.params.profile})
    for key in ("note", "reading"):
        if claim.get(key):
            row[key] = claim[key]
    return row


def audit(params: Params, tables: Path | str = "paper_tables", paper_params: Params | None = None,
          only: str | None = None) -> dict:
    """Every claim judged (or the claim `only`); plus protocol drift (stated hyper-parameters beside
    `paper_params`, the paper profile) and the paper-vs-code differences with their variants' measured effects."""

    ev = Evidence(params, paper_params)
    rows = []
    registries = load_registries(tables)
    for paper, reg in registries.items():
        groups = (reg["protocol"] or {}).get("groups", {}) or {}
        rows += [judge_claim(ev, c, groups, paper) for c in reg["claims"] if only in (None, c["id"])]
    if only is not None and not rows:
        ids = [c["id"] for reg in registries.values() for c in reg["claims"]]

        near = difflib.get_close_matches(only, ids, 3, cutoff=0.4)
        raise KeyError(f"no claim {only!r} in {tables}" + (f"; did you mean {', '.join(near)}?" if near else ""))
    counts = Counter(r["verdict"] for r in rows)
    per_paper = {p: {v: sum(1 for r in rows if r["paper"] == p and r["verdict"] == v) for v in VERDICTS}
                 for p in dict.fromkeys(r["paper"] for r in rows)}
    judged = [r for r in rows if r["verdict"] in ("reproduced", "contradicted", "inconclusive")
              and r.get("evidence") and not any("parameters" in e or "measured_ratio" in e for e in r["evidence"])]
    summary = {"profile": params.profile, "claims": len(rows), "min_seeds": MIN_SEEDS, "alpha": ALPHA,
               "verdicts": {params.profile: {v: counts.get(v, 0) for v in VERDICTS}}, "per_paper": per_paper,
               "evidence_about_the_papers": params.profile == "paper",
               "label": "evidence about the papers" if params.profile == "paper" else "machinery check",
               "judged": len(judged),
               "contradicted_by_chance": round(sum(CHANCE_ALPHA.get(r["kind"], ALPHA) for r in judged), 2),
               "git": git_commit()}
    if only is not None:
        return {"summary": summary, "claims": rows}
    drift = protocol_drift(registries, paper_params)
    summary["protocol_drift"] = {s: sum(1 for d in drift if status_group(d["status"]) == s)
                                 for s in ("matches", "differs", "rounding", "unstated")}
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
