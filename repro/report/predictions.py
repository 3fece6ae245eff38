"""Prediction figures (ADS Fig. 7): the images a method's first query picked, with each adversarial classifier's
detections drawn over them (redder = higher score), from the run's `predictions_of` file
(results/<experiment>/<method>/seed<k>.predictions.npz, written by `repro.al.loop`). The JSON beside the PNG lists
every drawn box and, per image, how far the two classifiers disagree (the mean |score difference| of their best
boxes, the discrepancy ADS selects by)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from repro.report.plotting import save_figure  # noqa: E402
from repro.spec.artifacts import PredictionFigure  # noqa: E402
from repro.spec.layout import predictions_path
from repro.spec.params import Params  # noqa: E402
from repro.spec.records import atomic_write_json, git_commit  # noqa: E402
from repro.spec.runs import RecordError

CLASSIFIERS = ("c1", "c2")


def predictions_file(params: Params, fig: PredictionFigure) -> Path:
    """The run's first-query predictions (repro.spec.layout.predictions_path)."""
    return predictions_path(params, fig.experiment, fig.method, fig.seed)


def load_predictions(params: Params, fig: PredictionFigure) -> dict[str, np.ndarray]:
    path = predictions_file(params, fig)
    if not path.is_file():
        raise RecordError(f"{path}: missing; run `python -m repro run {fig.experiment}` (its predictions_of lists "
                          f"{fig.method})")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    need = {"images", "indices"} | {f"{c}_{f}" for c in CLASSIFIERS for f in ("boxes", "scores", "labels")}
    missing = sorted(need - set(arrays))
    if missing:
        raise RecordError(f"{path}: lacks {missing}; re-run the experiment")
    return arrays


def summarise(params: Params, fig: PredictionFigure, arrays: dict[str, np.ndarray]) -> dict:
    images = []
    for i, idx in enumerate(arrays["indices"].tolist()):
        entry = {"pool_index": int(idx)}
        for c in CLASSIFIERS:
            keep = arrays[f"{c}_scores"][i] >= 0
            entry[c] = [{"box": [round(float(v), 1) for v in b], "score": round(float(s), 4), "label": int(lab)}
                        for b, s, lab in zip(arrays[f"{c}_boxes"][i][keep], arrays[f"{c}_scores"][i][keep],
                                             arrays[f"{c}_labels"][i][keep])]
        best = [max((d["score"] for d in entry[c]), default=0.0) for c in CLASSIFIERS]
        entry["best_score_difference"] = round(abs(best[0] - best[1]), 4)
        images.append(entry)
    return {"artifact": fig.key, "title": fig.title, "profile": params.profile, "experiment": fig.experiment,
            "method": fig.method, "seed": fig.seed, "git": git_commit(), "images": images,
            "score_threshold": 0.3, "nms_iou": 0.5}


def draw(arrays: dict[str, np.ndarray], summary: dict, png: Path) -> None:
    n = len(arrays["indices"])
    f, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.6), squeeze=False)
    cmap = plt.get_cmap("jet")
    rows = ("image", "classifier 1", "classifier 2")
    for j in range(n):
        img = np.transpose(arrays["images"][j], (1, 2, 0))
        for r, row in enumerate(rows):
            ax = axes[r][j]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(row)
            if r == 0:
                ax.set_title(f"#{int(arrays['indices'][j])}", fontsize=8)
                continue
            c = CLASSIFIERS[r - 1]
            boxes, scores, labels = arrays[f"{c}_boxes"][j], arrays[f"{c}_scores"][j], arrays[f"{c}_labels"][j]
            shown = 0
            for b, s, lab in zip(boxes, scores, labels):
                if s < 0:
                    continue
                color = cmap(float(s))
                ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, lw=1.2, edgecolor=color))
                ax.text(b[0], b[1], f"{int(lab)}:{s:.2f}", fontsize=5, color=color, va="bottom")
                shown += 1
            if not shown:
                ax.text(0.5, 0.5, "no score > 0.3", transform=ax.transAxes, ha="center", fontsize=7, color="white",
                        bbox={"facecolor": "black", "alpha": 0.5})
    save_figure(f, png, f"{summary['title']}\n{summary['experiment']} / {summary['method']} / seed {summary['seed']}: "
                f"the first query's picks (redder = higher score)", summary["profile"], dpi=110)


def build_prediction_figure(params: Params, fig: PredictionFigure) -> tuple[Path, Path]:
    """reports/<paper>/<name>.png and .json."""
    arrays = load_predictions(params, fig)
    summary = summarise(params, fig, arrays)
    out = Path(params.reports_dir) / fig.paper
    png, js = out / f"{fig.name}.png", out / f"{fig.name}.json"
    draw(arrays, summary, png)
    atomic_write_json(js, summary)
    return png, js
