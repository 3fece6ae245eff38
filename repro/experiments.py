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

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.name}"


ARTIFACTS: dict[str, CurveFigure] = {
    a.key: a
    for a in (
        CurveFigure("mcdal", "fig3", ("mcdal_fig3",), "MCDAL Fig. 3: CIFAR-10, ResNet-18"),
    )
}


def get_artifact(key: str) -> CurveFigure:
    if key not in ARTIFACTS:
        raise KeyError(f"unknown artifact {key!r}; allowed: {sorted(ARTIFACTS)}")
    return ARTIFACTS[key]
