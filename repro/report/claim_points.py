"""Where the registry's stated values sit on a figure: per value claim whose evidence names a drawn
(experiment, method), the paper's number (in %) at the paper profile's labeled amount of that stage."""

from __future__ import annotations

from repro.config import Params


def claim_points(registry: dict, drawn: set[tuple[str, str]], paper_params: Params) -> list[dict]:
    out = []
    for c in registry.get("claims", []):
        e = c.get("evidence") or {}
        if c.get("kind") != "value" or "experiment" not in e or (e["experiment"], e.get("method")) not in drawn:
            continue
        exp = paper_params.experiment(e["experiment"])
        counts = exp.schedule.labeled_counts(exp.pool_size())
        stage = e.get("stage", "last")
        idx = {"last": len(counts) - 1, "first": 0}.get(stage, stage)
        if not isinstance(idx, int) or idx >= len(counts):
            continue
        to_percent = 1.0 if e.get("scale") == 100 else 100.0  # scale 100: the claim is already in %
        out.append({"id": c["id"], "experiment": e["experiment"], "method": e["method"], "stage": idx,
                    "labeled": counts[idx], "labeled_fraction": counts[idx] / exp.pool_size(),
                    "value": c["value"] * to_percent,
                    "std": None if c.get("std") is None else c["std"] * to_percent})
    return out
