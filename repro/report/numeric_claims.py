"""Numbers the papers state beside what the suite measured: a value, a paired difference or a ratio at the labeled
amount the claim names (the 90% interval of our mean, Welch with the paper's std and runs, inside value +- tau), a
time ratio from a sampling table, and exact parameter counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from repro.report.claim_points import stage_of
from repro.report.claims import CURVE_METRICS
from repro.report.evidence import Evidence, Judgement, NotComparable, gates_for, metric_column, provenance_of
from repro.report.stats import ALPHA, Band, Sample, Unit, claim_seeds_needed, unit_summary
from repro.spec.params import Params


def numeric_tolerance(claim: dict) -> float:
    """tau, fixed before seeing data: the claim's `tolerance`, else max(1 point, the printed rounding) for
    percentages and points, else the printed rounding (half the last printed digit)."""
    if claim.get("tolerance") is not None:
        return float(claim["tolerance"])
    text = repr(float(claim["value"]))
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
    rounding = 0.5 * 10 ** -decimals
    unit = str(claim.get("unit", ""))
    return max(1.0, rounding) if unit.startswith("%") or unit == "points" else rounding


def _stage_at(df: pd.DataFrame, e: dict, experiment: str) -> int:
    """The stage whose labeled amount is the one the claim states (never a stage index: smoke schedules differ)."""
    at = df.groupby("stage").agg(labeled=("labeled", "first"), fraction=("labeled_fraction", "first"))
    hit = stage_of(list(at.labeled), list(at.fraction), e)
    if hit is None:
        want = f"{e['labeled']:,} labeled" if "labeled" in e else f"{100 * float(e['labeled_fraction']):g}% labeled"
        have = ", ".join(f"{r.labeled} ({100 * r.fraction:.3g}%)" for r in at.itertuples())
        raise NotComparable(f"{experiment} has no stage at {want} (its stages: {have})")
    return int(at.index[hit])


def judge_numeric(ev: Evidence, claim: dict, groups: dict) -> Judgement:
    """A stated number beside the suite's per-seed measurements at the claim's labeled amount, scaled to its unit:
    the 90% interval of our mean (Welch with the paper's std and runs where stated) inside value +- tau."""
    e = claim.get("evidence")
    if not e:
        why = " ".join(str(claim.get("note") or "").split())
        raise NotComparable("no run of the suite measures it" + (f": {why}" if why else " yet"))
    if "parameters" in e:
        return judge_parameters(claim, e["parameters"], Path(ev.params.reports_dir) / "parameters.json")
    if "table" in e:
        return judge_table_ratio(ev.params, claim, e["table"])
    df, records = ev.frame(e["experiment"])
    metric = claim["setting"].get("metric")
    if metric in CURVE_METRICS:
        metric_column({"metric": metric}, ev, e["experiment"])
    names = [e["method"]] + ([e.get("minus") or e.get("over")] if (e.get("minus") or e.get("over")) else [])
    for n in names:
        if n in groups:
            raise NotComparable(f"{n} is a group: a stated value of a group has no member chosen before the data")
        if not (df.method == n).any():
            raise NotComparable(f"method {n!r} was not run")
    try:
        stage = _stage_at(df, e, e["experiment"])
    except NotComparable as err:  # say first when the data are a stand-in anyway
        raise NotComparable("; ".join([*gates_for(ev, [e["experiment"]], records), str(err)])) from None
    at = df[df.stage == stage]
    scale = e.get("scale", 1)
    per = [at[at.method == m].set_index("seed") for m in names]
    seeds = sorted(set(per[0].index).intersection(*[set(p.index) for p in per[1:]]))
    a = per[0].loc[seeds, "value"].to_numpy(dtype=float) * scale
    v, tau = float(claim["value"]), numeric_tolerance(claim)
    gates = []
    if len(names) == 1:
        vals, low, high = a, v - tau, v + tau
    else:
        b = per[1].loc[seeds, "value"].to_numpy(dtype=float) * scale
        same = [x == y for x, y in zip(per[0].loc[seeds, "labeled_sha256"], per[1].loc[seeds, "labeled_sha256"])]
        if same and all(same) and stage > df.stage.min():
            gates.append(f"the arms did not differ: {names[0]} and {names[1]} queried the same labeled sets in every seed")
        if claim["kind"] == "difference":
            vals, low, high = a - b, v - tau, v + tau
        else:
            if not (a > 0).all() or not (b > 0).all() or v - tau <= 0:
                raise NotComparable("a ratio needs positive measurements and value - tolerance > 0")
            vals, low, high = np.log(a / b), math.log(v - tau), math.log(v + tau)
    if not len(vals) or not np.isfinite(vals).all():
        raise NotComparable(f"no finite measurement at stage {stage} of {e['experiment']}")
    extra_var, extra_df = 0.0, math.inf
    if claim.get("std") is not None and claim.get("runs"):
        sd = float(claim["std"]) / (v if claim["kind"] == "ratio" else 1.0)  # the delta method on the log scale
        extra_var, extra_df = sd**2 / claim["runs"], max(claim["runs"] - 1, 1)
    test = at.test_size.dropna()
    floor = scale / float(test.min()) if len(test) and float(np.std(vals)) == 0 else 0.0
    sample = Sample(vals, sd_floor=floor, extra_var=extra_var, extra_df=extra_df)
    unit = Unit(Band(low, high, ALPHA, robust=True), [sample])
    summary = unit_summary(unit)
    mean = float(np.mean(vals))
    row = {"experiment": e["experiment"], "method": names[0], "other": names[1] if len(names) > 1 else None,
           "stage": stage, "labeled": int(at.labeled.iloc[0]), "measured_mean": mean if claim["kind"] != "ratio" else
           float(np.exp(mean)), "measured_std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan,
           "n": len(vals), "paper": v, "paper_std": claim.get("std"), "paper_runs": claim.get("runs"),
           "unit": claim["unit"], "delta": (mean if claim["kind"] != "ratio" else float(np.exp(mean))) - v,
           "tolerance": tau, "interval90": summary["interval"], "outcome": summary["outcome"],
           "scale": "log" if claim["kind"] == "ratio" else "linear"}
    used = [r for r in records if r["method"] in names]
    need = claim_seeds_needed([unit]) if summary["outcome"] == "inconclusive" else None
    return Judgement(summary["outcome"], [row], *provenance_of(used), len(vals),
                     gates=gates + gates_for(ev, [e["experiment"]], used), seeds_needed=need,
                     protocol=ev.protocol([e["experiment"]]))


def judge_table_ratio(params: Params, claim: dict, where: dict) -> Judgement:
    """A stated time ratio against a sampling table artifact (reports/<artifact>.json). The papers timed GPUs:
    a ratio measured on another kind of device is `not comparable` (shown with its value)."""

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
    outcome = "reproduced" if ok else "contradicted"
    ev_row = {"measured_ratio": row["ours"], "of": where["of"], "over": row["over"], "paper": claim["value"],
              "delta": row["ours"] - claim["value"], "bound": claim["tolerance"], "outcome": outcome,
              "device": table["device"]}
    return Judgement(outcome, [ev_row], [str(path)], [((table.get("git") or {}).get("commit")) or "unknown"], 0,
                     exact=True)


_PARAMETER_ROWS: dict | None = None


def judge_parameters(claim: dict, where: dict, table_json: Path | None = None) -> Judgement:
    """A printed parameter count beside the count of the instantiated modules (`python -m repro params`): an
    exact quantity, reproduced when |ours - printed| <= the claim's tolerance (half the printed unit), else
    contradicted."""
    global _PARAMETER_ROWS
    if _PARAMETER_ROWS is None:
        if table_json is None or not table_json.is_file():  # the `parameters` stage's output (no torch here)
            raise NotComparable(f"{table_json or 'reports/parameters.json'} is absent: run "
                                f"`python -m repro params --json reports/parameters.json` (the dvc stage `parameters`)")
        table = json.loads(table_json.read_text())["rows"]
        _PARAMETER_ROWS = {(r["method"], r["setting"], r["module"]): r["parameters"] for r in table}
    key = (where["method"], where["setting"], where["module"])
    if key not in _PARAMETER_ROWS:
        raise NotComparable(f"`python -m repro params` has no row {key}")
    ours = _PARAMETER_ROWS[key]
    bound = claim.get("tolerance") or 0.0
    outcome = "reproduced" if abs(ours - claim["value"]) <= bound else "contradicted"
    row = {"parameters": ours, "method": where["method"], "setting": where["setting"], "module": where["module"],
           "paper": claim["value"], "delta": ours - claim["value"], "bound": bound, "outcome": outcome}
    return Judgement(outcome, [row], ["python -m repro params"], [], 0, exact=True)
