"""CIFAR-100-imbalanced of MAL (Ebrahimi et al., "Minimax Active Learning", Sec. 4.1): "keeping random ratios
from each class, such that the least populated class has at least five instances while allowing for
imbalances up to 100x. We use imbalance ratios of {10^-2, 10^-1.5, 10^-1, 10^-0.5, 10^0}. We use each ratio for
20 randomly chosen classes without replacement." Each run draws its own imbalanced set (Sec. 4.1: "each run
starting with a different imbalanced distribution"), so the builder is seeded."""

from __future__ import annotations

import numpy as np

from repro.core.seeding import derive_seed

MAL_RATIOS = tuple(10.0 ** e for e in (-2.0, -1.5, -1.0, -0.5, 0.0))


def kept_per_class(class_size: int, ratio: float, min_per_class: int = 5) -> int:
    """How many of a class's `class_size` images stay: ratio * size rounded to the nearest integer (halves
    up), at least `min_per_class`, at most the class. For CIFAR-100's 500 a class: 5, 16, 50, 158, 500."""
    kept = int(np.floor(ratio * class_size + 0.5))
    return min(class_size, max(min_per_class, kept))


def imbalanced_indices(labels: np.ndarray, seed: int, ratios: tuple[float, ...] = MAL_RATIOS,
                       classes_per_ratio: int = 20, min_per_class: int = 5) -> np.ndarray:
    """The sorted indices (int64) of an imbalanced subset of `labels` (MAL Sec. 4.1), deterministic per seed.

    A seeded permutation of the classes (in sorted label order) gives each ratio to `classes_per_ratio`
    classes without replacement (ratios in the given order: the first `classes_per_ratio` classes of the
    permutation get ratios[0], ...); each class then keeps `kept_per_class(its size, its ratio)` of its images,
    drawn uniformly without replacement. The number of classes must be len(ratios) * classes_per_ratio.
    """
    labels = np.asarray(labels).reshape(-1)
    classes = np.unique(labels)
    if len(classes) != len(ratios) * classes_per_ratio:
        raise ValueError(f"{len(classes)} classes cannot take {len(ratios)} ratios x {classes_per_ratio} classes each "
                         f"(MAL Sec. 4.1: 5 ratios x 20 classes of CIFAR-100)")
    if any(not 0.0 < r <= 1.0 for r in ratios) or min_per_class < 0:
        raise ValueError(f"ratios must lie in (0, 1] and min_per_class be >= 0, got {ratios}, {min_per_class}")
    rng = np.random.default_rng(derive_seed(int(seed), 0, "mal-imbalanced"))
    order = rng.permutation(classes)
    kept = []
    for i, cls in enumerate(order):
        members = np.flatnonzero(labels == cls)
        n = kept_per_class(len(members), ratios[i // classes_per_ratio], min_per_class)
        kept.append(rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(kept)).astype(np.int64)


def class_ratios(labels: np.ndarray, seed: int, ratios: tuple[float, ...] = MAL_RATIOS,
                 classes_per_ratio: int = 20) -> dict[int, float]:
    """The ratio `imbalanced_indices` gives each class for this seed (same permutation)."""
    classes = np.unique(np.asarray(labels).reshape(-1))
    order = np.random.default_rng(derive_seed(int(seed), 0, "mal-imbalanced")).permutation(classes)
    return {int(c): ratios[i // classes_per_ratio] for i, c in enumerate(order)}


# Per-run subsets of an experiment's training pool (params.yaml `train_subset`): name -> (labels, seed) -> indices
TRAIN_SUBSETS = {"mal-imbalanced": imbalanced_indices}
