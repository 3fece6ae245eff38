"""Embedding figures (ADS Fig. 4): t-SNE of the task model's features of labeled vs unlabeled samples over the
first active-learning iterations, one row per method, and a number per stage for the alignment the picture shows.

ADS Sec. "Progressive Distribution Alignment" reads Fig. 4 as ADS aligning "the distributions of unlabeled samples
with those of labeled samples more efficiently" than the single-classifier random baseline. A t-SNE plane cannot
carry that claim (it distorts distances and changes with its seed), so each panel's title holds a two-sample
distance measured in the ORIGINAL feature space: the unbiased squared maximum mean discrepancy (MMD², Gretton et
al. 2012, JMLR, Lemma 6) between the labeled and the unlabeled features, Gaussian kernel at the median-heuristic
bandwidth, features L2-normalised first so the numbers compare across methods and stages. Smaller = better
aligned. It is the mean +/- sd over every seed of the experiment; the paired difference of each method minus the
baseline (the LAST method of the figure) over the seeds that share an initial pool is reported beside it.

The features come from the loop (`repro.al.loop.stage_features`, for the experiment's `features_of` methods):
`results/<experiment>/<method>/seed<k>.features.npz`, arrays `stage<s>_{features,indices,labels,labeled,
labeled_sha256}` and `params_sha256`. This module imports no torch.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from repro.report.plotting import save_figure  # noqa: E402
from repro.report.stats import t_interval  # noqa: E402
from repro.spec.artifacts import EmbeddingFigure  # noqa: E402
from repro.spec.layout import features_beside
from repro.spec.params import Params  # noqa: E402
from repro.spec.records import atomic_write_json, git_commit  # noqa: E402
from repro.spec.runs import RecordError, load_records

FIELDS = ("features", "indices", "labels", "labeled", "labeled_sha256")  # per stage (repro.al.loop.FEATURE_FIELDS)
TSNE_PERPLEXITY = 30.0  # the usual value for ~1,000 points (van der Maaten & Hinton 2008 suggest 5-50)
TSNE_RANDOM_STATE = 0


# ---- the alignment number -------------------------------------------------------------------------------------

def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (float64; an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, clipped at 0 against rounding."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(z: np.ndarray) -> float:
    """The median heuristic: the median Euclidean distance between distinct points of `z` (1.0 when it is 0)."""
    n = len(z)
    if n < 2:
        return 1.0
    iu = np.triu_indices(n, 1)
    med = float(np.median(np.sqrt(squared_distances(z, z)[iu])))
    return med if med > 0 else 1.0


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD between samples x (m, d) and y (n, d) (Gretton et al. 2012, JMLR, Lemma 6):

        MMD²_u = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)

    with the Gaussian kernel k(a, b) = exp(-||a - b||² / (2 sigma²)), sigma = `bandwidth` or else the median
    heuristic on the pooled sample. Symmetric in (x, y); near 0 (possibly slightly negative) for two samples of one
    distribution. Needs at least 2 points on each side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"MMD² needs at least 2 points per sample, got {m} and {n}")
    z = np.concatenate([x, y])
    sigma = float(bandwidth) if bandwidth is not None else median_bandwidth(z)
    k = np.exp(-squared_distances(z, z) / (2.0 * sigma * sigma))
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def alignment_mmd2(features: np.ndarray, labeled: np.ndarray) -> float:
    """MMD²_u between the L2-normalised features of the labeled and of the unlabeled samples."""
    f = l2_normalise(features)
    labeled = np.asarray(labeled, dtype=bool)
    return mmd2_unbiased(f[labeled], f[~labeled])


def _mean_sd(values) -> tuple[float, float | None]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


# ---- reading the runs' features -------------------------------------------------------------------------------

def features_file(record: dict) -> Path:
    """The features file beside a run record (repro.spec.layout)."""
    return features_beside(record["_path"])


def load_stage_features(record: dict, stages) -> dict[int, dict[str, np.ndarray]]:
    """{stage: {field: array}} of a run's saved features, checked to belong to this record (same params, same
    labeled set at every stage): a missing file, a missing stage or a mismatch is a RecordError."""
    path = features_file(record)
    run = f"{record['experiment']}/{record['method']}/seed{record['seed']}"
    rerun = f"re-run it (`dvc repro`, or `python -m repro run {record['experiment']} {record['method']}`)"
    if not path.is_file():
        raise RecordError(f"missing features {path} of run {run}: it saves them only when {record['method']!r} is in "
                          f"experiments.{record['experiment']}.features_of; {rerun}")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RecordError(f"features {path} are unreadable ({e}); delete them and {rerun}") from None
    have = (record.get("provenance") or {}).get("params_sha256")
    if "params_sha256" not in arrays or str(arrays["params_sha256"]) != have:
        raise RecordError(f"features {path} were made with other params than the record {record['_path']}; {rerun}")
    out = {}
    for stage in stages:
        if stage >= len(record["stages"]):
            raise RecordError(f"{record['_path']}: the figure asks for stage {stage} but the run has "
                              f"{len(record['stages'])} stage(s) (experiments.{record['experiment']}.schedule)")
        lacking = [f for f in FIELDS if f"stage{stage}_{f}" not in arrays]
        if lacking:
            saved = sorted({int(k[5:].partition("_")[0]) for k in arrays if k.startswith("stage")})
            raise RecordError(f"features {path} lack stage {stage} ({', '.join(lacking)}; saved stages {saved}); "
                              f"{rerun}")
        s = {f: arrays[f"stage{stage}_{f}"] for f in FIELDS}
        if str(s["labeled_sha256"]) != record["stages"][stage].get("labeled_sha256"):
            raise RecordError(f"features {path} stage {stage} were taken on another labeled set than the record "
                              f"{record['_path']} says; {rerun}")
        out[stage] = s
    return out


def _collect(params: Params, fig: EmbeddingFigure) -> tuple[list[dict], dict[tuple[str, int], dict]]:
    exp = params.experiment(fig.experiment)
    absent = [m for m in fig.methods if m not in exp.features_of]
    if absent:
        raise RecordError(f"{fig.key}: experiments.{fig.experiment}.features_of lacks {absent}; add them (the loop "
                          f"saves features only for those methods) and re-run `dvc repro`")
    if fig.seed not in exp.seeds:
        raise RecordError(f"{fig.key}: draws seed {fig.seed}, which is not in experiments.{fig.experiment}.seeds "
                          f"{list(exp.seeds)}")
    records = load_records(params.results_dir, fig.experiment, fig.methods, exp.seeds, params)
    return records, {(r["method"], r["seed"]): load_stage_features(r, fig.stages) for r in records}


def shown_stages(params: Params, fig: EmbeddingFigure) -> EmbeddingFigure:
    """The figure's stages that the active profile's schedule has (a reduced profile may run fewer stages
    than the paper's four iterations); an error when none is left."""
    exp = params.experiment(fig.experiment)
    n = len(exp.schedule.labeled_counts(exp.pool_size()))
    stages = tuple(s for s in fig.stages if s < n)
    if not stages:
        raise RecordError(f"{fig.key}: none of stages {list(fig.stages)} exists in experiments.{fig.experiment} "
                          f"({n} stage(s))")
    return replace(fig, stages=stages)


# ---- summary, figure ------------------------------------------------------------------------------------------

def _summarise(params: Params, fig: EmbeddingFigure, records: list[dict], feats: dict) -> dict:
    seeds = sorted({r["seed"] for r in records})
    labeled_count = {(r["method"], r["seed"], s["stage"]): s["labeled"] for r in records for s in r["stages"]}
    mmd = {(m, st, sd): alignment_mmd2(feats[(m, sd)][st]["features"], feats[(m, sd)][st]["labeled"])
           for m in fig.methods for st in fig.stages for sd in seeds}
    alignment = []
    for m in fig.methods:
        for st in fig.stages:
            vals = [mmd[(m, st, sd)] for sd in seeds]
            mean, sd_ = _mean_sd(vals)
            f = feats[(m, fig.seed)][st]
            alignment.append({"method": m, "stage": st, "labeled": labeled_count[(m, fig.seed, st)],
                              "mmd2_mean": mean, "mmd2_std": sd_, "n": len(vals),
                              "per_seed": {int(sd): v for sd, v in zip(seeds, vals)},
                              "sampled": {"labeled": int(f["labeled"].sum()), "unlabeled": int((~f["labeled"]).sum())}})
    baseline = fig.methods[-1]
    differences = []
    for m in fig.methods[:-1]:
        for st in fig.stages:
            d = [mmd[(m, st, sd)] - mmd[(baseline, st, sd)] for sd in seeds]
            mean, sd_ = _mean_sd(d)
            lo, hi = t_interval(np.asarray(d))
            differences.append({"method": m, "minus": baseline, "stage": st, "mean": mean, "std": sd_, "n": len(d),
                                "ci95": None if math.isnan(lo) else [lo, hi],
                                "per_seed": {int(sd): v for sd, v in zip(seeds, d)}})
    return {
        "artifact": fig.key, "title": fig.title, "profile": params.profile, "experiment": fig.experiment,
        "methods": list(fig.methods), "baseline": baseline, "stages": list(fig.stages), "seeds": seeds,
        "drawn_seed": fig.seed,
        "measure": {"name": "mmd2_unbiased", "kernel": "gaussian exp(-|a-b|^2 / (2 sigma^2))",
                    "bandwidth": "median heuristic: sigma = median distance between the pooled labeled and "
                                 "unlabeled features",
                    "features": "task model's penultimate features, L2-normalised, original feature space",
                    "reads": "smaller = labeled and unlabeled distributions better aligned"},
        "alignment": alignment, "differences": differences,
        "tsne": {"seed": fig.seed, "perplexity": TSNE_PERPLEXITY, "init": "pca", "random_state": TSNE_RANDOM_STATE,
                 "input": "L2-normalised features"},
        "runs": [r["_path"] for r in records], "features": [str(features_file(r)) for r in records],
        "git": git_commit(),
    }


def embedding_summary(params: Params, fig: EmbeddingFigure) -> dict:
    """The figure's numbers: per (method, stage) the labeled-vs-unlabeled MMD² over every seed, and per stage the
    paired difference of each method minus the baseline (the figure's last method). RecordError when a run
    record or its features are missing, stale or short of a stage."""
    fig = shown_stages(params, fig)
    records, feats = _collect(params, fig)
    return _summarise(params, fig, records, feats)


def tsne_2d(features: np.ndarray, random_state: int = TSNE_RANDOM_STATE) -> np.ndarray:
    """(n, 2) t-SNE of the L2-normalised features (PCA init, fixed seed; perplexity 30, less for tiny samples)."""
    from sklearn.manifold import TSNE

    x = l2_normalise(features).astype(np.float32)
    perplexity = min(TSNE_PERPLEXITY, max(1.0, (len(x) - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=random_state).fit_transform(x)


def _class_colours(labels: np.ndarray, num_classes: int) -> np.ndarray:
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "gist_rainbow")
    return cmap((labels % cmap.N) if num_classes <= 20 else labels / max(num_classes - 1, 1))


def draw_embedding(summary: dict, feats: dict, png: Path) -> None:
    methods, stages, seed = summary["methods"], summary["stages"], summary["drawn_seed"]
    align = {(a["method"], a["stage"]): a for a in summary["alignment"]}
    diff = {(d["method"], d["stage"]): d for d in summary["differences"]}
    num_classes = 1 + max(int(feats[(m, seed)][st]["labels"].max()) for m in methods for st in stages)
    f, axes = plt.subplots(len(methods), len(stages), figsize=(3.7 * len(stages), 3.9 * len(methods)),
                           squeeze=False)

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    for i, m in enumerate(methods):
        for j, st in enumerate(stages):
            ax, s = axes[i][j], feats[(m, seed)][st]
            xy = tsne_2d(s["features"])
            lab = s["labeled"].astype(bool)
            colours = _class_colours(s["labels"], num_classes)
            ax.scatter(xy[~lab, 0], xy[~lab, 1], s=5, marker="o", c=colours[~lab], alpha=0.55, linewidths=0,
                       rasterized=True)
            ax.scatter(xy[lab, 0], xy[lab, 1], s=26, marker="^", c=colours[lab], edgecolors="black",
                       linewidths=0.35, rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            a = align[(m, st)]
            title = (f"{m}, stage {st} ({a['labeled']} labeled)\n"
                     f"MMD² {fmt(a['mmd2_mean'])} ± {fmt(a['mmd2_std'])} (n={a['n']})")
            if (m, st) in diff:
                d = diff[(m, st)]
                title += f"\nΔ vs {d['minus']}: {d['mean']:+.4f} ± {fmt(d['std'])}"
            ax.set_title(title, fontsize=8.5)
    handles = [Line2D([], [], marker="^", ls="", color="grey", markeredgecolor="black", label="labeled"),
               Line2D([], [], marker="o", ls="", color="grey", label="unlabeled (colour = class)")]
    axes[0][0].legend(handles=handles, loc="best", fontsize=7, framealpha=0.8)
    caption = (f"t-SNE of seed {seed}'s features (triangles labeled, dots unlabeled, colour = class)\n"
               f"MMD²: labeled vs unlabeled in the original feature space (smaller = aligned), mean ± sd over "
               f"{len(summary['seeds'])} seed(s)")
    save_figure(f, png, f"{summary['title']}\n{caption}", summary["profile"], dpi=110)


def build_embedding_figure(params: Params, fig: EmbeddingFigure) -> tuple[Path, Path]:
    """reports/<paper>/<name>.png (t-SNE panels, methods x stages) and .json (`embedding_summary`)."""
    fig = shown_stages(params, fig)
    records, feats = _collect(params, fig)
    summary = _summarise(params, fig, records, feats)
    out = Path(params.reports_dir) / fig.paper
    png, js = out / f"{fig.name}.png", out / f"{fig.name}.json"
    draw_embedding(summary, feats, png)
    atomic_write_json(js, summary)
    return png, js
