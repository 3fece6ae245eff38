"""`python -m repro dvc-deps [--write]`: the code deps each run and rank stage of dvc.yaml must list (the
shared core + its methods' files, `repro.methods.stage_code_deps`); --write rewrites them in place."""

from __future__ import annotations

import re
from pathlib import Path

from repro.config import Params
from repro.methods import stage_code_deps

TABLE_DEPS = ["repro/sampling.py", "repro/params_table.py", "repro/report", "repro/experiments.py"]


def wanted(params: Params) -> dict[str, list[str]]:
    from repro.experiments import ARTIFACTS, SamplingTable

    out = {f"run_{n}": stage_code_deps(params, e.methods) for n, e in params.experiments}
    out.update({f"rank_{n}": stage_code_deps(params, r.methods) + ["repro/rankings.py"] for n, r in params.rankings})
    out.update({f"figure_{a.paper}_{a.name}": stage_code_deps(params, a.methods) + TABLE_DEPS + [f"paper_tables/{a.paper}.yaml"]
                for a in ARTIFACTS.values() if isinstance(a, SamplingTable)})  # tables that time the methods
    return out


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml text with each named stage's block-list `deps:` replaced."""
    for stage, files in deps.items():
        pat = re.compile(rf"(\n  {re.escape(stage)}:[^\n]*\n(?:    [^\n]*\n)*?    deps:\n)((?:      - [^\n]*\n)*)")
        m = pat.search(text)
        if m is None:
            raise KeyError(f"unknown stage {stage!r} in dvc.yaml (or its deps are not a block list); add it first")
        text = text[: m.start(2)] + "".join(f"      - {f}\n" for f in files) + text[m.end(2):]
    return text


def main(params: Params, path: str | Path = "dvc.yaml", write: bool = False) -> int:
    path = Path(path)
    old = path.read_text()
    new = rewrite(old, wanted(params))
    if write:
        path.write_text(new)
        print(f"{path}: code deps {'updated' if new != old else 'already up to date'}")
        return 0
    if new != old:
        print(f"{path}: code deps are out of date; run `python -m repro dvc-deps --write`")
        return 1
    print(f"{path}: code deps up to date")
    return 0
