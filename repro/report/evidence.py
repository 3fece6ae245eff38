"""What the audit judges from: run records per experiment (`Evidence`, checked against the current params), the
reasons evidence cannot carry a verdict (a stand-in dataset, records of several commits, another metric), a
group's members, and the `Judgement` every judge returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from repro.report.claims import CURVE_METRICS
from repro.report.runs import stages_frame
from repro.spec.datasets import DATASETS
from repro.spec.params import Params
from repro.spec.runs import RecordError, check_pool_identity, load_records


class NotComparable(Exception):
    pass


@dataclass
class Judgement:
    outcome: str  # what the rule gives on this evidence: reproduced, contradicted or inconclusive
    evidence: list[dict]
    runs: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    n_min: int = 0  # the fewest paired seeds behind any unit
    exact: bool = False  # deterministic evidence (a parameter count): no seed rule
    gates: list[str] = field(default_factory=list)  # reasons the evidence cannot carry a verdict
    seeds_needed: dict | None = None
    protocol: dict = field(default_factory=dict)


class Evidence:
    """Run records per experiment, loaded once, checked against the current params; `paper_params` (the paper
    profile) tells which dataset each experiment's claims are about."""

    def __init__(self, params: Params, paper_params: Params | None = None):
        self.params, self.paper_params, self.cache = params, paper_params, {}

    def frame(self, experiment: str) -> tuple[pd.DataFrame, list[dict]]:
        """One experiment's records, or a panel's: "a+b" joins experiments that share the initial pool per seed
        (DAAL Fig. 4 draws VAAL, LL and DAAL from the Fig. 3 runs), each method taken from the one that runs it."""
        if "+" in experiment and experiment not in self.cache:
            parts = experiment.split("+")
            frames = [self.frame(p) for p in parts]
            records = self.records(parts)
            owners = [m for df, _ in frames for m in df.method.unique()]
            dup = sorted({m for m in owners if owners.count(m) > 1})
            if dup:
                raise NotComparable(f"{experiment}: method(s) {dup} run in more than one of {parts}")
            self.cache[experiment] = (pd.concat([df for df, _ in frames], ignore_index=True), records)
        if experiment not in self.cache:
            if experiment not in dict(self.params.experiments):
                raise NotComparable(f"no experiment {experiment!r} in params.yaml (not built yet)")
            exp = self.params.experiment(experiment)
            try:
                records = load_records(self.params.results_dir, experiment, exp.methods, exp.seeds, self.params)
            except RecordError as e:
                raise NotComparable(str(e)) from None
            self.cache[experiment] = (stages_frame(records), records)
        return self.cache[experiment]

    def records(self, experiments) -> list[dict]:
        recs = [r for e in experiments for r in self.frame(e)[1]]
        try:
            check_pool_identity(recs, across_experiments=True)
        except RecordError as e:
            raise NotComparable(str(e)) from None
        return recs

    def stand_in(self, experiment: str) -> str | None:
        """Why the experiment's data are not the claim's own dataset (a synthetic or derived stand-in, or another
        dataset than the paper profile's), or None."""

        for part in experiment.split("+"):
            if part not in dict(self.params.experiments):
                continue
            ds = self.params.experiment(part).dataset
            spec = DATASETS.get(ds)
            if spec is not None and spec.stand_in_for:
                return f"{part} runs on {ds}, a stand-in for {spec.stand_in_for}"
            if self.paper_params is not None and part in dict(self.paper_params.experiments):
                own = self.paper_params.experiment(part)
                if (own.dataset, own.classes) != (ds, self.params.experiment(part).classes):
                    return f"{part} runs on {ds} ({self.params.experiment(part).classes or 'all'} classes), not the paper's {own.dataset}"
        return None

    def protocol(self, experiments) -> dict:
        out = {"profile": self.params.profile}
        for e in experiments:
            for part in e.split("+"):
                if part in dict(self.params.experiments):
                    x = self.params.experiment(part)
                    epochs = getattr(self.params.recipe(x.recipe), "epochs", None) if x.recipe else None
                    out[part] = {"dataset": x.dataset, "train_size": x.train_size, "test_size": x.test_size,
                                 "seeds": len(x.seeds), "recipe": x.recipe, "epochs": epochs}
        return out


def provenance_of(records: list[dict]) -> tuple[list[str], list[str]]:
    runs = [r["_path"] for r in records]
    commits = [((r.get("provenance") or {}).get("git") or {}).get("commit") or "unknown" for r in records]
    return runs, commits


def gates_for(ev: Evidence, experiments, records: list[dict]) -> list[str]:
    """Reasons shared by every kind: a stand-in dataset, records from more than one commit."""
    out = [why for e in dict.fromkeys(experiments) if (why := ev.stand_in(e))]
    commits = sorted({c for c in provenance_of(records)[1] if c != "unknown"})
    if len(commits) > 1:
        out.append(f"records from {len(commits)} commits ({', '.join(c[:8] for c in commits)}): re-run them at one")
    return out


def members_of(name: str, df: pd.DataFrame, groups: dict) -> list[str]:
    """A group's members present in `df` (never a member chosen on the data), or the method itself."""
    if name in groups:
        present = [m for m in groups[name] if (df.method == m).any()]
        if not present:
            raise NotComparable(f"no member of group {name} {groups[name]} was run")
        return present
    if not (df.method == name).any():
        raise NotComparable(f"method {name!r} was not run")
    return [name]


def metric_column(claim: dict, ev: Evidence, experiment: str) -> str:
    metric = claim.get("metric", "accuracy")
    if metric in CURVE_METRICS:
        for part in experiment.split("+"):
            have = ev.params.experiment(part).metric if part in dict(ev.params.experiments) else metric
            if have != metric:
                raise NotComparable(f"the claim reads {metric}; {part} measures {have}")
        return "value"
    return metric
