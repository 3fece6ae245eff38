"""ActivePool: the labeled / unlabeled split of a training set, and its seeded initial state."""

from __future__ import annotations

import hashlib

import numpy as np

from repro.core.seeding import derive_seed


def indices_sha256(indices) -> str:
    """SHA-256 of the sorted indices as little-endian int64 bytes (order-free fingerprint of a set)."""
    arr = np.sort(np.asarray(indices, dtype="<i8").ravel())
    return hashlib.sha256(arr.tobytes()).hexdigest()


def dataset_permutation(dataset: str, size: int, seed: int) -> np.ndarray:
    """One seeded permutation of range(size) per (dataset, seed): the source of every initial labeled set."""
    return np.random.default_rng(derive_seed(int(seed), 0, f"initial-pool:{dataset}:{size}")).permutation(size)


class ActivePool:
    """Labeled / unlabeled index sets over a training set of `size` examples.

    The initial labeled set is a prefix of `dataset_permutation(dataset, size, seed)`, so it depends only
    on (dataset, initial size, seed) and is identical for every method.
    """

    def __init__(self, size: int, labeled: np.ndarray | None = None):
        if size <= 0:
            raise ValueError(f"pool size must be positive, got {size}")
        self.size = int(size)
        self._mask = np.zeros(self.size, dtype=bool)
        if labeled is not None:
            self.label(labeled)

    @classmethod
    def initial(cls, dataset: str, size: int, initial_size: int, seed: int) -> ActivePool:
        if not 0 < initial_size <= size:
            raise ValueError(f"initial labeled size {initial_size} must be in 1..{size}")
        return cls(size, dataset_permutation(dataset, size, seed)[:initial_size])

    @property
    def labeled_mask(self) -> np.ndarray:
        return self._mask.copy()

    @property
    def labeled(self) -> np.ndarray:
        return np.flatnonzero(self._mask)

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(~self._mask)

    @property
    def n_labeled(self) -> int:
        return int(self._mask.sum())

    @property
    def n_unlabeled(self) -> int:
        return self.size - self.n_labeled

    def label(self, indices) -> None:
        """Move `indices` from unlabeled to labeled; rejects duplicates, out-of-range and already-labeled ones."""
        idx = np.asarray(indices)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):
            bad = idx[(idx < 0) | (idx >= self.size)][:5].tolist()
            raise ValueError(f"indices out of range 0..{self.size - 1}: {bad}")
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"duplicate indices: {uniq[counts > 1][:5].tolist()}")
        if self._mask[idx].any():
            raise ValueError(f"indices already labeled: {idx[self._mask[idx]][:5].tolist()}")
        self._mask[idx] = True

    def sha256(self) -> str:
        return indices_sha256(self.labeled)
