"""Paper tables as artifacts: results tables (paper | measured (mean +/- std, n) | delta per row and labeled stage)
and protocol tables (a paper's dataset summary beside the paper and active profiles). Markdown + JSON."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from repro.report.claim_points import claim_points
from repro.report.runs import stages_frame
from repro.spec.artifacts import ProtocolTable, ResultsTable
from repro.spec.datasets import get_spec
from repro.spec.params import Params
from repro.spec.records import atomic_write_json, atomic_write_text, git_commit
from repro.spec.runs import check_pool_identity, load_records


def _write(params: Params, art, summary: dict, md_text: str) -> tuple[Path, Path]:
    out = Path(params.reports_dir) / art.paper
    js, md = out / f"{art.name}.json", out / f"{art.name}.md"
    atomic_write_json(js, summary)
    atomic_write_text(md, md_text)
    return js, md


def _commit(git: dict) -> str:
    commit = (git or {}).get("commit") or "unknown"
    return f"commit `{commit[:12]}`" + (" (uncommitted changes)" if (git or {}).get("dirty") else "")


def results_summary(params: Params, art: ResultsTable, registry: dict | None, paper_params: Params) -> dict:
    rows, all_records = [], []
    for label, experiment, method in art.rows:
        exp = params.experiment(experiment)
        records = load_records(params.results_dir, experiment, [method], exp.seeds, params)
        all_records += records
        df = stages_frame(records)
        claims = {c["stage"]: c for c in claim_points(registry or {}, {(experiment, method)}, paper_params)}
        paper_exp = paper_params.experiment(experiment)
        paper_counts = paper_exp.schedule.labeled_counts(paper_exp.pool_size())
        cells = []
        for stage in range(max(len(paper_counts), int(df.stage.max()) + 1)):
            g = df[df.stage == stage]
            measured = None
            if len(g):
                vals = 100 * g.sort_values("seed").value.to_numpy(dtype=float)
                measured = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                            "n": int(len(vals)), "values": [float(v) for v in vals],
                            "labeled": int(g.labeled.iloc[0]), "labeled_fraction": float(g.labeled_fraction.iloc[0])}
            c = claims.get(stage)
            paper = None if c is None else {"id": c["id"], "value": c["value"], "std": c["std"]}
            cells.append({
                "stage": stage,
                "paper_labeled_fraction": paper_counts[stage] / paper_exp.pool_size() if stage < len(paper_counts) else None,
                "paper": paper, "measured": measured,
                "delta": None if paper is None or measured is None else measured["mean"] - paper["value"],
            })
        rows.append({"label": label, "experiment": experiment, "method": method, "cells": cells,
                     "runs": [r["_path"] for r in records]})
    check_pool_identity(all_records, across_experiments=True)
    return {"artifact": art.key, "title": art.title, "profile": params.profile, "git": git_commit(), "unit": "%",
            "rows": rows}


def results_markdown(summary: dict) -> str:
    table = []
    for row in summary["rows"]:
        for c in row["cells"]:
            m, p = c["measured"], c["paper"]
            lab = "—" if c["paper_labeled_fraction"] is None else f"{100 * c['paper_labeled_fraction']:g}%"
            ours = "—" if m is None else f"{100 * m['labeled_fraction']:g}% ({m['labeled']})"
            table.append([row["label"], lab, ours,
                          "—" if p is None else (f"{p['value']:.2f}" + ("" if p["std"] is None else f" ± {p['std']:.2f}")),
                          "—" if m is None else f"{m['mean']:.2f} ± {m['std']:.2f} (n={m['n']})",
                          "—" if c["delta"] is None else f"{c['delta']:+.2f}"])
    head = ["row", "paper labeled", "ours labeled", "paper (%)", "measured (mean ± std, n)", "Δ (points)"]
    note = ("Δ = measured mean − paper. A stage is matched by index: in a reduced profile the labeled amounts "
            "differ from the paper's (both columns shown), so Δ there is not a reproduction test; the audit "
            "gives the verdicts (`reports/audit.md`).")
    return (f"# {summary['title']}\n\nprofile: `{summary['profile']}`, {_commit(summary['git'])}\n\n"
            + tabulate(table, head, tablefmt="github") + f"\n\n{note}\n")


def build_results_table(params: Params, art: ResultsTable, registry: dict | None,
                        paper_params: Params) -> tuple[Path, Path]:
    summary = results_summary(params, art, registry, paper_params)
    return _write(params, art, summary, results_markdown(summary))


def _hyper(registry: dict | None, *names: str):
    for h in ((registry or {}).get("protocol") or {}).get("hyperparameters") or []:
        if h["name"] in names:
            return h["value"]
    return None


def _profile_row(p: Params, experiment: str) -> dict:

    exp = p.experiment(experiment)
    spec = get_spec(exp.dataset)
    pool = exp.pool_size()
    counts = exp.schedule.labeled_counts(pool)
    return {"dataset": exp.dataset, "classes": exp.classes or spec.num_classes, "train": pool,
            "test": exp.test_size or spec.test_size, "initial": counts[0],
            "budget": counts[1] - counts[0] if len(counts) > 1 else None, "image_size": spec.height}


def protocol_summary(params: Params, art: ProtocolTable, registry: dict | None, paper_params: Params) -> dict:
    rows = []
    for label, experiment, prefix in art.rows:
        ctt = _hyper(registry, f"{prefix}_classes_train_test") or [None] * 3
        ib = _hyper(registry, f"{prefix}_initial_budget", f"{prefix}_initial_budget_table1") or [None] * 2
        paper = {"classes": ctt[0], "train": ctt[1], "test": ctt[2], "initial": ib[0], "budget": ib[1],
                 "image_size": _hyper(registry, f"{prefix}_image_size")}
        rows.append({"label": label, "experiment": experiment, "paper": paper,
                     "paper_profile": _profile_row(paper_params, experiment), "active": _profile_row(params, experiment)})
    return {"artifact": art.key, "title": art.title, "profile": params.profile, "git": git_commit(), "rows": rows}


def protocol_markdown(summary: dict) -> str:
    keys = ("classes", "train", "test", "initial", "budget", "image_size")
    table = []
    for row in summary["rows"]:
        for k in keys:
            p, pp, a = row["paper"][k], row["paper_profile"][k], row["active"][k]
            table.append([row["label"], k, "—" if p is None else p, pp, a,
                          "" if p is None or p == pp else "differs"])
    head = ["dataset", "quantity", "paper (supp. Table 1)", "paper profile", f"active profile ({summary['profile']})",
            "paper vs paper profile"]
    return (f"# {summary['title']}\n\n{_commit(summary['git'])}\n\n" + tabulate(table, head, tablefmt="github")
            + "\n\nA `differs` row is a deliberate choice recorded in `paper_tables/mal.yaml` (protocol.choices), "
              "e.g. CIFAR100's 2% initial pool and splits (Sec. 4.1) where this table says 5000 / 2500.\n")


def build_protocol_table(params: Params, art: ProtocolTable, registry: dict | None,
                         paper_params: Params) -> tuple[Path, Path]:
    summary = protocol_summary(params, art, registry, paper_params)
    return _write(params, art, summary, protocol_markdown(summary))
