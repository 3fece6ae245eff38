"""The papers' figures and tables: which experiment runs each artifact needs and how it is drawn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CurveFigure:
    """Metric vs labeled amount, mean +/- std over seeds, one line per method (one panel per experiment)."""

    paper: str
    name: str
    experiments: tuple[str, ...]
    title: str
    x: str = "labeled_fraction"  # or "labeled" (counts, as DAL's figures)
    panel_titles: tuple[str, ...] = ()
    # named groups drawn as their best member per panel (e.g. DAL's "Uncertainty": the better of entropy
    # and least-confidence); the legend says which member each panel shows
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.name}"


@dataclass(frozen=True)
class RankingFigure:
    """Ranking-vs-ranking of the unlabeled pool for pairs of methods, each panel with Spearman's rho."""

    paper: str
    name: str
    rankings: str  # a params.yaml `rankings` section
    pairs: tuple[tuple[str, str], ...]
    title: str
    groups_from: str = ""  # a CurveFigure key whose per-panel group choice this figure follows
    experiments: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.name}"


@dataclass(frozen=True)
class SamplingTable:
    """Sampling time of one query at stage 1 on the current device (CIFAR-10-shaped pool; `repro.sampling`) and
    parameter counts (`python -m repro params`) per method, beside the paper's numbers and time ratios
    relative to `reference` (MCDAL Table 1). Markdown + JSON; no training runs needed."""

    paper: str
    name: str
    methods: tuple[str, ...]
    reference: str
    title: str
    parameter_setting: str = "CIFAR-10, ResNet-18"  # the `python -m repro params` setting of the counts
    experiments: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.name}"


DAL_GROUPS = (("Uncertainty", ("entropy", "least-confidence")), ("DBAL", ("mc-entropy", "mc-variation-ratio")))

ARTIFACTS: dict[str, CurveFigure | RankingFigure | SamplingTable] = {
    a.key: a
    for a in (
        CurveFigure("mcdal", "fig3", ("mcdal_fig3",), "MCDAL Fig. 3: CIFAR-10, ResNet-18"),
        CurveFigure("dal", "fig1", ("dal_mnist_b10", "dal_mnist_b100", "dal_mnist_b1000"),
                    "DAL Fig. 1: MNIST, LeNet", x="labeled",
                    panel_titles=("(a) query batch 10", "query batch 100 (reference code's example)",
                                  "(b) query batch 1000"),
                    groups=DAL_GROUPS),
        RankingFigure("dal", "fig3", "dal_fig3", (("Uncertainty", "DBAL"), ("Uncertainty", "dfal"), ("Uncertainty", "dal")),
                      "DAL Fig. 3: rankings of the MNIST unlabeled pool after the first iteration",
                      groups_from="dal/fig1"),
        SamplingTable("mcdal", "table1", ("coreset", "ll", "vaal", "sraal", "mcdal"), "mcdal",
                      "MCDAL Table 1: sampling time at stage 1 and parameters (CIFAR-10, ResNet-18)"),
    )
}


def get_artifact(key: str) -> CurveFigure | RankingFigure | SamplingTable:
    if key not in ARTIFACTS:
        raise KeyError(f"unknown artifact {key!r}; allowed: {sorted(ARTIFACTS)}")
    return ARTIFACTS[key]
