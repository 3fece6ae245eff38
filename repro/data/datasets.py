"""Datasets as tensors on the training device: uint8 images (N, C, H, W) and int64 labels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from repro.core.tasks import get_task
from repro.data.augment import Augmenter
from repro.data.host_frames import hold
from repro.data.loaders.real import load_real
from repro.data.synthetic import make_synthetic
from repro.data.synthetic_dense import make_synthetic_dense
from repro.data.validate import validate
from repro.spec.datasets import DatasetSpec, get_spec
from repro.spec.recipe import Recipe

DIGITS_SOURCE = "scikit-learn's bundled digits (sklearn.datasets.load_digits)"


@dataclass
class ImageData:
    """A train/test split held as tensors. `train_x` is the active-learning pool."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def __post_init__(self):
        for name in ("train_x", "test_x"):
            t = getattr(self, name)
            if t.dtype != torch.uint8 or t.dim() != 4 or tuple(t.shape[1:]) != self.spec.stored_shape:
                raise ValueError(f"{name} must be uint8 of shape (N, *{self.spec.stored_shape}), got {t.dtype} {tuple(t.shape)}")
        if len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y):
            raise ValueError("images and labels differ in length")
        if self.spec.task != "classification":

            task = get_task(self.spec.task)
            task.check_targets(self.train_y, len(self.train_x), self.spec.num_classes, f"{self.spec.name} train")
            task.check_targets(self.test_y, len(self.test_x), self.spec.num_classes, f"{self.spec.name} test")

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def pool_size(self) -> int:
        return len(self.train_y)

    def train_subset(self, indices) -> ImageData:
        """The same data with the training pool restricted to `indices` (the test set unchanged)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.train_x.device)
        return ImageData(self.spec, self.train_x[idx], self.train_y[idx], self.test_x, self.test_y)

    def augmenter(self, recipe: Recipe, device) -> Augmenter:
        """The recipe's on-device augmentations and this dataset's normalisation (what the trainer applies)."""
        return Augmenter(recipe.augment, self.spec.mean, self.spec.std, device, (self.spec.height, self.spec.width))

    def to(self, device) -> ImageData:
        """On `device`; a host-resident spec's tensors stay in host memory, handed out per batch (HostFrames)."""
        return ImageData(self.spec, *(hold(t, device, self.spec.host_resident)
                                      for t in (self.train_x, self.train_y, self.test_x, self.test_y)))


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(8).permutation(len(y)))
    spec = get_spec("digits")
    tr, te = perm[: spec.train_size], perm[spec.train_size :]
    return x[tr], y[tr], x[te], y[te]


def _subsample(x, y, n: int | None, salt: int):
    """A fixed seeded subset of n examples (sorted indices), or all when n is None or >= len."""
    if n is None or n >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(salt).permutation(len(y))[:n])
    idx_t = torch.from_numpy(idx)
    return x[idx_t], y[idx_t]


def load_dataset(
    name: str,
    data_dir: Path | str = "data",
    train_size: int | None = None,
    test_size: int | None = None,
    imbalance: float = 1.0,
    device="cpu",
    classes: int | None = None,
) -> ImageData:
    """Load `name` onto `device`. Real data are subsampled (fixed seed) to train/test_size when given;
    synthetic data are generated at exactly those sizes (default: the real dataset's sizes)."""
    spec = get_spec(name)
    if classes is not None:
        if not name.startswith("synthetic-"):
            raise ValueError(f"{name}: only synthetic datasets take a class count")
        spec = replace(spec, num_classes=classes)
    if name.startswith("synthetic-") and spec.task != "classification":

        if imbalance != 1.0:
            raise ValueError(f"{name}: the dense stand-ins take no class imbalance")
        parts = make_synthetic_dense(spec, train_size or spec.train_size, test_size or spec.test_size)
        return ImageData(spec, *parts).to(device)
    if name.startswith("synthetic-"):
        sizes = (train_size or spec.train_size, test_size or spec.test_size)
        parts = make_synthetic(spec, *sizes, imbalance=imbalance)
        # Small or imbalanced draws may miss a class: only the shapes, labels and sizes are checked.
        validate(parts, spec, f"the {name} generator (repro/data/synthetic.py)", "this is a bug; please report it",
                 sizes)
        return ImageData(spec, *parts).to(device)
    if name == "digits":
        parts = validate(_digits(), spec, DIGITS_SOURCE, "reinstall scikit-learn",
                         (spec.train_size, spec.test_size), all_classes=True)
    else:
        # Validated by its loader. ImageNet / iNaturalist decode only the subset _subsample keeps below (the same
        # indices), so it leaves them unchanged; the others come in full (validated in full) and are subsampled.
        parts = load_real(name, Path(data_dir), train_size=train_size, test_size=test_size)
    tx, ty = _subsample(parts[0], parts[1], train_size, salt=1)
    vx, vy = _subsample(parts[2], parts[3], test_size, salt=2)
    return ImageData(spec, tx, ty, vx, vy).to(device)
