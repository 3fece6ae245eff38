"""Nightly regression check: every artifact JSON under reports/ against the committed baseline
(reports/baseline/), structure exactly, numbers statistically (issue 21, item 2).

Exact: the set of artifacts, panels, series and stages, each point's labeled count and seed count, each panel's
seeds (a changed schedule, pool, seed list or default shows here), protocol tables and parameter counts (a
sampling table's timings depend on the machine and are not compared). A series of a group is keyed by the
group's name (DAL's `Uncertainty`); its member is metadata: a changed member is reported and that series is not
tested (it would compare two methods), nothing fails on it. A verdict of the audit that moves is reported, never
a failure (a claim removed from the registry is structural and fails).

Statistical, one test per artifact x panel x series (curve series, results-table rows, ranking pairs' rho):
per seed, the mean of the metric over the stages after the first (stage 0 is the initial pool that every
method of a seed shares, so it carries no method's effect); paired with the baseline by seed,
d_s = current - baseline in points (accuracy / mIoU / mAP x 100, table cells in %, rho x 100). Two-sided paired
t-test of mean(d) = 0, then Holm's step-down over every test of the nightly at family-wise alpha = 1%: on a
re-run whose numbers moved by noise only (another CPU type's kernels) P(any failure) <= 1% whatever the
dependence between tests (Holm needs none), as far as each test's p is valid (the moderated variance below is
exact when the noise is normal and its variance the same across a panel; the simulations say how far it bends).

Why a moderated variance. The smoke profile runs 2 seeds (DAL: 5), so a series' own t-test has 1 (4) df: it
keeps its false-alarm rate (exact on normal d) but has no power under Holm over ~230 tests, where the smallest p
must be < 0.01 / 230: |t| > 14,600 at 1 df, > 19 at 4 df, so a 5-point shift at 5 seeds is found only when d
spreads by less than ~0.6 points over seeds. The series of a panel (one dataset, model, metric, seed list) share
their noise source, so each series' variance is shrunk toward a prior, in the form of Smyth's moderated t
(Stat. Appl. Genet. Mol. Biol. 3:3, 2004): s~^2 = (d0 s0^2 + (n-1) s^2) / (d0 + n - 1), t on d0 + n - 1 df. The
prior s0^2 pools the other series of the panel (D_P df), shrunk toward the nightly's pooled variance s_G^2 with
G0 = 4 pseudo-df, s0^2 = (SS_P + G0 s_G^2) / (D_P + G0), so that a panel whose other series did not move at all
(metrics on the smoke test sets move in 0.2-0.5-point steps: ties are common) does not make a one-image change
significant; d0 = min(D_P + G0, D0_MAX = 10): no prior counts for more than 10 seeds, which keeps the test honest
when the noise differs between series (the t on exactly D_P df would assume it equal). Only where the whole
nightly has zero variance is s~ = 0: d all 0 gives p = 1, equal nonzero d a detected shift, p = 0.

Measured by simulation at the committed baseline's family (226 tests: 199 series at 2 seeds, 27 at 5; per-seed
values re-drawn around the baseline per stage, rounded to 0.5 points; 1,000 nightlies of the full JSON path,
the 200 of tests/test_regression.py agree): noise sd uniform in [1, 2] points per series: 0.1% of nightlies
fail; a planted 5-point shift in one 5-seed series (DAL) is found in 100%, in one 2-seed series in 41% (little
power at 2 seeds: 1 df of its own). Sixfold unequal noise (sd in [0.5, 3]): 0.9% fail, 95% / 16% found. Noise
proportional to each panel's seed spread (0.35-7 points): 0.3% fail (a 5-point shift is then inside DAL
MNIST's noise). Tiny noise (sd 0.1-0.5, mostly ties): 0.3% fail. The ordinary per-series t-test with the s = 0
rule alone fails every simulated nightly: at 2 seeds, ties of nonzero d on the 0.5-point grid are common.

A series without per-seed values (a baseline written before they were stored) falls back to a fixed tolerance on
the mean over the stages after the first (FALLBACK_TOLERANCE, outside the family).

Refresh the baseline deliberately (after a reviewed change of results): `python -m repro regress --refresh`,
then commit reports/baseline/.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

ALPHA = 0.01  # family-wise false-alarm rate of one nightly (Holm over every test)
G0 = 4  # pseudo-df of the nightly's pooled variance in each panel's prior (a panel whose other series tied)
D0_MAX = 10  # most df a series' prior counts for (keeps false alarms <= 1% with unequal noise; docstring)
# points; only for a series without per-seed values (old baselines), outside the Holm family
FALLBACK_TOLERANCE = {"metric": 6.0, "rho": 8.0}
RESOLUTION = 1e-4  # points: differences below are float32 rounding (a metric stored as float32 carries ~7 digits)
FAILING = ("changed", "missing in current", "claim removed", "shifted")


@dataclass
class Comparison:
    """What `compare` found: `checks` (structural differences and reported metadata, one row each) and `tests`
    (one row per series: n, shift in points, p, Holm threshold, status), the family size and alpha."""

    checks: list[dict] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)
    alpha: float = ALPHA

    @property
    def family(self) -> int:
        return sum(1 for t in self.tests if t["p"] is not None)

    @property
    def failing(self) -> list[dict]:
        return [r for r in self.checks + self.tests if r["status"] in FAILING]

    @property
    def rows(self) -> list[dict]:
        return self.checks + self.tests


def artifact_files(root: Path) -> dict[str, Path]:
    """{<paper>/<name>: path} of the artifact JSONs under a reports directory (the baseline itself excluded)."""
    return {f"{p.parent.name}/{p.stem}": p for p in sorted(Path(root).glob("*/*.json"))
            if p.parent.name != "baseline" and "." not in p.stem}  # (not the per-panel `.plot.json` files)


def _check(where, what, baseline, current, status) -> dict:
    return {"where": where, "what": what, "baseline": baseline, "current": current, "status": status}


def series_test(where, pool, kind, d=None, member=None, shift=None) -> dict:
    """A series to judge: `d` its per-seed differences in points (None: no per-seed values, `shift` is then the
    difference of the means, judged against FALLBACK_TOLERANCE); `pool` names the series that share its noise
    (its panel: one dataset, model, metric and seed list)."""
    if d is not None:  # float32 metrics: equal values may differ in the 7th digit; below RESOLUTION is equal
        d = np.round(np.asarray(d, dtype=float) / RESOLUTION) * RESOLUTION
    return {"where": where, "pool": pool, "kind": kind, "d": d, "member": member,
            "n": 0 if d is None else len(d), "shift": shift, "p": None, "df": None, "threshold": None, "status": None}


# --- series of a curve figure ---------------------------------------------------------------------------------

def series_key(series: dict, groups: dict) -> tuple[str, str | None]:
    """(key, member) of a curve series: a group's series by the group's name, its member as metadata. Accepts the
    label form "Uncertainty (entropy)" of baselines written while the member was re-chosen per run."""
    if series.get("member"):
        return series["label"], series["member"]
    for g, m in (groups or {}).items():
        if series.get("method") == m and series["label"] in (g, f"{g} ({m})"):
            return g, m
    return series["label"], None


def _stage(points: list[dict], panel_seeds: list) -> dict:
    """One stage of a series from its point(s): labeled count(s), seed count, mean, and {seed: value} (None when
    the values cannot be matched to seeds). A point carries `seeds` (its values' seeds); older ones do not, and
    then its values are the panel's seeds in order when their counts agree. A stage has several points when
    seeds differ in labeled amount or fraction (MAL's imbalanced CIFAR100: a pool per seed)."""
    by_seed: dict | None = {}
    for pt in points:
        vals = pt.get("values")
        seeds = pt.get("seeds") or (panel_seeds if len(points) == 1 else None)
        if vals is None or seeds is None or len(seeds) != len(vals) or by_seed is None:
            by_seed = None
        else:
            by_seed.update(zip(seeds, vals))
    n = sum(int(pt["n"]) for pt in points)
    return {"labeled": tuple(sorted({int(pt["labeled"]) for pt in points})), "n": n,
            "mean": sum(pt["mean"] * pt["n"] for pt in points) / max(n, 1), "by_seed": by_seed}


def _curve_series(fig: dict) -> dict[tuple[str, str], dict]:
    out = {}
    for panel in fig.get("panels", []):
        pkey = panel.get("experiment") or panel["title"]
        seeds = list(panel.get("seeds") or [])
        for s in panel["series"]:
            key, member = series_key(s, panel.get("groups"))
            stages: dict[int, list] = {}
            for pt in s["points"]:
                stages.setdefault(int(pt["stage"]), []).append(pt)
            out[(pkey, key)] = {"member": member, "stages": {st: _stage(pts, seeds) for st, pts in stages.items()}}
    return out


def _later_stages(b: dict, c: dict) -> list[int]:
    """The stages after the first (the shared initial pool) that both have."""
    first = min(b)
    return sorted(st for st in set(b) & set(c) if st > first)


def _paired_means(b: dict[int, dict], c: dict[int, dict], scale: float) -> np.ndarray | None:
    """Per seed both ran at every stage after the first: current - baseline of the mean over those stages, x
    scale; None when the per-seed values are missing (then the caller compares means)."""
    stages = _later_stages(b, c)
    if not stages or any(x[st]["by_seed"] is None for x in (b, c) for st in stages):
        return None
    seeds = sorted(set.intersection(*(set(x[st]["by_seed"]) for x in (b, c) for st in stages)), key=str)
    return np.array([scale * np.mean([c[st]["by_seed"][sd] - b[st]["by_seed"][sd] for st in stages])
                     for sd in seeds], dtype=float)


def _mean_shift(b: dict[int, dict], c: dict[int, dict], scale: float) -> float:
    stages = _later_stages(b, c)
    return scale * float(np.mean([c[st]["mean"] - b[st]["mean"] for st in stages])) if stages else 0.0


def _compare_stages(where: str, b: dict[int, dict], c: dict[int, dict], checks: list) -> None:
    """Exact: every stage present in both, with the same labeled count(s) and seed count."""
    for st in sorted(set(b) | set(c)):
        if st not in b or st not in c:
            checks.append(_check(f"{where} stage {st}", "stage", b[st]["labeled"] if st in b else None,
                                 c[st]["labeled"] if st in c else None,
                                 "missing in current" if st not in c else "new (not in baseline)"))
        elif (b[st]["labeled"], b[st]["n"]) != (c[st]["labeled"], c[st]["n"]):
            checks.append(_check(f"{where} stage {st}", "labeled, seeds", (b[st]["labeled"], b[st]["n"]),
                                 (c[st]["labeled"], c[st]["n"]), "changed"))


def _compare_curves(name: str, base: dict, cur: dict, checks: list, tests: list) -> None:
    bs, cs = _curve_series(base), _curve_series(cur)
    bpanels = {p.get("experiment") or p["title"]: p for p in base.get("panels", [])}
    cpanels = {p.get("experiment") or p["title"]: p for p in cur.get("panels", [])}
    for pk in sorted(set(bpanels) & set(cpanels)):
        b, c = bpanels[pk].get("seeds"), cpanels[pk].get("seeds")
        if b != c:
            checks.append(_check(f"{name} {pk}", "seeds", b, c, "changed"))
    for key in sorted(set(bs) | set(cs)):
        where = f"{name} {key[0]}/{key[1]}"
        if not _present_in_both(checks, where, "series", key in bs, key in cs):
            continue
        b, c = bs[key], cs[key]
        _compare_stages(where, b["stages"], c["stages"], checks)
        if b["member"] != c["member"]:
            checks.append(_check(where, "group member (not tested)", b["member"], c["member"], "member changed"))
            continue
        d = _paired_means(b["stages"], c["stages"], 100.0)
        tests.append(series_test(where, f"{name} {key[0]}", "metric", d, member=c["member"],
                           shift=_mean_shift(b["stages"], c["stages"], 100.0) if d is None else None))


def _present_in_both(checks: list, where: str, what: str, in_base: bool, in_cur: bool) -> bool:
    """True when both sides have it; else a check row: 'missing in current' (failing) or 'new (not in baseline)'."""
    if in_base and in_cur:
        return True
    checks.append(_check(where, what, "present" if in_base else None, "present" if in_cur else None,
                         "missing in current" if not in_cur else "new (not in baseline)"))
    return False


# --- tables and rankings --------------------------------------------------------------------------------------

def _compare_results_table(name: str, base: dict, cur: dict, checks: list, tests: list) -> None:
    """A results table (ADS Tables 1-2, MAL supp. Table 2): each row is a series, its cells the stages, in %;
    per-seed values are stored in seed order (`repro/report/tables.py`), paired by position."""
    def measured(rows) -> dict[str, dict[int, dict]]:  # a cell without a measurement: a paper stage not run
        return {r["label"]: {int(c["stage"]): _stage([c["measured"]], list(range(c["measured"]["n"])))
                             for c in r["cells"] if c.get("measured")} for r in rows}

    brows, crows = measured(base["rows"]), measured(cur.get("rows", []))
    for label in sorted(set(brows) | set(crows)):
        where = f"{name} {label}"
        if not _present_in_both(checks, where, "row", label in brows, label in crows):
            continue
        b, c = brows[label], crows[label]
        _compare_stages(where, b, c, checks)
        d = _paired_means(b, c, 1.0)
        tests.append(series_test(where, name, "metric", d, shift=_mean_shift(b, c, 1.0) if d is None else None))


def _compare_pairs(name: str, base: dict, cur: dict, checks: list, tests: list) -> None:
    """Ranking pairs (DAL Fig. 3): Spearman rho per seed, x 100; a pair of groups keyed by the groups' names."""
    bp = {(p["a"], p["b"]): p for p in base["pairs"]}
    cp = {(p["a"], p["b"]): p for p in cur.get("pairs", [])}
    for key in sorted(set(bp) | set(cp)):
        where = f"{name} rho({key[0]}, {key[1]})"
        if not _present_in_both(checks, where, "pair", key in bp, key in cp):
            continue
        b, c = bp[key], cp[key]
        members = ((b.get("method_a"), b.get("method_b")), (c.get("method_a"), c.get("method_b")))
        if members[0] != members[1]:
            checks.append(_check(where, "group member (not tested)", members[0], members[1], "member changed"))
            continue
        brho, crho = b.get("rho_per_seed"), c.get("rho_per_seed")
        if brho is None or crho is None:
            tests.append(series_test(where, name, "rho", shift=100 * (c["rho_mean"] - b["rho_mean"])))
            continue
        if sorted(brho) != sorted(crho):
            checks.append(_check(where, "seeds", sorted(brho), sorted(crho), "changed"))
        common = sorted(set(brho) & set(crho), key=str)
        tests.append(series_test(where, name, "rho", [100 * (crho[s] - brho[s]) for s in common]))


def compare_figure(name: str, base: dict, cur: dict) -> tuple[list[dict], list[dict]]:
    """(structural checks, series to test) of one artifact."""
    checks, tests = [], []
    if "panels" in base:
        _compare_curves(name, base, cur, checks, tests)
    rows = base.get("rows") or []
    if rows and "cells" in rows[0]:
        _compare_results_table(name, base, cur, checks, tests)
    elif rows and "active" in rows[0]:  # a protocol table: exact
        bp = {r["label"]: r["active"] for r in rows}
        cp = {r["label"]: r["active"] for r in cur.get("rows", [])}
        checks += [_check(f"{name} {k}", "protocol", bp.get(k), cp.get(k), "changed")
                   for k in sorted(set(bp) | set(cp)) if bp.get(k) != cp.get(k)]
    elif rows:  # a sampling table: timings depend on the machine; parameter counts must not move
        bp = {r["method"]: r.get("parameters") for r in rows}
        cp = {r["method"]: r.get("parameters") for r in cur.get("rows", [])}
        checks += [_check(f"{name} {m}", "parameters", bp.get(m), cp.get(m), "changed")
                   for m in sorted(set(bp) | set(cp)) if bp.get(m) != cp.get(m)]
    if "pairs" in base:
        _compare_pairs(name, base, cur, checks, tests)
    return checks, tests


def compare_audit(base: dict, cur: dict) -> list[dict]:
    """Verdict moves are reported ("moved"), never a failure: a verdict is a test at 5% per claim on few seeds,
    so some move between runs on noise alone. A claim removed from the registry fails (structural)."""
    rows = []
    bv = {c["id"]: c["verdict"] for c in base.get("claims", [])}
    cv = {c["id"]: c["verdict"] for c in cur.get("claims", [])}
    for cid in sorted(set(bv) | set(cv)):
        b, c = bv.get(cid), cv.get(cid)
        if cid not in cv:
            rows.append(_check(f"audit {cid}", "verdict", b, None, "claim removed"))
        elif cid not in bv:
            rows.append(_check(f"audit {cid}", "verdict", None, c, "new (not in baseline)"))
        elif b != c:
            rows.append(_check(f"audit {cid}", "verdict", b, c, "moved"))
    return rows


# --- the statistics -------------------------------------------------------------------------------------------

def moderated_p(mean, s2, n, s02, d0) -> tuple[np.ndarray, np.ndarray]:
    """(two-sided p, df) of mean(d) = 0 per series (arrays): the series' own variance s^2 (n - 1 df) moderated
    toward a prior variance s0^2 worth d0 df (Smyth 2004): s~^2 = (d0 s0^2 + (n - 1) s^2) / (d0 + n - 1), t on
    d0 + n - 1 df (d0 = 0: the ordinary paired t-test). With s~ = 0: p = 1 when d is all 0, else 0 (a detected
    shift)."""
    mean, s2, n, s02, d0 = (np.asarray(x, dtype=float) for x in (mean, s2, n, s02, d0))
    df = d0 + n - 1
    var = (d0 * s02 + (n - 1) * s2) / df
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(mean) / np.sqrt(var / n)
    p = np.where(var > 0, 2 * stats.t.sf(np.where(var > 0, t, 0.0), df), np.where(mean == 0, 1.0, 0.0))
    return p, df


def paired_p(d, prior: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """`moderated_p` of one series' differences `d`, `prior` = (s0^2, d0)."""
    d = np.asarray(d, dtype=float)
    p, df = moderated_p(d.mean(), d.var(ddof=1), len(d), *prior)
    return float(p), float(df)


def priors(tests: list[dict]) -> list[tuple[float, float]]:
    """Per test, its prior (s0^2, d0): the pooled variance of the other series of its panel (their df D_P),
    shrunk toward the nightly's pooled variance with G0 pseudo-df: s0^2 = (SS_P + G0 s_G^2) / (D_P + G0);
    d0 = min(D_P + G0, D0_MAX)."""
    ss = np.array([(t["n"] - 1) * float(np.var(t["d"], ddof=1)) for t in tests])
    df = np.array([t["n"] - 1 for t in tests], dtype=float)
    s_g2 = float(ss.sum() / df.sum()) if df.sum() else 0.0
    pools: dict[str, list[int]] = {}
    for i, t in enumerate(tests):
        pools.setdefault(t["pool"], []).append(i)
    out = [(0.0, 0.0)] * len(tests)
    for members in pools.values():
        ss_p, df_p = ss[members].sum(), df[members].sum()
        for i in members:
            rest_ss, rest_df = ss_p - ss[i], df_p - df[i]
            out[i] = ((rest_ss + G0 * s_g2) / (rest_df + G0), min(rest_df + G0, D0_MAX))
    return out


def holm(p, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down: (rejected, each test's threshold alpha / (m - rank)); stops at the first p above its
    threshold. Family-wise error <= alpha under any dependence (Holm 1979)."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    thresholds = np.empty(m)
    thresholds[order] = alpha / (m - np.arange(m))
    rejected = np.zeros(m, dtype=bool)
    for i in order:
        if p[i] > thresholds[i]:
            break
        rejected[i] = True
    return rejected, thresholds


def judge(tests: list[dict], alpha: float = ALPHA) -> None:
    """Fill each test's shift, p, df, Holm threshold and status in place. Series with fewer than 2 paired seeds
    are left out of the family ("untested"), as are those without per-seed values (FALLBACK_TOLERANCE)."""
    family = [t for t in tests if t["d"] is not None and t["n"] >= 2]
    for t in tests:
        if t["d"] is None:
            t["status"] = "ok" if abs(t["shift"]) <= FALLBACK_TOLERANCE[t["kind"]] else "shifted"
            t["threshold"] = f"|shift| <= {FALLBACK_TOLERANCE[t['kind']]}"
            continue
        t["shift"] = float(np.mean(t["d"])) if t["n"] else 0.0
        if t["n"] < 2:
            t["status"] = "untested (< 2 seeds)"
    if family:
        s02, d0 = np.array(priors(family)).T
        p, df = moderated_p([t["shift"] for t in family], [np.var(t["d"], ddof=1) for t in family],
                            [t["n"] for t in family], s02, d0)
        for t, pi, dfi in zip(family, p, df):
            t["p"], t["df"] = float(pi), float(dfi)
        rejected, thresholds = holm([t["p"] for t in family], alpha)
        for t, r, thr in zip(family, rejected, thresholds):
            t["threshold"], t["status"] = float(thr), "shifted" if r else "ok"


# --- the nightly ----------------------------------------------------------------------------------------------

def compare_reports(base: dict[str, dict], cur: dict[str, dict], base_audit: dict | None = None,
                    cur_audit: dict | None = None, alpha: float = ALPHA) -> Comparison:
    """The nightly on loaded JSONs: {artifact: JSON} of the baseline and the current run (and the audits)."""
    out = Comparison(alpha=alpha)
    for name in sorted(set(base) | set(cur)):
        if name not in cur:
            out.checks.append(_check(name, "artifact", "present", None, "missing in current"))
        elif name not in base:
            out.checks.append(_check(name, "artifact", None, "present", "new (not in baseline)"))
        else:
            checks, tests = compare_figure(name, base[name], cur[name])
            out.checks += checks
            out.tests += tests
    if base_audit is not None and cur_audit is not None:
        out.checks += compare_audit(base_audit, cur_audit)
    elif base_audit is not None:
        out.checks.append(_check("audit", "audit.json", "present", None, "missing in current"))
    judge(out.tests, alpha)
    return out


def compare(reports: Path | str = "reports", baseline: Path | str = "reports/baseline",
            alpha: float = ALPHA) -> Comparison:
    reports, baseline = Path(reports), Path(baseline)
    if not baseline.is_dir():
        raise FileNotFoundError(f"{baseline}: no baseline; create one with `python -m repro regress --refresh`")

    def load(files: dict[str, Path]) -> dict[str, dict]:
        return {k: json.loads(p.read_text()) for k, p in files.items()}

    def audit(root: Path) -> dict | None:
        return json.loads((root / "audit.json").read_text()) if (root / "audit.json").is_file() else None

    return compare_reports(load(artifact_files(baseline)), load(artifact_files(reports)), audit(baseline),
                           audit(reports), alpha)


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


def _fmt_p(p) -> str:
    return "-" if p is None else f"{p:.2g}"


def main(reports: str = "reports", baseline: str = "reports/baseline", do_refresh: bool = False) -> int:
    from tabulate import tabulate

    if do_refresh:
        for p in refresh(reports, baseline):
            print(f"baseline: {p}")
        print("commit reports/baseline/ to make it the reference of `nox -s nightly`")
        return 0
    res = compare(reports, baseline)
    print(f"{len(res.tests)} series against {baseline}: per seed the mean over the stages after the first, paired "
          f"by seed; two-sided paired t-tests, variance moderated toward the panel's and the nightly's (prior <= "
          f"{D0_MAX} df); Holm over a family of {res.family} tests at family-wise alpha = {res.alpha}")
    table = [{"series": t["where"] + (f" ({t['member']})" if t["member"] else ""), "n": t["n"],
              "shift (points)": t["shift"], "p": _fmt_p(t["p"]),
              "Holm threshold": t["threshold"] if isinstance(t["threshold"], str) else _fmt_p(t["threshold"]),
              "status": t["status"]}
             for t in sorted(res.tests, key=lambda t: (t["p"] is None, t["p"] or 0.0))]
    print(tabulate(table, headers="keys", tablefmt="github", floatfmt="+.2f"))
    shifted = [t for t in res.tests if t["status"] == "shifted"]
    print(f"{len(shifted)} of {len(res.tests)} series shifted")
    if res.checks:
        print(f"\nstructure and metadata: {len(res.checks)} difference(s) (exact: artifacts, panels, series, stages, "
              "labeled counts, seeds, protocol and parameter tables; group members and verdict moves are reported)")
        print(tabulate(res.checks, headers="keys", tablefmt="github"))
    else:
        print("structure: identical (artifacts, panels, series, stages, labeled counts, seeds, tables); "
              "no verdict moved")
    if res.failing:
        print(f"REGRESSION: {len(res.failing)} failing row(s), marked {'/'.join(FAILING)} above")
        return 1
    return 0
