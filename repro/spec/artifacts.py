"""The papers' figures and tables: which experiment runs each artifact needs and how it is drawn."""

from __future__ import annotations

from dataclasses import dataclass


class _Named:
    """What every artifact shares: its key `<paper>/<name>` (ARTIFACTS, `figure_<paper>_<name>`, reports/<paper>/<name>.*)."""

    paper: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.name}"


@dataclass(frozen=True)
class Panel:
    """One panel of a curve figure: series drawn from one or more experiments that share the initial pool per
    seed (a run shared by several figures is computed once), and an optional full-data reference line."""

    title: str
    # (experiment, methods drawn from it; () = all of its methods)
    sources: tuple[tuple[str, tuple[str, ...]], ...]
    reference: tuple[str, str] | None = None  # (experiment, method): drawn as a horizontal mean +/- std band

    @property
    def experiments(self) -> tuple[str, ...]:
        names = [e for e, _ in self.sources] + ([self.reference[0]] if self.reference else [])
        return tuple(dict.fromkeys(names))


def panel(title: str, *sources: str | tuple[str, tuple[str, ...]], reference: tuple[str, str] | None = None) -> Panel:
    """panel("CIFAR-10", "exp_a", ("exp_b", ("random", "mcdal"))): every method of exp_a, two of exp_b."""
    return Panel(title, tuple((s, ()) if isinstance(s, str) else (s[0], tuple(s[1])) for s in sources), reference)


@dataclass(frozen=True)
class CurveFigure(_Named):
    """Metric vs labeled amount, mean +/- std over seeds, one line per method, one panel per `Panel`; the
    registry's claimed values for the drawn (experiment, method, stage) are overlaid as markers."""

    paper: str
    name: str
    panels: tuple[Panel, ...]
    title: str
    x: str = "labeled_fraction"  # or "labeled" (counts, as DAL's figures)
    # named groups drawn as their first listed member that ran (e.g. DAL's "Uncertainty": entropy or
    # least-confidence), never the better one on the drawn seeds; the legend says which member it is
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def experiments(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e for p in self.panels for e in p.experiments))


@dataclass(frozen=True)
class ResultsTable(_Named):
    """A paper table of accuracy per (row, labeled stage): Markdown with paper | measured (mean +/- std, n) | delta
    per cell (the paper's numbers from the claims registry whose evidence names the cell) and the JSON behind it."""

    paper: str
    name: str
    rows: tuple[tuple[str, str, str], ...]  # (row label as printed, experiment, method)
    title: str

    @property
    def experiments(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e for _, e, _ in self.rows))


