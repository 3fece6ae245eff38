"""The claims registry (paper_tables/<paper>.yaml): loading and schema validation, shared by all papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KINDS = ("ordering", "not_better", "parity", "similarity", "dissimilarity")
TOP_KEYS = {"paper", "title", "claims", "protocol", "code_differences"}
CLAIM_KEYS = {"id", "where", "quote", "setting", "kind", "comparisons", "methods", "experiments", "rankings",
              "pair", "min_rho", "max_abs_rho", "stages", "note"}


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
        if c["kind"] in ("ordering", "not_better"):
            _need(isinstance(c.get("comparisons"), list) and c["comparisons"], w, "needs comparisons")
            for cmp in c["comparisons"]:
                _need({"better", "than", "experiments"} <= set(cmp), w, "a comparison needs better, than, experiments")
            _need(c.get("stages", "all") in ("all", "first_half"), w, "stages must be all or first_half")
        elif c["kind"] == "parity":
            _need(isinstance(c.get("methods"), list) and len(c["methods"]) >= 2, w, "parity needs >= 2 methods")
            _need(isinstance(c.get("experiments"), list) and c["experiments"], w, "parity needs experiments")
        else:
            _need(isinstance(c.get("pair"), list) and len(c["pair"]) == 2 and "rankings" in c, w,
                  "needs rankings and a pair")
            bound = "min_rho" if c["kind"] == "similarity" else "max_abs_rho"
            _need(isinstance(c.get(bound), (int, float)) and 0 <= c[bound] <= 1, w, f"needs {bound} in [0, 1]")
    _need(isinstance(groups, dict), where, "protocol.groups must be a mapping")
    _need(isinstance(reg["code_differences"], list), where, "code_differences must be a list")
    return reg


def load_registries(directory: Path | str = "paper_tables") -> dict[str, dict]:
    out = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        reg = validate_registry(yaml.safe_load(path.read_text()), str(path))
        out[reg["paper"]] = reg
    return out
