"""The audit's protocol sections: each hyper-parameter a paper states beside the suite's `paper`-profile value
(protocol drift: compared once both are written alike, e.g. a fraction of the pool as the count it gives, so that
"differs" means a different value), and each known paper-vs-official-code difference with the variant that
measures it and, where both readings ran in one experiment, the measured effect."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import numpy as np

from repro.spec.datasets import get_spec
from repro.spec.params import Params


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


# Row statuses, in the order the table lists them: real drift first. `differs`: ours is a different value;
# `rounding`: a stated count and ours are the same quantity rounded apart (0.1 x 437,513 = 43,751.3: 43,751 or
# 43,752); `not built`: params.yaml lacks the key; `unstated`: the paper gives no value (or names a family, e.g.
# DRN, without the member), so ours is a choice; `matches`: the same value, after normalising how it is written.
STATUSES = ("differs", "rounding", "not built", "unstated", "matches", "no params key", "not loaded")
_UNSTATED = re.compile(r"\bnot stated\b|\bno \w+ stated\b", re.IGNORECASE)
_SCHEDULE_TEXT = re.compile(r"([\d.]+)\s*%\s*->\s*([\d.]+)\s*%\s*in\s*\+\s*([\d.]+)\s*%", re.IGNORECASE)
_FRACTIONS = ("initial_fraction", "step_fraction", "final_fraction")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def same(paper: Any, ours: Any) -> bool:
    """Equal values: integers exactly, other numbers to a relative 1e-9 (0.1 x 0.1 is 0.01), lists element-wise."""
    if _is_int(paper) and _is_int(ours):
        return paper == ours
    if _is_num(paper) and _is_num(ours):
        return bool(np.isclose(float(paper), float(ours), rtol=1e-9, atol=0.0))
    if isinstance(paper, list) and isinstance(ours, list):
        return len(paper) == len(ours) and all(same(a, b) for a, b in zip(paper, ours))
    return paper == ours


@dataclass(frozen=True)
class Reading:
    """Our value written as a paper may write it: `value` (compared with `same`, or by `match`), how it follows
    from params.yaml, and `exact`, the real quantity a count rounds (a fraction x the pool), if any."""

    value: Any
    how: str
    exact: float | None = None
    match: Callable[[Any], bool] | None = None

    def equals(self, stated: Any) -> bool:
        return self.match(stated) if self.match is not None else same(stated, self.value)


def _span(values: list[int]) -> str:
    return f"{values[0]:,}" if len(set(values)) == 1 else f"{min(values):,}-{max(values):,}"


def _schedule_text(ini: float, fin: float, step: float) -> str:
    pct = lambda x: f"{round(100 * x, 9):g}%"  # noqa: E731
    return f"{pct(ini)} -> {pct(fin)} in +{pct(step)} stages"


def _canonical(stated: Any) -> Any:
    """A stated schedule written as text ('2% -> 20% in +2% stages'), in one spelling."""
    if isinstance(stated, str) and (m := _SCHEDULE_TEXT.search(stated)):
        return _schedule_text(*(float(g) / 100 for g in m.groups()[:2]), float(m.group(3)) / 100)
    return stated


def _schedule_readings(stated: Any, exp: Any, field: str | None) -> list[Reading]:
    """A schedule (or one of its fractions) as counts, stage fractions, a stage count or text."""
    pool = exp.pool_size()
    sched = exp.schedule
    counts = list(sched.labeled_counts(pool))
    steps = [b - a for a, b in zip(counts, counts[1:])]
    if field in _FRACTIONS:
        frac = getattr(sched, field)
        if not _is_int(stated) or frac is None:
            return []
        exact = frac * pool
        value = {"initial_fraction": counts[0], "final_fraction": counts[-1]}.get(field)
        if value is None:  # the step: one budget per query, or several where rounding alternates
            value = steps[0] if len(set(steps)) == 1 else steps
            how = f"{frac:g} x {pool:,} = {exact:,.10g}: {_span(steps)} per query"
        else:
            how = f"{frac:g} x {pool:,} = {exact:,.10g}: {value:,} labeled"
        return [Reading(value, how, exact=exact)]
    if field is not None:
        return []
    if sched.initial_fraction is not None:
        fracs = [round(sched.initial_fraction + i * sched.step_fraction, 12) for i in range(len(counts))]
        text = _schedule_text(sched.initial_fraction, sched.final_fraction, sched.step_fraction)
    else:
        fracs = [c / pool for c in counts]
        text = f"{counts[0]:,} -> {counts[-1]:,} in +{sched.query_size:,}"
    stages = f"{len(counts)} stages, {counts[0]:,} -> {counts[-1]:,} of {pool:,} labeled"
    return [Reading(len(counts), stages), Reading(fracs, f"stage fractions {fracs}"),
            Reading(counts, f"stage counts {counts}"), Reading(text, f"{text} ({stages})")]


def _crop_size(params: Params, recipe: str, augment: list) -> Reading | None:
    """The side of the crop a recipe's augmentation takes: `cropN` crops N, `crop` pads and crops back to the
    image side of the datasets the recipe trains on."""

    for name in augment:
        if (m := re.fullmatch(r"crop(\d+)", str(name))):
            return Reading(int(m.group(1)), f"{name}: a random {m.group(1)} x {m.group(1)} crop")
        if name == "crop":
            sides = {get_spec(e.dataset).height for _, e in params.experiments if e.recipe == recipe}
            if len(sides) == 1:
                (side,) = sides
                return Reading(side, f"crop: a random {side} x {side} crop of the zero-padded {side} x {side} images")
    return None


def readings(stated: Any, key: str, ours: Any, params: Params) -> list[Reading]:
    """Our value (params key `key`) in the representations a paper may state it in: a fraction of the pool as
    a count, a seed list as a run count, a decay factor as the rate after a milestone (lr x gamma), an
    augmentation list as its crop size, a one-element list as its element, a list the paper states as one of
    its members (or, for an experiment field, over the paper's experiments)."""
    parts = key.split(".")
    out: list[Reading] = []
    if parts[0] == "experiments" and len(parts) >= 3:
        exp = params.experiment(parts[1])
        if parts[2] == "schedule" and len(parts) <= 4:
            out += _schedule_readings(stated, exp, parts[3] if len(parts) == 4 else None)
        elif parts[2] == "seeds" and len(parts) == 3 and _is_int(stated):
            seeds = f"{ours[0]}-{ours[-1]}" if ours == list(range(ours[0], ours[-1] + 1)) else str(ours)
            out.append(Reading(len(ours), f"{len(ours)} runs (seeds {seeds})"))
        elif len(parts) == 3 and isinstance(stated, list) and not isinstance(ours, (list, dict)):
            values = list(dict.fromkeys(getattr(e, parts[2]) for _, e in params.experiments if e.paper == exp.paper))
            out.append(Reading(values, f"{', '.join(map(str, values))} over the {exp.paper} experiments",
                               match=lambda s, v=values: isinstance(s, list) and sorted(map(str, s)) == sorted(map(str, v))))
    if parts[0] == "recipes" and len(parts) == 3:
        recipe = params.recipe(parts[1])
        if parts[2] == "gamma" and _is_num(stated):
            for k, m in enumerate(recipe.milestones, start=1):
                rate = float(f"{recipe.lr * recipe.gamma**k:.12g}")
                power = "" if k == 1 else f"^{k}"
                out.append(Reading(rate, f"lr {recipe.lr:g} x gamma {recipe.gamma:g}{power} = {rate:g} from epoch {m}"))
        elif parts[2] == "augment" and _is_int(stated) and (crop := _crop_size(params, parts[1], ours)):
            out.append(crop)
        elif parts[2] == "augment" and isinstance(stated, list) and "frame_center" in ours:
            drawn = [a for a in ours if a != "frame_center"]  # a fixed window of every frame: nothing is drawn
            out.append(Reading(drawn, f"{drawn}: frame_center is the same centre window of a frame every epoch, "
                                      "not an augmentation"))
    if isinstance(ours, list) and len(ours) == 1 and not isinstance(stated, list):
        out.append(Reading(ours[0], f"the one element of {ours}"))
    if isinstance(stated, list) and not isinstance(ours, (list, dict)):
        out.append(Reading(ours, f"{ours}: one of the stated {stated}",
                           match=lambda s: isinstance(s, list) and any(same(x, ours) for x in s)))
    return out


def _alnum(s: str) -> str:
    return re.sub(r"[^0-9a-z]", "", s.lower())


def compare(stated: Any, key: str, ours: Any, params: Params) -> tuple[str, Reading | None]:
    """(status, the reading that decided it) for a stated value beside our params value; see STATUSES."""
    if isinstance(stated, str) and _UNSTATED.search(stated):
        return "unstated", None
    stated = _canonical(stated)
    if same(stated, ours):
        return "matches", None
    alternatives = readings(stated, key, ours, params)
    for r in alternatives:
        if r.equals(stated):
            return "matches", r
    for r in alternatives:
        if r.exact is not None and _is_int(stated) and abs(stated - r.exact) < 1:
            return "rounding", r
    if isinstance(stated, str) and isinstance(ours, str) and len(_alnum(stated)) >= 2 \
            and _alnum(ours).startswith(_alnum(stated)):
        return "unstated", Reading(ours, f"{ours}: the paper names {stated} without the member")
    return "differs", (alternatives[0] if alternatives else None)


def protocol_drift(registries: dict[str, dict], paper_params: Params | None) -> list[dict]:
    """Per stated hyper-parameter: the paper's value, ours (paper profile) where a params key holds it, and
    whether they agree once written alike (`ours_as_stated`, `how`); a deliberate mismatch carries the registry's
    note as its reason. Rows are ordered by STATUSES, real drift ("differs") first, then by registry."""
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
                    status, reading = compare(h["value"], h["params_key"], ours, paper_params)
                    row.update(ours=ours, status=status)
                    if reading is not None:
                        row.update(ours_as_stated=reading.value, how=reading.how)
            if h.get("note"):
                row["reason"] = h["note"]
            rows.append(row)
    return sorted(rows, key=lambda r: status_rank(r["status"]))


def status_group(status: str) -> str:
    """A row status's group in STATUSES: itself, or for the long forms 'params.yaml has no X (not built yet)',
    'no params key (...)' and 'paper profile not loaded' their short names."""
    if status in STATUSES:
        return status
    if status.endswith("(not built yet)"):
        return "not built"
    if status.startswith("no params key"):
        return "no params key"
    return "not loaded" if status.endswith("not loaded") else status


def status_rank(status: str) -> int:
    """A row status's place in STATUSES (after them if unknown)."""
    group = status_group(status)
    return STATUSES.index(group) if group in STATUSES else len(STATUSES)


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
