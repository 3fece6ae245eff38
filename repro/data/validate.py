"""What every loader returns is checked here: dtype, shapes, label range, split sizes, classes present.

A failure is a `DataError`: one line naming the file (or root), what is wrong and the fix. Works on numpy
arrays and CPU tensors alike (the MNIST cache is checked before it becomes tensors); vectorised, milliseconds
for MNIST's 60,000 images.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from repro.spec.datasets import DatasetSpec

# What parsing a damaged or foreign file raises (pickle, numpy's zip reader, torchvision's idx reader, PIL).
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, ImportError,
    OverflowError, AssertionError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile,
)


def one_line(text: str) -> str:
    """Runs of whitespace, newlines included, as one space."""
    return " ".join(str(text).split())


def describe(error: BaseException, limit: int = 160) -> str:
    """An exception as 'Type: text', one line, shortened (for 'cannot be read (...)' problems)."""
    text = one_line(f"{type(error).__name__}: {error}".rstrip(": "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DataError(RuntimeError):
    """Data present but unusable. One line: where (file or root), what is wrong, the fix."""

    def __init__(self, where: str | Path, problem: str, fix: str):
        self.where, self.problem, self.fix = str(where), one_line(problem), one_line(fix)
        super().__init__(f"{self.where}: {self.problem}; {self.fix}")

    def __reduce__(self):  # picklable (e.g. across worker processes) despite the three-argument constructor
        return type(self), (self.where, self.problem, self.fix)


def _dtype(a: Any) -> str:
    return str(a.dtype).removeprefix("torch.")


def _lo_hi(a: Any) -> tuple[int, int]:
    """Smallest and largest value; CPU tensors go through numpy (zero-copy, several times faster)."""
    try:
        a = np.asarray(a)
    except (TypeError, RuntimeError):  # a tensor on an accelerator
        pass
    return int(a.min()), int(a.max())


def _split_problem(x: Any, y: Any, spec: DatasetSpec, split: str) -> str | None:
    """The first thing wrong with one split's images `x` (N, C, H, W) and labels `y` (N,), or None."""
    if _dtype(x) != "uint8":
        return f"{split} images are {_dtype(x)}, expected uint8"
    if x.ndim != 4 or tuple(x.shape[1:]) != spec.stored_shape:  # as held: 256 x 256 for the ImageNet-scale sets
        return f"{split} images have shape {tuple(x.shape)}, expected (N, {', '.join(map(str, spec.stored_shape))})"
    if _dtype(y) != "int64":
        return f"{split} labels are {_dtype(y)}, expected int64"
    if y.ndim != 1:
        return f"{split} labels have shape {tuple(y.shape)}, expected (N,)"
    if len(x) != len(y):
        return f"{len(x)} {split} images but {len(y)} labels"
    if len(x) == 0:
        return f"no {split} images"
    lo, hi = _lo_hi(y)
    if lo < 0 or hi >= spec.num_classes:
        return (f"{split} labels range over {lo}..{hi}, outside {spec.name}'s {spec.num_classes} classes "
                f"0..{spec.num_classes - 1}")
    lo, hi = _lo_hi(x)
    if len(x) > 1 and lo == hi:
        return f"every {split} pixel is {lo} (blank images)"
    return None


def validate_split(x: Any, y: Any, spec: DatasetSpec, where: str | Path, fix: str, split: str = "train") -> None:
    """Raise DataError(where, problem, fix) if one split's images or labels are malformed."""
    problem = _split_problem(x, y, spec, split)
    if problem:
        raise DataError(where, problem, fix)


def validate(
    parts: tuple[Any, Any, Any, Any],
    spec: DatasetSpec,
    where: str | Path,
    fix: str,
    sizes: tuple[int, int] | None = None,
    all_classes: bool = False,
) -> tuple[Any, Any, Any, Any]:
    """Check (train_x, train_y, test_x, test_y) against `spec` and return them unchanged.

    `sizes`: the expected (train, test) lengths; `all_classes`: every class must occur in the train split.
    """
    train_x, train_y, test_x, test_y = parts
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        validate_split(x, y, spec, where, fix, split)
    if sizes is not None:
        for split, y, expected in (("train", train_y, sizes[0]), ("test", test_y, sizes[1])):
            if len(y) != expected:
                raise DataError(where, f"{len(y)} {split} images, expected {expected} ({spec.name}'s {split} split)", fix)
    if all_classes:
        counts = np.bincount(np.asarray(train_y), minlength=spec.num_classes)
        absent = np.flatnonzero(counts == 0).tolist()
        if absent:
            shown = absent[:10] + (["..."] if len(absent) > 10 else [])
            raise DataError(where, f"class(es) {', '.join(map(str, shown))} never occur in the train labels "
                                   f"({len(absent)} of {spec.num_classes} classes absent)", fix)
    return parts
