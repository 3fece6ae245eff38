"""Run records: atomic writes and provenance (the code fingerprint that keys checkpoints is in repro.methods)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


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
    import numpy as np

    atomic_write(path, lambda f: np.savez(f, **arrays), "wb")


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def git_commit() -> dict[str, Any]:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=PACKAGE_DIR, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def provenance(device, params_sha256: str, paths: dict[str, str], code_sha256: str | None = None,
               params_raw_sha256: str | None = None) -> dict[str, Any]:
    """Everything that may differ between two identical runs (and helps tell why)."""
    import numpy
    import torch

    try:  # the installed version without importing it (importing torchvision costs ~2 s per process)
        from importlib.metadata import PackageNotFoundError, version

        tv = version("torchvision")
    except PackageNotFoundError:
        tv = None
    dev_name = torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else platform.processor() or "cpu"
    return {
        "git": git_commit(),
        "code_sha256": code_sha256,
        "params_sha256": params_sha256,
        "params_raw_sha256": params_raw_sha256,  # repro.fingerprint: what the report stages check, without torch
        "packages": {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": tv,
                     "numpy": numpy.__version__},
        "device": {"type": getattr(device, "type", str(device)), "name": dev_name,
                   "torch_threads": torch.get_num_threads()},
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "paths": paths,
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
