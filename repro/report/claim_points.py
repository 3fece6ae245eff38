"""Where the registry's stated values sit on a figure: per value claim whose evidence names a drawn
(experiment, method), the paper's number (in %) at the paper profile's stage with the labeled amount the claim
states (`labeled_fraction` or a `labeled` count)."""

from __future__ import annotations

from repro.spec.params import Params


def claim_points(registry: dict, drawn: set[tuple[str, str]], paper_params: Params) -> list[dict]:
    out = []
    for c in registry.get("claims", []):
        e = c.get("evidence") or {}
        if c.get("kind") != "value" or "experiment" not in e or (e["experiment"], e.get("method")) not in drawn:
            continue
        exp = paper_params.experiment(e["experiment"])
        counts = exp.schedule.labeled_counts(exp.pool_size())
        idx = stage_of(counts, [n / exp.pool_size() for n in counts], e)
        if idx is None:
            continue
        to_percent = 1.0 if e.get("scale") == 100 else 100.0  # scale 100: the claim is already in %
        out.append({"id": c["id"], "experiment": e["experiment"], "method": e["method"], "stage": idx,
                    "labeled": counts[idx], "labeled_fraction": counts[idx] / exp.pool_size(),
                    "value": c["value"] * to_percent,
                    "std": None if c.get("std") is None else c["std"] * to_percent})
    return out


def stage_of(counts, fractions, evidence: dict) -> int | None:
    """The position of the stage (labeled counts and fractions of the pool, in stage order) whose labeled amount
    is the evidence's (`labeled` exactly, or `labeled_fraction` within 1% of itself), or None. The figures' claim
    markers and the audit's numeric claims both read it."""
    if "labeled" in evidence:
        return next((i for i, n in enumerate(counts) if n == evidence["labeled"]), None)
    f = evidence.get("labeled_fraction")
    if f is None:
        return None
    return next((i for i, x in enumerate(fractions) if abs(x - f) <= 0.01 * f + 1e-9), None)
