"""The claims registry (paper_tables/<paper>.yaml): loading and schema validation, shared by all papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from repro.report.stats import STAGE_SELECTIONS as STAGES

KINDS = ("ordering", "not_better", "parity", "similarity", "dissimilarity")
TOP_KEYS = {"paper", "title", "claims", "protocol", "code_differences"}
CLAIM_KEYS = {"id", "where", "quote", "setting", "kind", "comparisons", "methods", "reference", "experiments",
              "rankings", "pair", "min_rho", "max_abs_rho", "threshold_reason", "stages", "require", "margin",
              "metric", "reading", "note"}
REQUIRE = ("every", "majority")
METRICS = ("accuracy", "query_modal_class_share")
DIFFERENCE_KEYS = {"what", "paper", "code", "suite", "variant"}


def _names(x) -> bool:
    return isinstance(x, list) and len(x) > 0 and all(isinstance(v, str) and v for v in x)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


class RegistryError(ValueError):
    pass


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise RegistryError(f"{where}: {msg}")


def validate_registry(reg: Any, where: str) -> dict:
    """Check a registry mapping; raises RegistryError naming the file, claim and key."""
    _need(isinstance(reg, dict), where, "expected a mapping")
    _need(TOP_KEYS <= set(reg) and set(reg) <= TOP_KEYS, where, f"top-level keys must be {sorted(TOP_KEYS)}")
    _need(isinstance(reg["claims"], list) and reg["claims"], where, "claims must be a non-empty list")
    groups = (reg["protocol"] or {}).get("groups", {}) or {}
    ids = set()
    for i, c in enumerate(reg["claims"]):
        w = f"{where}: claims[{i}]"
        _need(isinstance(c, dict), w, "expected a mapping")
        _need(not set(c) - CLAIM_KEYS, w, f"unknown keys {sorted(set(c) - CLAIM_KEYS)}")
        for key in ("id", "where", "quote", "setting", "kind"):
            _need(key in c, w, f"missing {key!r}")
        w = f"{where}: claim {c['id']}"
        _need(c["id"] not in ids, w, "duplicate id")
        ids.add(c["id"])
        _need(isinstance(c["quote"], str) and len(c["quote"]) > 10, w, "quote must be the paper's words")
        _need(isinstance(c["setting"], dict) and {"dataset", "model", "methods"} <= set(c["setting"]), w,
              "setting needs dataset, model, methods")
        _need(c["kind"] in KINDS, w, f"kind must be one of {list(KINDS)}")
        if c["kind"] in ("ordering", "not_better", "parity"):
            _need(c.get("stages") in STAGES, w, f"needs stages: one of {list(STAGES)} (which stages the rule reads)")
            _need(c.get("require") in REQUIRE, w, f"needs require: one of {list(REQUIRE)} (how many of them must hold)")
            _need(c.get("metric", "accuracy") in METRICS, w, f"metric must be one of {list(METRICS)}")
            if c["kind"] == "ordering":
                _need("margin" not in c, w, "an ordering has no margin (its interval must clear 0)")
            else:
                _need(_number(c.get("margin")) and c["margin"] > 0, w,
                      "an absence claim (not_better, parity) needs a positive equivalence margin, in metric units")
        if c["kind"] in ("ordering", "not_better"):
            _need(isinstance(c.get("comparisons"), list) and c["comparisons"], w, "needs comparisons")
            for cmp in c["comparisons"]:
                _need(isinstance(cmp, dict) and {"better", "than", "experiments"} <= set(cmp), w,
                      "a comparison needs better, than, experiments")
                _need(_names(cmp["better"]) and _names(cmp["experiments"]) and isinstance(cmp["than"], str), w,
                      "a comparison's better and experiments must be non-empty lists of names, than a name")
        elif c["kind"] == "parity":
            _need(_names(c.get("methods")) and len(c["methods"]) >= 2, w, "parity needs >= 2 methods")
            _need(_names(c.get("experiments")), w, "parity needs a non-empty list of experiments")
            _need(c.get("reference") is None or c["reference"] in c["methods"], w, "reference must be one of methods")
        else:
            _need(_names(c.get("pair")) and len(c["pair"]) == 2 and isinstance(c.get("rankings"), str), w,
                  "needs rankings and a pair")
            bound = "min_rho" if c["kind"] == "similarity" else "max_abs_rho"
            _need(_number(c.get(bound)) and 0 < c[bound] <= 1, w, f"needs {bound} in (0, 1]")
            _need(isinstance(c.get("threshold_reason"), str) and len(c["threshold_reason"]) > 10, w,
                  "needs threshold_reason: why this threshold reads the quote")
        _need(not any(isinstance(v, float) and v != v for v in c.values()), w, "NaN in a claim")
    _need(isinstance(groups, dict), where, "protocol.groups must be a mapping")
    _need(isinstance(reg["code_differences"], list), where, "code_differences must be a list")
    for i, d in enumerate(reg["code_differences"]):
        _need(isinstance(d, dict) and DIFFERENCE_KEYS <= set(d), where,
              f"code_differences[{i}] needs {sorted(DIFFERENCE_KEYS)} (variant: the method or params.yaml variant "
              "that runs the code's reading, or null with why_no_variant)")
        _need(d["variant"] is not None or (isinstance(d.get("why_no_variant"), str) and d["why_no_variant"]), where,
              f"code_differences[{i}] ({d.get('what')}): variant is null, so why_no_variant must say why")
    return reg


def load_registries(directory: Path | str = "paper_tables") -> dict[str, dict]:
    out = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        reg = validate_registry(yaml.safe_load(path.read_text()), str(path))
        out[reg["paper"]] = reg
    return out
