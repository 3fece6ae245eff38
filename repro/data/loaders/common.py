"""What every real-dataset loader shares: the missing-dataset error, the seeded subset rule and the memory cap."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

MAX_GIB_ENV = "REPRO_MAX_DATASET_GIB"
DEFAULT_MAX_GIB = 40.0
TRAIN_SALT, TEST_SALT = 1, 2  # repro.data.datasets.load_dataset's _subsample salts


class DatasetMissingError(RuntimeError):
    """A real dataset is not under its root; the message says what to run or where to put the files."""


def missing(name: str, root: Path, expected: str) -> DatasetMissingError:
    return DatasetMissingError(
        f"dataset {name!r} not found under {root}/ (expected {expected}): run `python -m repro data download {name}` "
        f"or place the files there (see data/README.md)"
    )


def subset_indices(total: int, n: int | None, salt: int) -> np.ndarray:
    """The sorted indices `datasets._subsample(x, y, n, salt)` keeps of `total` examples (all when n is None or
    n >= total): np.random.default_rng(salt).permutation(total)[:n], sorted."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(salt).permutation(total)[:n])


def max_dataset_gib() -> float:
    """The cap on the decoded images of one dataset (train + test) in GiB: REPRO_MAX_DATASET_GIB, default 40."""
    raw = os.environ.get(MAX_GIB_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_GIB
    try:
        gib = float(raw)
    except ValueError:
        gib = float("nan")
    if not math.isfinite(gib) or gib <= 0:
        raise ValueError(f"{MAX_GIB_ENV}={raw!r} is not a positive number of GiB")
    return gib


def gib(nbytes: int) -> str:
    gib = nbytes / 2**30
    return f"{gib:.1f}" if gib >= 0.1 else f"{gib:.2g}"


def check_memory(name: str, n_train: int, n_test: int, per_example: int, what: str, shape: str, fix: str) -> None:
    """Refuse (one-line ValueError) a subset whose decoded uint8 arrays exceed the cap, before decoding anything."""
    need = (n_train + n_test) * per_example
    cap = max_dataset_gib()
    if need > cap * 2**30:
        raise ValueError(f"{name}: {n_train:,} train + {n_test:,} test {what} at {shape} uint8 are {gib(need)} GiB, "
                         f"over the {cap:g} GiB cap ({MAX_GIB_ENV}); set the experiment's train_size / test_size to "
                         f"decode a subset{fix}")
