"""Curve figures: metric vs labeled amount, mean +/- std over seeds, PNG + the JSON behind it. Each panel draws
its series from one or more experiments (runs shared between figures are computed once), an optional full-data
reference band, and the registry's claimed values as markers with error bars at the paper's labeled amount."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from repro.report.claim_points import claim_points  # noqa: E402
from repro.report.plotting import save_figure  # noqa: E402
from repro.report.runs import resolve_groups, stages_frame
from repro.spec.artifacts import CurveFigure, Panel  # noqa: E402
from repro.spec.params import METRIC_LABELS, Params  # noqa: E402
from repro.spec.records import atomic_write_json, git_commit  # noqa: E402
from repro.spec.runs import check_pool_identity, load_records


def _points(d) -> list[dict]:
    points = []
    for (stage, labeled, frac), g in d.groupby(["stage", "labeled", "labeled_fraction"]):
        points.append({
            "stage": int(stage), "labeled": int(labeled), "labeled_fraction": float(frac),
            "mean": float(g.value.mean()), "std": float(g.value.std(ddof=1)) if len(g) > 1 else 0.0,
            "n": int(len(g)), "values": [float(v) for v in g.sort_values("seed").value],
            "seeds": [int(v) for v in g.sort_values("seed").seed],  # the values' seeds (the nightly pairs by them)
        })
    return points


def panel_summary(params: Params, fig: CurveFigure, p: Panel, registry: dict | None,
                  paper_params: Params | None) -> dict:
    records, shown_from = [], []
    for experiment, methods in p.sources:
        exp = params.experiment(experiment)
        wanted = list(methods) or list(exp.methods)
        missing = [m for m in wanted if m not in exp.methods]
        if missing:
            raise ValueError(f"{fig.key}: {experiment} has no method(s) {missing}; it runs {list(exp.methods)}")
        records += load_records(params.results_dir, experiment, wanted, exp.seeds, params)
        shown_from += [(experiment, m) for m in wanted]
    # every series of a panel is paired by seed: the same initial pool per seed across its experiments
    check_pool_identity(records, across_experiments=True)
    df = stages_frame(records)
    methods = [m for _, m in shown_from]
    # a group's series is keyed by the group's name; its member (fixed by the group's definition, never chosen
    # on these results: `resolve_groups`) is metadata, shown in the legend
    chosen = resolve_groups(df, {g: list(m) for g, m in fig.groups})
    grouped = {m for _, members in fig.groups for m in members}
    shown = [(g, m, {"member": m}) for g, m in chosen.items()] + [(m, m, {}) for m in methods if m not in grouped]
    source = dict((m, e) for e, m in shown_from)
    series = [{"label": label, "method": m, **meta, "experiment": source[m], "points": _points(df[df.method == m])}
              for label, m, meta in shown]
    first = params.experiment(p.sources[0][0])
    out = {"title": p.title, "experiments": list(p.experiments), "dataset": first.dataset, "backbone": first.backbone,
           "metric": first.metric, "seeds": sorted({int(s) for s in df.seed}), "groups": chosen, "series": series,
           "runs": [r["_path"] for r in records], "reference": None, "claims": []}
    if p.reference:
        exp_name, method = p.reference
        exp = params.experiment(exp_name)
        ref = load_records(params.results_dir, exp_name, [method], exp.seeds, params)
        pts = _points(stages_frame(ref))
        out["reference"] = {"experiment": exp_name, "method": method, **pts[-1], "runs": [r["_path"] for r in ref]}
        out["runs"] += out["reference"]["runs"]
    if registry is not None and paper_params is not None:
        drawn = {(s["experiment"], s["method"]) for s in series}
        if p.reference:
            drawn.add(tuple(p.reference))
        out["claims"] = claim_points(registry, drawn, paper_params)
    return out


def curve_summary(params: Params, fig: CurveFigure, registry: dict | None = None,
                  paper_params: Params | None = None) -> dict:
    """`registry` (the paper's claims) and `paper_params` (the paper profile, for the stated labeled amounts)
    add the claimed values as markers; without them the figure has the measured curves only."""
    return {"artifact": fig.key, "title": fig.title, "profile": params.profile, "x": fig.x, "git": git_commit(),
            "panels": [panel_summary(params, fig, p, registry, paper_params) for p in fig.panels]}


def _x(point: dict, x: str) -> float:
    return point[x] * (100 if x == "labeled_fraction" else 1)


def draw_curves(summary: dict, png: Path) -> None:
    sns.set_theme(style="whitegrid", context="notebook")
    n, x = len(summary["panels"]), summary["x"]
    cols = min(n, 3)
    rows = -(-n // cols)
    f, axes = plt.subplots(rows, cols, figsize=(5.8 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, summary["panels"]):
        palette = dict(zip([s["method"] for s in panel["series"]], sns.color_palette("tab10", len(panel["series"]))))
        for s in panel["series"]:
            xs = [_x(p, x) for p in s["points"]]
            ms = [100 * p["mean"] for p in s["points"]]
            sd = [100 * p["std"] for p in s["points"]]
            color = palette[s["method"]]
            label = s.get("label", s["method"]) + (f" ({s['member']})" if s.get("member") else "")
            ax.plot(xs, ms, marker="o", ms=3, color=color, label=label)
            ax.fill_between(xs, [m - e for m, e in zip(ms, sd)], [m + e for m, e in zip(ms, sd)], color=color, alpha=0.2)
        ref = panel.get("reference")
        if ref:
            m, e = 100 * ref["mean"], 100 * ref["std"]
            ax.axhline(m, color="black", ls="--", lw=1, label=f"all labeled ({ref['method']}, n={ref['n']})")
            ax.axhspan(m - e, m + e, color="black", alpha=0.08)
        # the paper's numbers at the paper's labeled amounts (fractions are comparable across profiles; counts
        # only in the paper profile)
        shown_claims = [c for c in panel.get("claims", []) if x == "labeled_fraction" or summary["profile"] == "paper"]
        for i, c in enumerate(shown_claims):
            cx = 100 * c["labeled_fraction"] if x == "labeled_fraction" else c["labeled"]
            if cx is None:
                continue
            ax.errorbar(cx, c["value"], yerr=c["std"] or 0.0, fmt="*", ms=9, capsize=3,
                        color=palette.get(c["method"], "black"), markeredgecolor="black", markeredgewidth=0.5,
                        label="paper's stated value" if i == 0 else None)
        ax.set_xlabel("% labeled" if x == "labeled_fraction" else "labeled examples")
        ax.set_ylabel(f"test {METRIC_LABELS.get(panel['metric'], panel['metric'])} (%)")
        ax.set_title(f"{panel['title']} ({len(panel['seeds'])} seeds)", fontsize=10)
        ax.legend(title="method", fontsize=7, loc="lower right")
    save_figure(f, png, summary["title"], summary["profile"], dpi=110)


def plot_columns(params: Params, fig: CurveFigure, p: Panel) -> list[str]:
    """The y columns of a panel's DVC plot file: a group's name, else the method."""
    methods = [m for e, ms in p.sources for m in (ms or params.experiment(e).methods)]
    grouped = {m: g for g, members in fig.groups for m in members}
    return list(dict.fromkeys(grouped.get(m, m) for m in methods))


def plot_files(fig: CurveFigure, reports_dir: str | Path = "reports") -> list[Path]:
    return [Path(reports_dir) / fig.paper / f"{fig.name}.p{i}.plot.json" for i in range(len(fig.panels))]


def write_plot_data(summary: dict, fig: CurveFigure, params: Params) -> list[Path]:
    """One flat file per panel for `dvc plots show / diff`: a row per labeled amount, a column per series
    (mean accuracy in %), in the layout DVC's top-level `plots:` reads (dvc.yaml names x and the columns)."""
    paths = plot_files(fig, params.reports_dir)
    for path, panel, p in zip(paths, summary["panels"], fig.panels):
        cols = plot_columns(params, fig, p)
        rows: dict[float, dict] = {}
        for s in panel["series"]:
            col = s["label"]
            if col not in cols:
                continue
            for pt in s["points"]:
                x = round(_x(pt, summary["x"]), 6)
                rows.setdefault(x, {"x": x})[col] = round(100 * pt["mean"], 4)
        atomic_write_json(path, [{c: r.get(c) for c in ["x", *cols]} for _, r in sorted(rows.items())])
    return paths


def build_curve_figure(params: Params, fig: CurveFigure, registry: dict | None = None,
                       paper_params: Params | None = None) -> tuple[Path, Path]:
    out = Path(params.reports_dir) / fig.paper
    summary = curve_summary(params, fig, registry, paper_params)
    png, js = out / f"{fig.name}.png", out / f"{fig.name}.json"
    draw_curves(summary, png)
    write_plot_data(summary, fig, params)
    atomic_write_json(js, summary)
    return png, js
