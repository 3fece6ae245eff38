"""What fixes a run's bits on one machine: the run settings every run applies first, and the machine class that
run records carry (README: "Reproducibility contract").

`apply_run_settings(params)` pins torch threads to params' `threads` (whatever the number of pending runs or
worker processes) and applies the `deterministic` knob. `machine_class(device, ...)` describes what decides
the floating-point results besides code and params: CPU model, effective ATen capability, effective oneDNN
ISA, MKL version and CBWR mode, torch build, torch threads (on CUDA also GPU model, driver, CUDA / cuDNN, the
deterministic flags and the lockstep group). Same class, code and params => bit-identical records.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import torch

from repro.core.device import resolve_device

CUBLAS_WORKSPACE_CONFIG = ":4096:8"  # cuBLAS's reproducible workspace setting (CUDA docs, "Results reproducibility")
# environment variables that lower (or fix) the CPU kernels torch, oneDNN and MKL pick (tests/test_other_cpu.py)
CPU_KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def resolve_threads(threads: int | str, device_type: str) -> int:
    """Torch threads per run for params' `threads`: the integer itself; "auto" is 1 on a CPU (the cores go to
    worker processes) and, on CUDA, this machine's cores shared among torchrun's local processes."""
    if threads != "auto":
        return int(threads)
    if device_type != "cuda":
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def apply_determinism(deterministic: bool) -> None:
    """params' `deterministic`: torch.use_deterministic_algorithms, cuDNN's deterministic algorithms without
    benchmarking, and CUBLAS_WORKSPACE_CONFIG (read by cuBLAS when it creates its handle: call this before the
    first CUDA matmul). False restores torch's defaults for the first two and leaves the environment alone."""
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic


def apply_run_settings(params: Any) -> int:
    """Everything a run sets before it computes: the deterministic knob, then torch threads from params
    (`repro.core.device.model_layout` benchmarks cuDNN only when not deterministic). Returns the thread count."""

    apply_determinism(params.deterministic)
    threads = resolve_threads(params.threads, resolve_device(params.device).type)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


_ISA_LINE = re.compile(r"isa:([^\n,]+)")


def _onednn_isa_probe() -> None:
    """One tiny oneDNN convolution with verbose output on (oneDNN prints its `isa:` line with the first primitive)."""
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        torch.ops.aten.mkldnn_convolution(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1), None,
                                          [0, 0], [1, 1], [1, 1], 1)


@functools.lru_cache(maxsize=1)
def onednn_isa() -> str | None:
    """The ISA oneDNN's CPU kernels use in this process (ONEDNN_MAX_CPU_ISA and the CPU decide it), from its
    verbose `isa:` line: captured in-process (about 2 ms), else (verbose output already on, no stdout) from a
    subprocess that inherits this environment (about 2 s). None where torch has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    out = ""
    try:
        if os.environ.get("ONEDNN_VERBOSE") or os.environ.get("DNNL_VERBOSE"):  # the user's verbose output stays on
            raise RuntimeError("oneDNN verbose output is on: its isa line went to stdout already")
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with tempfile.TemporaryFile() as f:
                os.dup2(f.fileno(), 1)
                try:
                    _onednn_isa_probe()
                finally:
                    os.dup2(saved, 1)
                f.seek(0)
                out = f.read().decode(errors="replace")
        finally:
            os.close(saved)
    except Exception:  # no stdout to borrow, or a oneDNN that refuses the probe: ask a fresh process
        pass
    found = _ISA_LINE.search(out)
    if found is None:
        try:
            out = subprocess.run([sys.executable, "-c", "from repro.core.determinism import _onednn_isa_probe as p; p()"],
                                 capture_output=True, text=True, timeout=120).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        found = _ISA_LINE.search(out)
    return found.group(1).strip() if found else None


@functools.lru_cache(maxsize=1)
def mkl_version() -> str | None:
    """The MKL torch was built with (torch.__config__.show()); None without MKL."""
    if not torch.backends.mkl.is_available():
        return None
    found = re.search(r"Math Kernel Library Version ([^\n]+?)(?: for |\n|$)", torch.__config__.show())
    return found.group(1).strip() if found else "unknown"


@functools.lru_cache(maxsize=1)
def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def machine_class(device: Any, group_runs: int | str = 1) -> dict[str, Any]:
    """What decides a run's floating-point results besides code and params (the README's machine class).
    `group_runs`: the lockstep group limit the run trained under (1: alone)."""
    cls: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        "mkl_version": mkl_version(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS"),
        "torch": torch.__version__,
        "torch_git": torch.version.git_version,
        "torch_cuda_build": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "device": getattr(device, "type", str(device)),
    }
    if cls["device"] == "cuda":
        props = torch.cuda.get_device_properties(device)
        cls.update({
            "gpu": props.name, "gpu_memory_bytes": props.total_memory, "driver": _nvidia_driver(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "group_runs": group_runs,
        })
    return cls


def machine_class_sha256(cls: dict[str, Any]) -> str:
    """A short, stable id of a machine class (the first 16 hex digits of the SHA-256 of its sorted JSON)."""
    return hashlib.sha256(json.dumps(cls, sort_keys=True, default=str).encode()).hexdigest()[:16]
