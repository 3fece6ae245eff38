"""The audit's protocol sections: each hyper-parameter a paper states beside the suite's `paper`-profile value
(protocol drift), and each known paper-vs-official-code difference with the variant that measures it and,
where both readings ran in one experiment, the measured effect."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from repro.config import Params


def lookup(params: Params, key: str) -> Any:
    """A dotted params.yaml key (e.g. recipes.ads_cifar.epochs) in resolved Params; KeyError if absent."""
    obj: Any = params
    parts = key.split(".")
    if parts[0] == "variants" and len(parts) >= 2:  # a variant's options: {method: ..., <option>: ...}
        variants = dict(params.variants)
        if parts[1] not in variants:
            raise KeyError(key)
        method, options = variants[parts[1]]
        obj, parts = {"method": method, **dict(options)}, parts[2:]
    for part in parts:
        if isinstance(obj, tuple) and obj and all(isinstance(x, tuple) and len(x) == 2 for x in obj):
            obj = dict(obj)
        if isinstance(obj, dict):
            if part not in obj:
                raise KeyError(key)
            obj = obj[part]
        elif is_dataclass(obj) and part in asdict(obj):
            obj = getattr(obj, part)
        else:
            raise KeyError(key)
    if is_dataclass(obj):
        return asdict(obj)
    return list(obj) if isinstance(obj, tuple) else obj


def same(paper: Any, ours: Any) -> bool:
    if isinstance(paper, (int, float)) and isinstance(ours, (int, float)) and not isinstance(ours, bool):
        return bool(np.isclose(float(paper), float(ours), rtol=1e-9, atol=0.0))
    if isinstance(paper, list) and isinstance(ours, list):
        return len(paper) == len(ours) and all(same(a, b) for a, b in zip(paper, ours))
    return paper == ours


def protocol_drift(registries: dict[str, dict], paper_params: Params | None) -> list[dict]:
    """Per stated hyper-parameter: the paper's value, ours (paper profile) where a params key holds it, and
    whether they agree; a deliberate mismatch carries the registry's note as its reason."""
    rows = []
    for paper, reg in registries.items():
        for h in (reg.get("protocol") or {}).get("hyperparameters") or []:
            row = {"paper": paper, "name": h["name"], "stated": h["value"], "quote": h["quote"],
                   "params_key": h.get("params_key")}
            if not h.get("params_key"):
                row.update(status="no params key (not a knob of the suite)")
            elif paper_params is None:
                row.update(status="paper profile not loaded")
            else:
                try:
                    ours = lookup(paper_params, h["params_key"])
                except KeyError:
                    row.update(status=f"params.yaml has no {h['params_key']} (not built yet)")
                else:
                    row.update(ours=ours, status="matches" if same(h["value"], ours) else "differs")
            if h.get("note"):
                row["reason"] = h["note"]
            rows.append(row)
    return rows


def code_differences(registries: dict[str, dict], params: Params, frame) -> list[dict]:
    """Per known paper-vs-code difference: its variant, and where an experiment ran the variant beside the
    method it varies, the mean paired difference (variant - method) at the last stage over common seeds.
    `frame(experiment)` -> the stages DataFrame (raises when the records are not usable)."""
    variants = dict(params.variants)
    rows = []
    for paper, reg in registries.items():
        for d in reg.get("code_differences") or []:
            row = {"registry": paper, "what": d.get("what"), "paper_says": d.get("paper"), "code_does": d.get("code"),
                   "suite": d.get("suite"), "variant": d.get("variant")}
            var = d.get("variant")
            base = variants[var][0] if var in variants else (var.removesuffix("-code") if var else None)
            row["effect"] = "no variant: " + (d.get("why_no_variant") or "") if var is None else "not run beside " + str(base)
            for name, exp in params.experiments:
                if var in exp.methods and base in exp.methods:
                    try:
                        df = frame(name)
                    except Exception as e:  # records missing or stale: say so, keep the row
                        row["effect"] = f"{name}: not comparable ({e})"
                        break
                    last = df[df.stage == df.stage.max()]
                    a, b = (last[last.method == m].set_index("seed").value for m in (var, base))
                    seeds = sorted(set(a.index) & set(b.index))
                    diff = (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=float)
                    row["effect"] = (f"{name}, last stage: {var} - {base} = {diff.mean() * 100:+.2f} points "
                                     f"(n = {len(seeds)})") if len(seeds) else f"{name}: no common seeds"
                    break
            rows.append(row)
    return rows
