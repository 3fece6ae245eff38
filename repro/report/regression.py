"""Nightly regression check: every artifact JSON under reports/ against the committed baseline
(reports/baseline/), with per-metric tolerances.

What must match exactly: the set of artifacts, panels, series and stages, each point's labeled count and
number of seeds (a changed schedule, pool or default shows up here), and a table's parameter counts (its
timings depend on the machine and are not compared). What may move within a tolerance: curve
means (accuracy), ranking correlations; beyond it, either way, the check fails (an improvement is a change
too: refresh the baseline deliberately). A claim that was `reproduced` in the baseline and is not now fails;
other verdict moves are listed. Tolerances allow for the float differences of another CPU type (a smoke model
trained on a different vector unit drifts by a few accuracy points on its tiny sets); a changed default that
moves a curve by more than that, or changes its shape, is caught.

Refresh the baseline deliberately (after a reviewed change of results): `python -m repro regress --refresh`,
then commit reports/baseline/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# absolute tolerances per metric (state why in the module docstring; tests pin that they catch a default change)
TOLERANCES = {"accuracy": 0.06, "rho": 0.08}


def artifact_files(root: Path) -> dict[str, Path]:
    """{<paper>/<name>: path} of the artifact JSONs under a reports directory (the baseline itself excluded)."""
    return {f"{p.parent.name}/{p.stem}": p for p in sorted(Path(root).glob("*/*.json"))
            if p.parent.name != "baseline" and "." not in p.stem}  # (not the per-panel `.plot.json` files)


def _points(fig: dict) -> dict[tuple, dict]:
    out = {}
    for panel in fig.get("panels", []):
        for series in panel["series"]:
            for pt in series["points"]:
                out[(panel.get("experiment") or panel["title"], series["label"], pt["stage"])] = pt
    return out


def compare_figure(name: str, base: dict, cur: dict) -> list[dict]:
    rows = []
    if "panels" in base:
        bp, cp = _points(base), _points(cur)
        for key in sorted(set(bp) | set(cp), key=str):
            where = f"{name} {key[0]}/{key[1]} stage {key[2]}"
            if key not in bp or key not in cp:
                rows.append(_row(where, "points", bp.get(key, {}).get("mean"), cp.get(key, {}).get("mean"), 0.0,
                                 "missing in current" if key not in cp else "new (not in baseline)"))
                continue
            b, c = bp[key], cp[key]
            if (b["labeled"], b["n"]) != (c["labeled"], c["n"]):
                rows.append(_row(where, "labeled, seeds", (b["labeled"], b["n"]), (c["labeled"], c["n"]), 0.0, "changed"))
            tol = TOLERANCES["accuracy"]
            rows.append(_row(where, "accuracy", b["mean"], c["mean"], tol,
                             "ok" if abs(c["mean"] - b["mean"]) <= tol else "regression" if c["mean"] < b["mean"] else "changed"))
    if "rows" in base and base["rows"] and "cells" in base["rows"][0]:  # a results table: measured % per cell
        bp = {(r["label"], c["stage"]): c["measured"] for r in base["rows"] for c in r["cells"]}
        cp = {(r["label"], c["stage"]): c["measured"] for r in cur.get("rows", []) for c in r["cells"]}
        for key in sorted(set(bp) | set(cp), key=str):
            b, c = bp.get(key), cp.get(key)
            where = f"{name} {key[0]} stage {key[1]}"
            if (b is None) != (c is None) or b is None:
                if b is not None or c is not None:
                    rows.append(_row(where, "cell", b and b["mean"], c and c["mean"], 0.0,
                                     "missing in current" if c is None else "new (not in baseline)"))
                continue
            tol = 100 * TOLERANCES["accuracy"]
            rows.append(_row(where, "accuracy (%)", b["mean"], c["mean"], tol,
                             "ok" if abs(c["mean"] - b["mean"]) <= tol else "regression" if c["mean"] < b["mean"] else "changed"))
    elif "rows" in base and base["rows"] and "active" in base["rows"][0]:  # a protocol table: exact
        bp = {r["label"]: r["active"] for r in base["rows"]}
        cp = {r["label"]: r["active"] for r in cur.get("rows", [])}
        for k in sorted(set(bp) | set(cp)):
            rows.append(_row(f"{name} {k}", "protocol", bp.get(k), cp.get(k), 0.0, "ok" if bp.get(k) == cp.get(k) else "changed"))
    elif "rows" in base:  # a sampling table: timings depend on the machine; parameter counts must not move
        bp = {r["method"]: r for r in base["rows"]}
        cp = {r["method"]: r for r in cur.get("rows", [])}
        for m in sorted(set(bp) | set(cp)):
            b, c = bp.get(m, {}).get("parameters"), cp.get(m, {}).get("parameters")
            rows.append(_row(f"{name} {m}", "parameters", b, c, 0.0, "ok" if b == c else "changed"))
    if "pairs" in base:
        bp = {(p["a"], p["b"]): p for p in base["pairs"]}
        cp = {(p["a"], p["b"]): p for p in cur.get("pairs", [])}
        for key in sorted(set(bp) | set(cp)):
            where = f"{name} rho({key[0]}, {key[1]})"
            if key not in bp or key not in cp:
                rows.append(_row(where, "rho", None, None, 0.0, "missing in current" if key not in cp else "new"))
                continue
            b, c, tol = bp[key]["rho_mean"], cp[key]["rho_mean"], TOLERANCES["rho"]
            rows.append(_row(where, "rho", b, c, tol, "ok" if abs(c - b) <= tol else "changed"))
    return rows


def compare_audit(base: dict, cur: dict) -> list[dict]:
    rows = []
    bv = {c["id"]: c["verdict"] for c in base.get("claims", [])}
    cv = {c["id"]: c["verdict"] for c in cur.get("claims", [])}
    for cid in sorted(set(bv) | set(cv)):
        b, c = bv.get(cid), cv.get(cid)
        if cid not in cv:
            rows.append(_row(f"audit {cid}", "verdict", b, None, 0.0, "claim removed"))
        elif b == "reproduced" and c != "reproduced":
            rows.append(_row(f"audit {cid}", "verdict", b, c, 0.0, "regression"))
        elif b != c:
            rows.append(_row(f"audit {cid}", "verdict", b, c, 0.0, "moved"))
    return rows


def _row(where, metric, baseline, current, tolerance, status) -> dict:
    delta = current - baseline if isinstance(baseline, float) and isinstance(current, float) else None
    return {"where": where, "metric": metric, "baseline": baseline, "current": current, "delta": delta,
            "tolerance": tolerance, "status": status}


FAILING = ("regression", "changed", "missing in current", "claim removed")


def compare(reports: Path | str = "reports", baseline: Path | str = "reports/baseline") -> list[dict]:
    reports, baseline = Path(reports), Path(baseline)
    if not baseline.is_dir():
        raise FileNotFoundError(f"{baseline}: no baseline; create one with `python -m repro regress --refresh`")
    rows = []
    base_art, cur_art = artifact_files(baseline), artifact_files(reports)
    for name in sorted(set(base_art) | set(cur_art)):
        if name not in cur_art:
            rows.append(_row(name, "artifact", "present", None, 0.0, "missing in current"))
        elif name not in base_art:
            rows.append(_row(name, "artifact", None, "present", 0.0, "new (not in baseline)"))
        else:
            rows += compare_figure(name, json.loads(base_art[name].read_text()), json.loads(cur_art[name].read_text()))
    if (baseline / "audit.json").is_file() and (reports / "audit.json").is_file():
        rows += compare_audit(json.loads((baseline / "audit.json").read_text()),
                              json.loads((reports / "audit.json").read_text()))
    elif (baseline / "audit.json").is_file():
        rows.append(_row("audit", "audit.json", "present", None, 0.0, "missing in current"))
    return rows


def refresh(reports: Path | str = "reports", baseline: Path | str = "reports/baseline") -> list[Path]:
    """Copy the current artifact JSONs and the audit into the baseline (a deliberate, reviewed act)."""
    reports, baseline = Path(reports), Path(baseline)
    written = []
    for name, path in artifact_files(reports).items():
        dest = baseline / f"{name}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        written.append(dest)
    if (reports / "audit.json").is_file():
        baseline.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reports / "audit.json", baseline / "audit.json")
        written.append(baseline / "audit.json")
    return written


def main(reports: str = "reports", baseline: str = "reports/baseline", do_refresh: bool = False) -> int:
    from tabulate import tabulate

    if do_refresh:
        for p in refresh(reports, baseline):
            print(f"baseline: {p}")
        print("commit reports/baseline/ to make it the reference of `nox -s nightly`")
        return 0
    rows = compare(reports, baseline)
    changed = [r for r in rows if r["status"] != "ok"]
    failing = [r for r in rows if r["status"] in FAILING]
    print(f"{len(rows)} comparisons against {baseline}: {len(rows) - len(changed)} ok, {len(changed)} changed, "
          f"{len(failing)} failing (tolerances: {TOLERANCES})")
    if changed:
        print(tabulate(changed, headers="keys", tablefmt="github", floatfmt=".4f"))
    if failing:
        print("REGRESSION: see the rows marked regression/changed/missing above")
        return 1
    return 0
