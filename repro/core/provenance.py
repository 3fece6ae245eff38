"""A run record's provenance: code, params, packages, device and machine class, host, paths, start time."""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy
import torch

from repro.core.determinism import machine_class, machine_class_sha256
from repro.spec.records import git_commit


def provenance(device, params_sha256: str, paths: dict[str, str], code_sha256: str | None = None,
               params_raw_sha256: str | None = None, group_runs: int | str = 1) -> dict[str, Any]:
    """Everything that may differ between two identical runs (and helps tell why), with the machine class
    (`repro.core.determinism.machine_class`) that makes records of the same code and params bit-identical, and its
    short id `machine_class_sha256` to compare two records' classes. `group_runs`: the run's lockstep limit."""
    try:  # the installed version without importing it (importing torchvision costs ~2 s per process)
        tv = version("torchvision")
    except PackageNotFoundError:
        tv = None
    dev_name = torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else platform.processor() or "cpu"
    cls = machine_class(device, group_runs)
    return {
        "git": git_commit(),
        "code_sha256": code_sha256,
        "params_sha256": params_sha256,
        "params_raw_sha256": params_raw_sha256,  # = params_sha256 (repro.spec.fingerprint), the field reports check
        "packages": {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": tv,
                     "numpy": numpy.__version__},
        "device": {"type": getattr(device, "type", str(device)), "name": dev_name,
                   "torch_threads": torch.get_num_threads()},
        "machine_class": cls,
        "machine_class_sha256": machine_class_sha256(cls),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "paths": paths,
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
