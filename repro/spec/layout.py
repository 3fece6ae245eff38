"""Where everything a run or a rankings stage writes lives, in one place (the loop writes, the report stages, the
budget fit and the audit read): results/<experiment>/<method>/seed<k>.json beside its .features.npz and
.predictions.npz, checkpoints/<experiment>/<method>/seed<k>/, and results/<rankings>/seed<k>.npz."""

from __future__ import annotations

from pathlib import Path


def run_stem(results_dir: Path | str, experiment: str, method: str, seed: int) -> Path:
    return Path(results_dir) / experiment / method / f"seed{seed}"


def record_path(params, experiment: str, method: str, seed: int) -> Path:
    """A run's record (JSON)."""
    return run_stem(params.results_dir, experiment, method, seed).with_suffix(".json")


def features_path(params, experiment: str, method: str, seed: int) -> Path:
    """The task model's features per stage of a `features_of` run (read by repro.report.embedding)."""
    return run_stem(params.results_dir, experiment, method, seed).with_suffix(".features.npz")


def features_beside(record: Path | str) -> Path:
    """The features file beside a run record."""
    return Path(record).with_suffix(".features.npz")


def predictions_path(params, experiment: str, method: str, seed: int) -> Path:
    """The first query's `prediction_maps` of a `predictions_of` run (read by repro.report.predictions)."""
    return run_stem(params.results_dir, experiment, method, seed).with_suffix(".predictions.npz")


def checkpoint_dir(params, experiment: str, method: str, seed: int) -> Path:
    return Path(params.checkpoint_dir) / experiment / method / f"seed{seed}"


def rankings_dir(params, name: str) -> Path:
    return Path(params.results_dir) / name


def rankings_path(params, name: str, seed: int) -> Path:
    """One seed's pool scores of a rankings stage (npz)."""
    return rankings_dir(params, name) / f"seed{seed}.npz"
