"""The audit as Markdown (reports/audit.md): verdict counts per paper, one row per claim with its rule and the
evidence behind it, the protocol-drift table and the paper-vs-code differences. Judging is in `audit.py`."""

from __future__ import annotations

import math


def _stage_delta(s: dict) -> str:
    """One stage of a paired comparison, in accuracy points: mean Δ [95% t-interval; 95% bootstrap]."""
    t, b = s.get("ci95") or [math.nan] * 2, s.get("bootstrap_ci95") or [math.nan] * 2
    return (f"{s['labeled']}: {100 * s['mean']:+.2f} [t {100 * t[0]:+.2f}, {100 * t[1]:+.2f}; "
            f"boot {100 * b[0]:+.2f}, {100 * b[1]:+.2f}]")


def _cell(row: dict) -> str:
    parts = []
    for e in row["evidence"]:
        if "measured_ratio" in e:
            parts.append(f"{e['of']} / {e['over']} on {e['device']}: {e['measured_ratio']:.2f}x vs paper {e['paper']}x "
                         f"(Δ {e['delta']:+.2f}, tolerance {e['bound']})")
        elif "parameters" in e:
            parts.append(f"python -m repro params: {e['method']} {e['module']} ({e['setting']}): {e['parameters']:,} "
                         f"vs paper {e['paper']:,.0f} (Δ {e['delta']:+,.0f}, tolerance {e['bound']:,.0f})")
        elif "measured_mean" in e:
            of = f" vs {e['other']}" if e["other"] else ""
            parts.append(f"{e['experiment']}: {e['method']}{of} at stage {e['stage']} ({e['labeled']} labeled): "
                         f"{e['measured_mean']:.2f} ± {e['measured_std']:.2f} {e['unit']} (n = {e['n']}) vs paper "
                         f"{e['paper']} (Δ {e['delta']:+.2f}, bound {e['bound']:.2f})")
        elif "rho_mean" in e:
            per = ", ".join(f"{r:.2f}" for r in e["rho_per_seed"].values())
            parts.append(f"rho({e['methods'][0]}, {e['methods'][1]}) per seed: {per}")
        elif "better" in e:
            per = ", ".join(_stage_delta(s) for s in e["per_stage"])
            parts.append(f"{e['experiment']}: {e['better_method']} vs {e['than_method']} holds at "
                         f"{e['stages_holding']}/{e['stages']} (Δ per stage: {per})")
        else:
            parts.append(f"{e['experiment']}: {e['a_method']} ~ {e['b_method']} holds at "
                         f"{e['stages_holding']}/{e['stages']}")
    text = "; ".join(parts)
    if row["verdict"] == "not comparable":
        tail = f" (the rule {row['rule_on_this_evidence']} on this evidence)" if "rule_on_this_evidence" in row else ""
        text = f"{row['reason']}{tail}" + (f" — {text}" if text else "")
    if row.get("note"):
        text += f"<br>note: {row['note']}"
    return _md(text)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell (a bare | would split the cell)."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: dict) -> str:
    s = result["summary"]
    counts = s["verdicts"][s["profile"]]
    lines = [
        "# Claims audit", "",
        f"Profile **{s['profile']}** (commit {(s['git'] or {}).get('commit') or 'unknown'}): "
        f"{counts['reproduced']} reproduced, {counts['deviates']} deviate, {counts['not comparable']} not comparable "
        f"of {s['claims']} claims.", "",
        f"No claim gets `reproduced` or `deviates` on fewer than {s['min_seeds']} paired seeds (seeds share the "
        "initial pool); absence claims (`not_better`, `parity`) are equivalence tests with the margin stated in the "
        "claim; stale, incomplete or NaN evidence is `not comparable`. Each row's rule is written under it. "
        "Smoke-profile rows are computed the same way on reduced runs: they test the machinery, not the paper.",
        "", "| paper | reproduced | deviates | not comparable |", "| --- | --- | --- | --- |",
        *[f"| {p} | {c['reproduced']} | {c['deviates']} | {c['not comparable']} |"
          for p, c in (s.get("per_paper") or {}).items()],
        "", "| claim | where | verdict | evidence |", "| --- | --- | --- | --- |",
    ]
    for r in result["claims"]:
        lines.append(f"| `{r['id']}`<br>rule: {_md(r['rule'])} | {_md(r['where'])} | **{r['verdict']}** ({r['profile']}) | {_cell(r)} |")
    drift = result.get("protocol_drift") or []
    if drift:
        lines += ["", "## Protocol drift", "",
                  "Each hyper-parameter the paper states beside the `paper` profile's value (params.yaml).", "",
                  "| paper | hyper-parameter | stated | ours | status |", "| --- | --- | --- | --- | --- |"]
        for d in drift:
            status = d["status"] + (f" — {d['reason']}" if d.get("reason") and d["status"] == "differs" else "")
            lines.append(f"| {d['paper']} | {_md(d['name'])} | {_md(str(d['stated']))} | "
                         f"{_md(str(d.get('ours', '')))} | {_md(status)} |")
    diffs = result.get("code_differences") or []
    if diffs:
        lines += ["", "## Paper vs official code", "", "| paper | what | paper says | code does | variant | effect |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for d in diffs:
            lines.append(f"| {d['registry']} | {_md(str(d['what']))} | {_md(str(d['paper_says']))} | {_md(str(d['code_does']))} | "
                         f"{_md(str(d['variant']))} | {_md(str(d['effect']))} |")
    lines += ["", "Quotes, settings, per-stage differences with their intervals and the run records behind every number "
              "are in `reports/audit.json`."]
    return "\n".join(lines) + "\n"
