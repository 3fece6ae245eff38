"""Plays another CPU (README: "Reproducibility contract"): the same small experiment in two subprocesses whose
environments this test builds, default (no kernel-lowering variables) and lowered (ATen's default kernels,
oneDNN capped at AVX2, MKL in its compatible mode). It asserts the effective settings first, then that the bits
changed (another machine class), then that the nightly's `regress` accepts the lowered artifacts (the same
distribution)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.al.loop import strip_volatile
from repro.core.determinism import CPU_KERNEL_ENV
from repro.report import regression
from repro.report.curves import curve_summary
from repro.spec.artifacts import CurveFigure, panel
from repro.spec.params import load_params
from repro.spec.records import atomic_write_json

from .conftest import ROOT, tiny_params

LOWERED = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
METHODS, SEEDS = ("random", "entropy"), [0, 1, 2, 3, 4]
# the effective settings of a process: ATen's capability, and oneDNN's `isa:` line from one verbose convolution
PROBE = ("import torch; print('capability:', torch.backends.cpu.get_cpu_capability(), flush=True); "
         "torch.ops.aten.mkldnn_convolution(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1), None, [0, 0], [1, 1], "
         "[1, 1], 1)")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())


pytestmark = [
    pytest.mark.slow,  # two small experiments (10 runs each) side by side: ~30 s on 2 cores
    pytest.mark.skipif("avx2" not in _cpu_flags(),
                       reason="needs an x86 CPU with AVX2 (lowering to ATen's default kernels and oneDNN's AVX2 "
                              "must change the effective settings)"),
]


def _env(lowered: bool) -> dict[str, str]:
    """This process's environment without the kernel-lowering variables, plus LOWERED when `lowered`."""
    env = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_ENV and k != "ONEDNN_VERBOSE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**env, **LOWERED} if lowered else env


def _effective_settings(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**env, "ONEDNN_VERBOSE": "1"}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    capability = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("capability:"))
    isa = next(line.split("isa:", 1)[1].strip() for line in out.splitlines() if "isa:" in line)
    return {"capability": capability, "isa": isa}


def _build_curve(params_file: Path) -> Path:
    """The tiny experiment's curve figure (as `python -m repro figure` writes one) under its reports_dir."""
    params = load_params(params_file)
    fig = CurveFigure("mcdal", "tiny", (panel("tiny", "tiny"),), "tiny")
    atomic_write_json(Path(params.reports_dir) / "mcdal" / "tiny.json", curve_summary(params, fig))
    return Path(params.reports_dir)


def test_a_lowered_cpu_changes_the_bits_but_not_the_distribution(tmp_path):
    envs = {"default": _env(False), "lowered": _env(True)}

    settings = {side: _effective_settings(env) for side, env in envs.items()}
    assert settings["default"]["capability"].lower() != "default", settings
    assert settings["lowered"]["capability"].lower() == "default", settings
    assert "AVX2" in settings["lowered"]["isa"] and "AVX-512" not in settings["lowered"]["isa"], settings

    files, procs = {}, {}
    for side, env in envs.items():  # both sides at once, each in one single-threaded process (params' threads)
        raw = tiny_params(tmp_path / side, methods=METHODS, seeds=SEEDS, test_size=200)
        # 3 epochs at lr 0.1: enough steps for the lowered kernels' rounding to move test accuracies, not only picks
        raw["recipes"]["tiny"].update(epochs=3, lr=0.1, milestones=[], augment=[])
        files[side] = tmp_path / side / "params.yaml"
        files[side].parent.mkdir(parents=True)
        files[side].write_text(yaml.safe_dump(raw))
        procs[side] = subprocess.Popen([sys.executable, "-m", "repro", "--params", str(files[side]), "run", "tiny",
                                        "--quiet", "--jobs", "1"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    for side, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{side}: {out[-2000:]}"

    records = {side: {(m, s): json.loads((tmp_path / side / "results" / "tiny" / m / f"seed{s}.json").read_text())
                      for m in METHODS for s in SEEDS} for side in envs}
    # each side's records name the class that made them, with the effective settings asserted above
    classes = {side: {r["provenance"]["machine_class_sha256"] for r in recs.values()} for side, recs in records.items()}
    assert len(classes["default"]) == len(classes["lowered"]) == 1 and classes["default"] != classes["lowered"]
    low = records["lowered"][METHODS[0], SEEDS[0]]["provenance"]["machine_class"]
    assert low["aten_cpu_capability"] == settings["lowered"]["capability"]
    assert low["onednn_isa"] == settings["lowered"]["isa"] and low["mkl_cbwr"] == "COMPATIBLE"
    assert low["torch_threads"] == 1

    # another class: the bits change (some stage's metric or selection differs) ...
    differing = [run for run in records["default"]
                 if strip_volatile(records["default"][run]) != strip_volatile(records["lowered"][run])]
    assert differing, "the lowered kernels left every record bit-identical: this test no longer plays another CPU"

    # ... but not the distribution: the nightly's statistical comparison accepts the lowered artifact
    result = regression.compare(_build_curve(files["lowered"]), _build_curve(files["default"]))
    assert result.tests, "regress tested no series"
    assert not result.failing, result.failing
