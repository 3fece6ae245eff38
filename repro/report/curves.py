"""Curve figures: metric vs labeled amount, mean +/- std over seeds, PNG + the JSON behind it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from repro.config import Params  # noqa: E402
from repro.experiments import CurveFigure  # noqa: E402
from repro.records import atomic_write_json, git_commit  # noqa: E402
from repro.report.plotting import save_figure  # noqa: E402
from repro.report.runs import load_records, resolve_groups, stages_frame  # noqa: E402


def curve_summary(params: Params, fig: CurveFigure) -> dict:
    panels = []
    for experiment in fig.experiments:
        exp = params.experiment(experiment)
        records = load_records(params.results_dir, experiment, exp.methods, exp.seeds, params)
        df = stages_frame(records)
        chosen = resolve_groups(df, {g: list(m) for g, m in fig.groups})
        grouped = {m for _, members in fig.groups for m in members}
        shown = [(f"{g} ({m})", m) for g, m in chosen.items()] + [(m, m) for m in exp.methods if m not in grouped]
        series = []
        for label, method in shown:
            d = df[df.method == method]
            points = []
            for (stage, labeled, frac), g in d.groupby(["stage", "labeled", "labeled_fraction"]):
                points.append({
                    "stage": int(stage), "labeled": int(labeled), "labeled_fraction": float(frac),
                    "mean": float(g.value.mean()), "std": float(g.value.std(ddof=1)) if len(g) > 1 else 0.0,
                    "n": int(len(g)), "values": [float(v) for v in g.sort_values("seed").value],
                })
            series.append({"label": label, "method": method, "points": points})
        panels.append({
            "experiment": experiment, "dataset": exp.dataset, "backbone": exp.backbone, "metric": exp.metric,
            "seeds": list(exp.seeds), "groups": chosen, "series": series, "runs": [r["_path"] for r in records],
        })
    return {"artifact": fig.key, "title": fig.title, "profile": params.profile, "x": fig.x,
            "git": git_commit(), "panels": panels}


def draw_curves(summary: dict, fig: CurveFigure, png: Path) -> None:
    sns.set_theme(style="whitegrid", context="notebook")
    n = len(summary["panels"])
    f, axes = plt.subplots(1, n, figsize=(5.8 * n, 4.4), squeeze=False)
    for ax, panel, title in zip(axes[0], summary["panels"], fig.panel_titles or [None] * n):
        palette = sns.color_palette("tab10", len(panel["series"]))
        for color, s in zip(palette, panel["series"]):
            xs = [p[summary["x"]] * (100 if summary["x"] == "labeled_fraction" else 1) for p in s["points"]]
            ms = [100 * p["mean"] for p in s["points"]]
            sd = [100 * p["std"] for p in s["points"]]
            ax.plot(xs, ms, marker="o", ms=3, color=color, label=s.get("label", s["method"]))
            ax.fill_between(xs, [m - e for m, e in zip(ms, sd)], [m + e for m, e in zip(ms, sd)], color=color, alpha=0.2)
        ax.set_xlabel("% labeled" if summary["x"] == "labeled_fraction" else "labeled examples")
        ax.set_ylabel(f"test {panel['metric']} (%)")
        ax.set_title(title or f"{panel['dataset']}, {panel['backbone']} ({len(panel['seeds'])} seeds)")
        ax.legend(title="method", fontsize=8, loc="lower right")
    save_figure(f, png, summary["title"], summary["profile"], dpi=120)


def build_curve_figure(params: Params, fig: CurveFigure) -> tuple[Path, Path]:
    out = Path(params.reports_dir) / fig.paper
    summary = curve_summary(params, fig)
    png, js = out / f"{fig.name}.png", out / f"{fig.name}.json"
    draw_curves(summary, fig, png)
    atomic_write_json(js, summary)
    return png, js
