"""The audit as Markdown (reports/audit.md): verdict counts per paper, one row per claim with its rule and the
evidence behind it, the protocol-drift table and the paper-vs-code differences. Judging is in `audit.py`."""

from __future__ import annotations

import json
import math


def _pts(x: float, scale: float = 100) -> str:
    return f"{scale * x:+.2f}" if math.isfinite(x) else "nan"


def _stage_delta(s: dict) -> str:
    """One unit of a paired comparison, in points: mean delta [interval] and its outcome; a group unit lists each
    member pair."""
    if "members" in s:
        per = "; ".join(f"{'-'.join(p)} {_pts(m['mean'])} [{_pts(m['interval'][0])}, {_pts(m['interval'][1])}]"
                        for p, m in zip(s["pairs"], s["members"]))
        return f"{s['labeled']}: {s['outcome']} ({s['mode']} of: {per})"
    lo, hi = s["interval"]
    return f"{s['labeled']}: {_pts(s['mean'])} [{_pts(lo)}, {_pts(hi)}] {s['outcome']}"


def _identity(e: dict) -> str:
    same = [i for i in e.get("identity", []) if not i["identical"].startswith("0/")]
    return ("; identical queries " + ", ".join(f"{i['a']}={i['b']} {i['identical']}" for i in same)) if same else ""


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
            lo, hi = e["interval90"]
            if e.get("scale") == "log":
                lo, hi = math.exp(lo), math.exp(hi)
            paper_sd = f" ± {e['paper_std']} (runs {e['paper_runs']})" if e.get("paper_std") is not None else ""
            parts.append(f"{e['experiment']}: {e['method']}{of} at {e['labeled']:,} labeled: "
                         f"{e['measured_mean']:.2f} ± {e['measured_std']:.2f} {e['unit']} (n = {e['n']}, 90% interval "
                         f"[{lo:.2f}, {hi:.2f}]) vs paper {e['paper']}{paper_sd} ± τ {e['tolerance']:g}")
        elif "rho_mean" in e:
            per = ", ".join(f"{r:.2f}" for r in e["rho_per_seed"].values())
            parts.append(f"rho({e['methods'][0]}, {e['methods'][1]}) per seed: {per}")
        elif "better" in e:
            per = ", ".join(_stage_delta(s) for s in e["per_stage"])
            parts.append(f"{e['experiment']}: {e['better']} vs {e['than']}: {e['outcome']} (Δ points per labeled "
                         f"amount: {per}){_identity(e)}")
        else:
            per = ", ".join(_stage_delta(s) for s in e["per_stage"])
            parts.append(f"{e['experiment']}: {e['a']} ~ {e['b']}: {e['outcome']} (Δ points: {per}){_identity(e)}")
    text = "; ".join(parts)
    if row["verdict"] == "not comparable":
        tail = f" (the rule gives {row['rule_on_this_evidence']} on this evidence)" if "rule_on_this_evidence" in row else ""
        text = f"{row['reason']}{tail}" + (f" — {text}" if text else "")
    if row.get("seeds_needed_text"):
        text += f"<br>needs: {row['seeds_needed_text']}"
    if row.get("note"):
        text += f"<br>note: {row['note']}"
    return _md(text)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell (a bare | would split the cell)."""
    return text.replace("|", "\\|").replace("\n", " ")


VERDICT_COLUMNS = ("reproduced", "contradicted", "inconclusive", "not comparable")


def render_markdown(result: dict) -> str:
    s = result["summary"]
    counts = s["verdicts"][s["profile"]]
    label = s.get("label", "machinery check")
    lines = [
        "# Claims audit", "",
        f"Profile **{s['profile']}** ({label}; commit {(s['git'] or {}).get('commit') or 'unknown'}): "
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICT_COLUMNS) + f" of {s['claims']} claims.", "",
        ("Only `paper`-profile verdicts are evidence about the papers; this profile's rows check the machinery on "
         "reduced runs." if s["profile"] != "paper" else "These verdicts come from the papers' settings."),
        f"If every one of the {s.get('judged', 0)} judged claims were true (at the edge of its band), chance alone "
        f"would give at most ~{s.get('contradicted_by_chance', 0):g} `contradicted` rows.", "",
        f"A unit is one stage x pair x experiment. `reproduced`: the unit's interval lies inside the claim's band "
        f"(orderings: the 95% t-interval above 0; absence claims and stated values: the 90% interval inside the "
        f"margin); `contradicted`: it lies at or beyond the band's edge; `inconclusive`: neither — the row says "
        f"roughly how many paired seeds the observed spread would need. `not comparable`: fewer than "
        f"{s['min_seeds']} paired seeds, a stand-in dataset, arms that did not differ, records of several commits, "
        "another metric, or stale, incomplete or NaN records. Each row's rule is written under it.",
        "", "| paper | " + " | ".join(VERDICT_COLUMNS) + " |", "| --- | --- | --- | --- | --- |",
        *[f"| {p} | " + " | ".join(str(c.get(v, 0)) for v in VERDICT_COLUMNS) + " |"
          for p, c in (s.get("per_paper") or {}).items()],
        "", "| claim | where | verdict | evidence |", "| --- | --- | --- | --- |",
    ]
    for r in result["claims"]:
        lines.append(f"| `{r['id']}`<br>rule: {_md(r['rule'])} | {_md(r['where'])} | **{r['verdict']}** ({r['profile']}{'' if r['profile'] == 'paper' else ': machinery check'}) | {_cell(r)} |")
    drift = result.get("protocol_drift") or []
    if drift:
        lines += ["", "## Protocol drift", "",
                  "Each hyper-parameter the paper states beside the `paper` profile's value (params.yaml), compared "
                  "once both are written alike (*ours* says how): `differs` rows, a different value, first; then "
                  "`rounding` (a count rounded apart from ours) and `unstated` (a value the paper leaves open).", "",
                  "| paper | hyper-parameter | stated | ours | status |", "| --- | --- | --- | --- | --- |"]
        for d in drift:
            explained = d["status"] in ("differs", "rounding", "unstated")
            status = d["status"] + (f" — {d['reason']}" if d.get("reason") and explained else "")
            lines.append(f"| {d['paper']} | {_md(d['name'])} | {_md(str(d['stated']))} | "
                         f"{_md(str(d.get('how') or d.get('ours', '')))} | {_md(status)} |")
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


def render_claim(row: dict) -> str:
    """One claim as plain text (`python -m repro audit --claim ID`): its rule, verdict, protocol and evidence."""

    lines = [f"{row['id']} ({row['paper']}, {row['where']}, {row['kind']})", f"  quote:   {row['quote']}",
             f"  rule:    {row['rule']}", f"  verdict: {row['verdict']}" + (f" — {row['reason']}" if row.get("reason") else "")]
    if row.get("rule_on_this_evidence"):
        lines.append(f"  the rule on this evidence: {row['rule_on_this_evidence']}")
    if row.get("seeds_needed_text"):
        lines.append(f"  needs:   {row['seeds_needed_text']}")
    lines.append(f"  protocol: {json.dumps(row.get('protocol') or {}, sort_keys=True)}")
    lines.append(f"  evidence: {_cell({**row, 'verdict': 'shown', 'note': None, 'seeds_needed_text': None})}")
    lines += [f"  run: {r}" for r in row.get("runs", [])]
    lines.append(f"  commits: {', '.join(row.get('commits') or []) or 'none'}")
    return "\n".join(lines)
