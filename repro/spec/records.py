"""Run records: atomic writes and provenance (the code fingerprint that keys checkpoints is in repro.al.methods)."""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def atomic_write(path: Path | str, write: Callable[[Any], None], mode: str = "w") -> None:
    """`write(file)` into a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_npz(path: Path | str, arrays: dict) -> None:

    atomic_write(path, lambda f: np.savez(f, **arrays), "wb")


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


_DVC_OUTPUTS: dict[tuple[str, int, int], tuple[str, ...]] = {}


def dvc_output_paths(dvc_yaml: Path | str) -> tuple[str, ...]:
    """What DVC writes, relative to dvc.yaml's directory: `dvc.lock` and every path dvc.yaml declares as a
    stage's `outs` / `metrics` / `plots` (under its `wdir`) or as a top-level `metrics` / `plots` file. Parsed
    once per version of the file (cached on its mtime and size); no dvc.yaml: `dvc.lock` alone."""
    path = Path(dvc_yaml)
    try:
        st = path.stat()
    except OSError:
        return ("dvc.lock",)
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _DVC_OUTPUTS:


        try:
            doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C: 8x faster
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            doc = None
        doc = doc if isinstance(doc, dict) else {}

        def files(entries) -> list[str]:  # `- path` or `- path: {cache: false, ...}`
            out = []
            for e in entries if isinstance(entries, list) else []:
                out += [e] if isinstance(e, str) else [k for k in e if isinstance(k, str)] if isinstance(e, dict) else []
            return out

        paths = ["dvc.lock"]
        stages = doc.get("stages")
        for stage in (stages.values() if isinstance(stages, dict) else []):
            if isinstance(stage, dict):
                wdir = stage.get("wdir") if isinstance(stage.get("wdir"), str) else "."
                paths += [posixpath.join(wdir, p) for k in ("outs", "metrics", "plots") for p in files(stage.get(k))]
        paths += files(doc.get("metrics"))
        for plot in doc.get("plots") if isinstance(doc.get("plots"), list) else []:
            if isinstance(plot, str):
                paths.append(plot)
            elif isinstance(plot, dict):  # `- file: {x, y: [cols]}` or `- id: {x: {file: col}, y: {file: [cols]}}`
                for name, props in plot.items():
                    axes = [props.get(a) for a in ("x", "y")] if isinstance(props, dict) else []
                    by_file = [f for ax in axes if isinstance(ax, dict) for f in ax]
                    paths += by_file or [name]
        _DVC_OUTPUTS.clear()  # one dvc.yaml per process in practice: keep only the newest version
        _DVC_OUTPUTS[key] = tuple(dict.fromkeys(posixpath.normpath(p) for p in paths if isinstance(p, str)))
    return _DVC_OUTPUTS[key]


def git_commit(cwd: Path | str | None = None) -> dict[str, Any]:
    """The HEAD commit of the checkout holding `cwd` (default: this package) and whether tracked files differ
    from it. Files DVC writes (`dvc.lock`, dvc.yaml's outs / metrics / plots, e.g. the committed
    reports/metrics.json) do not count as dirty: a `dvc repro` rewrites them, the code and params stay as
    committed."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd or PACKAGE_DIR, timeout=10)

    try:
        head = git("rev-parse", "--show-toplevel", "HEAD")
        status = git("status", "--porcelain", "-z", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    lines = head.stdout.splitlines()
    if head.returncode != 0 or len(lines) != 2 or status.returncode != 0:
        return {"commit": None, "dirty": None}
    top, commit = lines
    outputs = dvc_output_paths(Path(top) / "dvc.yaml")
    fields = status.stdout.split("\0")
    changed, i = [], 0
    while i < len(fields):
        entry = fields[i]
        if len(entry) > 3:
            changed.append(entry[3:])
            if entry[0] in "RC":  # a rename or copy: the next field is its source path
                i += 1
                changed += fields[i:i + 1]
        i += 1
    dirty = any(not any(p == o or p.startswith(o + "/") for o in outputs) for p in changed)
    return {"commit": commit, "dirty": dirty}