@dataclass(frozen=True)
class ProtocolTable(_Named):
    """A paper's dataset/protocol summary beside what the active profile runs (MAL supp. Table 1): per row the
    paper's classes, train/test sizes, initial pool, budget and image size, and the experiment's values."""

    paper: str
    name: str
    # (dataset as printed, experiment, prefix of its protocol.hyperparameters: <prefix>_classes_train_test,
    # <prefix>_initial_budget, <prefix>_image_size)
    rows: tuple[tuple[str, str, str], ...]
    title: str

    @property
    def experiments(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class RankingFigure(_Named):
    """Ranking-vs-ranking of the unlabeled pool for pairs of methods, each panel with Spearman's rho."""

    paper: str
    name: str
    rankings: str  # a params.yaml `rankings` section
    pairs: tuple[tuple[str, str], ...]
    title: str
    groups_from: str = ""  # a CurveFigure key whose per-panel group choice this figure follows
    experiments: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplingTable(_Named):
    """Sampling time of one query at stage 1 on the current device (CIFAR-10-shaped pool; `repro.tools.sampling`) and
    parameter counts (`python -m repro params`) per method, beside the paper's numbers and time ratios
    relative to `reference` (MCDAL Table 1). Markdown + JSON; no training runs needed."""

    paper: str
    name: str
    methods: tuple[str, ...]
    reference: str
    title: str
    parameter_setting: str = "CIFAR-10, ResNet-18"  # the `python -m repro params` setting of the counts
    experiments: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmbeddingFigure(_Named):
    """t-SNE of the task model's features of labeled vs unlabeled samples at several stages, one row per method
    (ADS Fig. 4: ADS against the single-classifier random baseline), with a number per stage for how far the
    labeled and unlabeled feature distributions are apart (`repro.report.embedding`). Reads the features the
    loop saves for the experiment's `features_of` methods."""

    paper: str
    name: str
    experiment: str
    methods: tuple[str, ...]
    title: str
    stages: tuple[int, ...] = (0, 1, 2, 3)  # "four learning iterations" (ADS Sec. Progressive Distribution Alignment)
    seed: int = 0  # the seed whose embedding is drawn; the alignment numbers are over every seed

    @property
    def experiments(self) -> tuple[str, ...]:
        return (self.experiment,)


@dataclass(frozen=True)
class PredictionFigure(_Named):
    """A method's predictions on the images its first query picked (ADS Fig. 7: the original images, then the
    detections of adversarial classifier 1 and of classifier 2, redder = higher score), from the run's
    `predictions_of` file; the JSON lists the boxes and per-image score discrepancy."""

    paper: str
    name: str
    experiment: str
    method: str
    title: str
    seed: int = 0

    @property
    def experiments(self) -> tuple[str, ...]:
        return (self.experiment,)


DAL_GROUPS = (("Uncertainty", ("entropy", "least-confidence")), ("DBAL", ("mc-entropy", "mc-variation-ratio")))
ADS_TABLE1_ROWS = (("Baseline (one classifier, random)", "ads_cifar10", "ads-baseline"),
                   ("Non, random selection", "ads_cifar10", "ads-non-random"),
                   ("Non, Ent. (sel.)", "ads_cifar10", "ads-non"),
                   ("Ent. (w.) + Ent. (sel.)", "ads_cifar10", "ads-ent"),
                   ("Cal. + Ent. (sel.) = ADS", "ads_cifar10", "ads"))
Artifact = (CurveFigure | RankingFigure | SamplingTable | EmbeddingFigure | ResultsTable | ProtocolTable
            | PredictionFigure)


def _daal(fig: str, title: str, *panels: Panel) -> CurveFigure:
    return CurveFigure("daal", fig, panels, title)


ARTIFACTS: dict[str, Artifact] = {
    a.key: a
    for a in (
        # MCDAL (Cho et al.): Fig. 3-5 baselines, Fig. 7 distance, Fig. 8 heads, Table 1 sampling time
        CurveFigure("mcdal", "fig3", (panel("CIFAR-10, ResNet-18", "mcdal_fig3", reference=("mcdal_full_cifar10", "upper-bound")),),
                    "MCDAL Fig. 3: CIFAR-10, ResNet-18"),
        CurveFigure("mcdal", "fig4", (panel("CIFAR-100, ResNet-18", "mcdal_fig4_cifar100"),), "MCDAL Fig. 4: CIFAR-100, ResNet-18"),
        CurveFigure("mcdal", "fig5", (panel("Caltech-101, ResNet-18", "mcdal_fig5_caltech101"),),
                    "MCDAL Fig. 5: Caltech-101, ResNet-18"),
        CurveFigure("mcdal", "fig7", (panel("d = L1 (mcdal), L2, KL", ("mcdal_fig3", ("random", "mcdal")), "mcdal_fig7"),),
                    "MCDAL Fig. 7: distance measure d(., .), CIFAR-10"),
        CurveFigure("mcdal", "fig8", (panel("F1~2 (mcdal), F1~4, F1~6, F1~8", ("mcdal_fig3", ("mcdal",)), "mcdal_fig8"),),
                    "MCDAL Fig. 8: number of auxiliary classifiers, CIFAR-10"),
        CurveFigure("mcdal", "fig6", (panel("Cityscapes, DRN-D-22", "mcdal_fig6"),), "MCDAL Fig. 6: Cityscapes mIoU, DRN"),
        SamplingTable("mcdal", "table1", ("coreset", "ll", "vaal", "sraal", "mcdal"), "mcdal",
                      "MCDAL Table 1: sampling time at stage 1 and parameters (CIFAR-10, ResNet-18)"),
        # ADS (Fu et al.): Tables 1-2, Fig. 4 t-SNE, Fig. 5 a-c
        ResultsTable("ads", "table1", ADS_TABLE1_ROWS, "ADS Table 1: module ablation, CIFAR-10, ResNet-18"),
        ResultsTable("ads", "table2", (ADS_TABLE1_ROWS[0], ("ADS (non)", "ads_cifar10", "ads-non"),
                                       ("ADS (mean)", "ads_cifar10", "ads-ent"), ("ADS (max)", "ads_table2", "ads-ent-max"),
                                       ("ADS (min)", "ads_table2", "ads-ent-min")),
                     "ADS Table 2: entropy weights from the heads' mean / max / min, CIFAR-10, ResNet-18"),
        EmbeddingFigure("ads", "fig4", "ads_cifar10", ("ads", "ads-baseline"),
                        "ADS Fig. 4: t-SNE of labeled vs unlabeled features, ADS vs the one-classifier random baseline"),
        CurveFigure("ads", "fig5", (panel("(a) CIFAR-10, ResNet-18", ("ads_cifar10", ("ads",)), "ads_fig5_cifar10"),
                                    panel("(b) CIFAR-10, VGG-16", "ads_fig5_vgg16"),
                                    panel("(c) CIFAR-100, ResNet-18", "ads_fig5_cifar100")),
                    "ADS Fig. 5: ADS vs Core-set, VAAL, LL4AL, SRAAL"),
        CurveFigure("ads", "fig6", (panel("PASCAL VOC, SSD300-VGG16", "ads_fig6_voc"),),
                    "ADS Fig. 6: object detection, PASCAL VOC (mAP@0.5, VOC07 11-point)", x="labeled"),
        PredictionFigure("ads", "fig7", "ads_fig6_voc", "ads",
                         "ADS Fig. 7: detections of the two adversarial classifiers (score > 0.3, NMS IoU 0.5)"),
        # DAAL (Wang et al.): Fig. 3-6, CIFAR (WRN-28-2) and Cityscapes (DRN-D-22, mIoU) panels
        _daal("fig3", "DAAL Fig. 3: CIFAR10 / CIFAR100, WRN-28-2; Cityscapes, DRN (U.B. = all data labeled)",
              panel("CIFAR10", "daal_fig3_cifar10", reference=("daal_full_cifar10", "upper-bound")),
              panel("CIFAR100", "daal_fig3_cifar100", reference=("daal_full_cifar100", "upper-bound")),
              panel("Cityscapes (mIoU)", "daal_fig3_cityscapes", reference=("daal_full_cityscapes", "upper-bound"))),
        _daal("fig4", "DAAL Fig. 4: VAAL with task features (TF) and random subsets (RSS)",
              panel("CIFAR10", ("daal_fig3_cifar10", ("daal", "ll", "vaal")), "daal_fig4_cifar10"),
              panel("CIFAR100", ("daal_fig3_cifar100", ("daal", "ll", "vaal")), "daal_fig4_cifar100")),
        CurveFigure("daal", "fig5", tuple(panel(f"{t} budget {b}", f"daal_fig5_{d}_b{b}")
                                          for d, t, budgets in (("cifar10", "CIFAR10", (250, 1000, 2500)),
                                                                ("cifar100", "CIFAR100", (250, 1000, 2500)),
                                                                ("cityscapes", "Cityscapes", (30, 75, 150)))
                                          for b in budgets),
                    "DAAL Fig. 5: LL with / without RSS, with Core-set, with RD, per budget size", x="labeled"),
        _daal("fig6", "DAAL Fig. 6: one discriminator only (uDis / rDis)",
              panel("CIFAR10", ("daal_fig3_cifar10", ("random", "ll", "daal")), "daal_fig6_cifar10"),
              panel("CIFAR100", ("daal_fig3_cifar100", ("random", "ll", "daal")), "daal_fig6_cifar100"),
              panel("Cityscapes (mIoU)", ("daal_fig3_cityscapes", ("random", "ll", "daal")), "daal_fig6_cityscapes")),
        # MAL (Ebrahimi et al.): Fig. 3, Fig. 5 ablations, supplementary Tables 1-2
        CurveFigure("mal", "fig3", (panel("ImageNet", "mal_fig3_imagenet"), panel("iNaturalist2018", "mal_fig3_inat2018"),
                                    panel("CIFAR100", "mal_fig3_cifar100"),
                                    panel("CIFAR100-Imbalanced", "mal_fig3_cifar100_imbalanced")),
                    "MAL Fig. 3: classification, ResNet-18"),
        CurveFigure("mal", "fig4", (panel("BDD100K (mIoU), DRN-D-22", "mal_fig4_bdd100k"),),
                    "MAL Fig. 4: semantic segmentation, BDD100K"),
        CurveFigure("mal", "fig5", (panel("CIFAR100", ("mal_fig3_cifar100", ("random", "mal")), "mal_fig5_cifar100"),),
                    "MAL Fig. 5: ablations (minimax entropy, discriminator, selection criterion)"),
        ProtocolTable("mal", "supp_table1", (("CIFAR100", "mal_fig3_cifar100", "cifar100"),
                                             ("iNaturalist2018", "mal_fig3_inat2018", "inat2018"),
                                             ("ImageNet", "mal_fig3_imagenet", "imagenet")),
                      "MAL supp. Table 1: datasets, initial pool and budget (paper vs this profile)"),
        ResultsTable("mal", "supp_table2", (("VAAL-VGG16", "mal_supp_table2_vgg16", "vaal"),
                                            ("MAL-VGG16 (Ours)", "mal_supp_table2_vgg16", "mal"),
                                            ("VAAL-ResNet18", "mal_fig3_cifar100", "vaal"),
                                            ("MAL-ResNet18", "mal_fig3_cifar100", "mal")),
                     "MAL supp. Table 2: VGG16 vs ResNet18 backbones, CIFAR100"),
        # DAL (Gissin & Shalev-Shwartz): Fig. 1-3
        CurveFigure("dal", "fig1", (panel("(a) query batch 10", "dal_mnist_b10"),
                                    panel("query batch 100 (reference code's example)", "dal_mnist_b100"),
                                    panel("(b) query batch 1000", "dal_mnist_b1000")),
                    "DAL Fig. 1: MNIST, LeNet", x="labeled", groups=DAL_GROUPS),
        CurveFigure("dal", "fig2", (panel("(a) query batch 1000", "dal_cifar10_b1000"),
                                    panel("(b) query batch 5000", "dal_cifar10_b5000"),
                                    panel("(c) query batch 10000", "dal_cifar10_b10000")),
                    "DAL Fig. 2: CIFAR-10, VGG-16", x="labeled", groups=DAL_GROUPS),
        RankingFigure("dal", "fig3", "dal_fig3", (("Uncertainty", "DBAL"), ("Uncertainty", "dfal"), ("Uncertainty", "dal")),
                      "DAL Fig. 3: rankings of the MNIST unlabeled pool after the first iteration",
                      groups_from="dal/fig1"),
    )
}


def get_artifact(key: str) -> Artifact:
    if key not in ARTIFACTS:
        raise KeyError(f"unknown artifact {key!r}; allowed: {sorted(ARTIFACTS)}")
    return ARTIFACTS[key]
