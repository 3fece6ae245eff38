"""The claims registry (paper_tables/<paper>.yaml): loading and schema validation, shared by all papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from repro.report.stats import STAGE_SELECTIONS as STAGES

TESTED_KINDS = ("ordering", "not_better", "parity", "similarity", "dissimilarity")
NUMERIC_KINDS = ("value", "difference", "ratio")  # a number the text states (a measurement, a gap, a factor)
KINDS = TESTED_KINDS + NUMERIC_KINDS
TOP_KEYS = {"paper", "title", "claims", "protocol", "code_differences"}
OPTIONAL_TOP_KEYS = {"skipped"}  # numbers of the text that are not claims: [{text: verbatim, reason}]
CLAIM_KEYS = {"id", "where", "quote", "setting", "kind", "comparisons", "methods", "reference", "experiments",
              "rankings", "pair", "min_rho", "max_abs_rho", "threshold_reason", "stages", "require", "margin",
              "metric", "reading", "note", "value", "unit", "std", "runs", "evidence", "tolerance"}
# evidence of a numeric claim: which runs measure it (experiment, method, and the labeled amount the claim states:
# `labeled_fraction` of the pool or a `labeled` count, matched against each record's stages, never a stage index;
# a difference subtracts `minus`, a ratio divides by `over`), and `scale` (100: accuracy in 0..1 against a %)
EVIDENCE_KEYS = {"experiment", "method", "labeled_fraction", "labeled", "minus", "over", "scale"}
# or, for a parameter count, `parameters: {method, setting, module}`: a row of `python -m repro params`
PARAMETER_EVIDENCE_KEYS = {"method", "setting", "module"}
HYPERPARAMETER_KEYS = {"name", "value", "quote", "params_key", "note"}
REQUIRE = ("every", "majority")
# a curve's own metric (the record's `value`: accuracy, mIoU or VOC07 mAP) or the queries' modal class share
CURVE_METRICS = ("accuracy", "miou", "map50_voc07")
METRICS = (*CURVE_METRICS, "query_modal_class_share")
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
    _need(TOP_KEYS <= set(reg) and set(reg) <= TOP_KEYS | OPTIONAL_TOP_KEYS, where,
          f"top-level keys must be {sorted(TOP_KEYS)} (optional: {sorted(OPTIONAL_TOP_KEYS)})")
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
        if c["kind"] in NUMERIC_KINDS:
            _validate_numeric(c, w)
        elif c["kind"] in ("ordering", "not_better", "parity"):
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
        elif c["kind"] in ("similarity", "dissimilarity"):
            _need(_names(c.get("pair")) and len(c["pair"]) == 2 and isinstance(c.get("rankings"), str), w,
                  "needs rankings and a pair")
            bound = "min_rho" if c["kind"] == "similarity" else "max_abs_rho"
            _need(_number(c.get(bound)) and 0 < c[bound] <= 1, w, f"needs {bound} in (0, 1]")
            _need(isinstance(c.get("threshold_reason"), str) and len(c["threshold_reason"]) > 10, w,
                  "needs threshold_reason: why this threshold reads the quote")
        _need(not any(isinstance(v, float) and v != v for v in c.values()), w, "NaN in a claim")
    _need(isinstance(groups, dict), where, "protocol.groups must be a mapping")
    for i, h in enumerate((reg["protocol"] or {}).get("hyperparameters") or []):
        _need(isinstance(h, dict) and {"name", "value", "quote"} <= set(h) and not set(h) - HYPERPARAMETER_KEYS,
              where, f"protocol.hyperparameters[{i}] needs name, value, quote (optional params_key, note)")
    for i, s in enumerate(reg.get("skipped") or []):
        _need(isinstance(s, dict) and set(s) == {"text", "reason"} and isinstance(s["text"], str) and s["text"].strip()
              and isinstance(s["reason"], str) and len(s["reason"]) > 3, where,
              f"skipped[{i}] needs text (verbatim from the paper) and reason")
    _need(isinstance(reg["code_differences"], list), where, "code_differences must be a list")
    for i, d in enumerate(reg["code_differences"]):
        _need(isinstance(d, dict) and DIFFERENCE_KEYS <= set(d), where,
              f"code_differences[{i}] needs {sorted(DIFFERENCE_KEYS)} (variant: the method or params.yaml variant "
              "that runs the code's reading, or null with why_no_variant)")
        _need(d["variant"] is not None or (isinstance(d.get("why_no_variant"), str) and d["why_no_variant"]), where,
              f"code_differences[{i}] ({d.get('what')}): variant is null, so why_no_variant must say why")
    return reg


def _validate_numeric(c: dict, w: str) -> None:
    """value / difference / ratio: the number as stated, its unit, std and runs where stated; the setting it
    was measured in; optionally the suite's evidence and a tolerance in the claim's unit."""
    _need(_number(c.get("value")), w, "a numeric claim needs value: the number as the paper states it")
    _need(isinstance(c.get("unit"), str) and c["unit"], w, "a numeric claim needs unit (%, points, x, s, parameters, ...)")
    for key in ("std", "tolerance"):
        _need(c.get(key) is None or (_number(c[key]) and c[key] >= 0), w, f"{key} must be a non-negative number or null")
    _need(c.get("runs") is None or (isinstance(c["runs"], int) and c["runs"] > 0), w, "runs must be a positive integer or null")
    _need({"labeled", "metric"} <= set(c["setting"]), w, "a numeric claim's setting needs labeled and metric (null if none)")
    e = c.get("evidence")
    if isinstance(e, dict) and "table" in e:
        _need(set(e) == {"table"} and isinstance(e["table"], dict) and set(e["table"]) == {"artifact", "of"}, w,
              "table evidence is {table: {artifact: <paper>/<name>, of: <method>}} (a time ratio to the table's reference)")
        _need(c["kind"] == "ratio" and _number(c.get("tolerance")), w, "table evidence backs a ratio claim with a tolerance")
    elif isinstance(e, dict) and "parameters" in e:
        _need(set(e) == {"parameters"} and isinstance(e["parameters"], dict)
              and set(e["parameters"]) == PARAMETER_EVIDENCE_KEYS, w,
              f"parameter evidence is {{parameters: {{{', '.join(sorted(PARAMETER_EVIDENCE_KEYS))}}}}}")
        _need(c["kind"] == "value", w, "parameter evidence backs a value claim")
    elif e is not None:
        _need(isinstance(e, dict) and {"experiment", "method"} <= set(e) and not set(e) - EVIDENCE_KEYS, w,
              f"evidence needs experiment and method (optional: {sorted(EVIDENCE_KEYS - {'experiment', 'method'})})")
        _need(("labeled_fraction" in e) != ("labeled" in e), w,
              "evidence names the labeled amount the claim states: labeled_fraction (of the pool) or labeled (a count)")
        _need(("labeled_fraction" not in e or (_number(e["labeled_fraction"]) and 0 < e["labeled_fraction"] <= 1))
              and ("labeled" not in e or (isinstance(e["labeled"], int) and e["labeled"] > 0)), w,
              "evidence.labeled_fraction must be in (0, 1], evidence.labeled a positive count")
        _need((c["kind"] == "difference") == ("minus" in e) and (c["kind"] == "ratio") == ("over" in e), w,
              "a difference's evidence names `minus`, a ratio's `over` (and only they)")


def load_registries(directory: Path | str = "paper_tables") -> dict[str, dict]:
    out = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        reg = validate_registry(yaml.safe_load(path.read_text()), str(path))
        out[reg["paper"]] = reg
    return out
