"""Ranking-vs-ranking figures (DAL Fig. 3): rank of each unlabeled example under two methods, Spearman rho."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.stats import rankdata, spearmanr  # noqa: E402

from repro.report.plotting import save_figure  # noqa: E402
from repro.spec.artifacts import RankingFigure  # noqa: E402
from repro.spec.layout import rankings_path
from repro.spec.params import Params  # noqa: E402
from repro.spec.records import atomic_write_json, git_commit  # noqa: E402
from repro.spec.runs import RecordError


def load_scores(params: Params, rankings: str) -> dict[int, dict[str, np.ndarray]]:
    r = params.ranking(rankings)
    out = {}
    for seed in params.experiment(r.of).seeds:
        path = rankings_path(params, rankings, seed)
        if not path.is_file():
            raise RecordError(f"missing rankings {path}: run `dvc repro` (or `python -m repro rank {rankings}`)")
        with np.load(path) as z:
            out[seed] = {k: z[k] for k in z.files}
    return out


def group_choice(params: Params, fig: RankingFigure) -> dict[str, str]:
    """The group members the curve figure `groups_from` shows for this rankings' experiment."""
    if not fig.groups_from:
        return {}
    path = Path(params.reports_dir) / f"{fig.groups_from}.json"
    if not path.is_file():
        raise RecordError(f"{fig.key} follows {fig.groups_from}'s choice of variants: build {path} first")
    of = params.ranking(fig.rankings).of
    for panel in json.loads(path.read_text())["panels"]:
        if of in panel.get("experiments", [panel.get("experiment")]):
            return panel["groups"]
    raise RecordError(f"{path} has no panel for {of}")


def ranking_summary(params: Params, fig: RankingFigure) -> dict:
    scores = load_scores(params, fig.rankings)
    chosen = group_choice(params, fig)
    pairs = []
    for a, b in fig.pairs:
        ma, mb = chosen.get(a, a), chosen.get(b, b)
        rhos = {int(s): float(spearmanr(v[ma], v[mb]).statistic) for s, v in scores.items()}
        vals = np.array(list(rhos.values()))
        pairs.append({"a": a, "b": b, "method_a": ma, "method_b": mb, "rho_per_seed": rhos,
                      "rho_mean": float(vals.mean()), "rho_std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                      "rho_min": float(vals.min()), "rho_max": float(vals.max())})
    runs = [str(rankings_path(params, fig.rankings, s)) for s in scores]
    return {"artifact": fig.key, "title": fig.title, "profile": params.profile, "rankings": fig.rankings,
            "groups": chosen, "pairs": pairs, "runs": runs, "git": git_commit(),
            "n_unlabeled": int(len(next(iter(scores.values()))["unlabeled"]))}


def draw_rankings(summary: dict, scores: dict[int, dict[str, np.ndarray]], png: Path) -> None:
    sns.set_theme(style="whitegrid", context="notebook")
    n = len(summary["pairs"])
    f, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.6), squeeze=False)
    seed = min(scores)
    v = scores[seed]
    rng = np.random.default_rng(0)
    show = rng.permutation(len(v["unlabeled"]))[:4000]
    for ax, p in zip(axes[0], summary["pairs"]):
        ra = rankdata(-v[p["method_a"]], method="ordinal")  # rank 1 = queried first
        rb = rankdata(-v[p["method_b"]], method="ordinal")
        ax.scatter(ra[show], rb[show], s=2, alpha=0.35, color="tab:blue", rasterized=True)
        ax.plot([0, len(ra)], [0, len(ra)], color="grey", lw=0.8, ls="--")
        ax.set_xlabel(f"rank by {p['a']}" + (f" ({p['method_a']})" if p["a"] != p["method_a"] else ""))
        ax.set_ylabel(f"rank by {p['b']}" + (f" ({p['method_b']})" if p["b"] != p["method_b"] else ""))
        ax.set_title(f"Spearman rho = {p['rho_mean']:.2f} ± {p['rho_std']:.2f}\n"
                     f"(mean ± sd over {len(p['rho_per_seed'])} seeds; points: seed {seed})", fontsize=10)
    save_figure(f, png, summary["title"], summary["profile"], dpi=110)


def build_ranking_figure(params: Params, fig: RankingFigure) -> tuple[Path, Path]:
    out = Path(params.reports_dir) / fig.paper
    summary = ranking_summary(params, fig)
    png, js = out / f"{fig.name}.png", out / f"{fig.name}.json"
    draw_rankings(summary, load_scores(params, fig.rankings), png)
    atomic_write_json(js, summary)
    return png, js
