"""Datasets: embedded stand-ins (digits, synthetic), real loaders on small files the tests make."""

import pickle
import struct
import time

import numpy as np
import pytest
import torch

from repro.data import DatasetMissingError, get_spec, load_dataset
from repro.data.real import real_dataset_present
from repro.data.specs import EMBEDDED, REAL


@pytest.mark.parametrize("name", sorted(n for n in EMBEDDED if n.startswith("synthetic-") and n != "synthetic-caltech101"))
def test_synthetic_mimics_shape_and_is_deterministic(name):
    spec = get_spec(name)
    t = time.perf_counter()
    a = load_dataset(name, train_size=600, test_size=200)
    assert time.perf_counter() - t < 5
    b = load_dataset(name, train_size=600, test_size=200)
    assert a.train_x.shape == (600, *REAL[spec.stand_in_for].shape) and a.train_x.dtype == torch.uint8
    assert a.test_x.shape[0] == 200 and a.num_classes == REAL[spec.stand_in_for].num_classes
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.train_x[:200], a.test_x)


def test_synthetic_smoke_size_generation_is_fast():
    t = time.perf_counter()
    load_dataset("synthetic-caltech101", train_size=2000, test_size=500)
    load_dataset("synthetic-cifar100", train_size=5000, test_size=1000)
    assert time.perf_counter() - t < 5


def test_synthetic_imbalance():
    d = load_dataset("synthetic-cifar10", train_size=5000, test_size=100, imbalance=0.1)
    counts = torch.bincount(d.train_y, minlength=10).float()
    assert counts[0] > 5 * counts[-1]
    bal = torch.bincount(load_dataset("synthetic-cifar10", train_size=5000, test_size=100).train_y).float()
    assert bal.max() < 1.3 * bal.min()


def test_digits_is_real_sklearn_data():
    d = load_dataset("digits")
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert int(d.train_x.max()) == 255 and set(d.train_y.tolist()) == set(range(10))


def test_missing_real_dataset_is_one_clear_error(tmp_path, monkeypatch):
    from repro.data import mnist_wheel

    monkeypatch.setattr(mnist_wheel, "wheel_file", lambda: None)
    for name in REAL:
        with pytest.raises(DatasetMissingError) as exc:
            load_dataset(name, tmp_path)
        msg = str(exc.value)
        assert "\n" not in msg and f"repro data download {name}" in msg and str(tmp_path) in msg
        assert not real_dataset_present(name, tmp_path)


def _write_cifar10(root, n_train_per_batch=4, n_test=3):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*[(f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)], ("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def test_cifar10_loader_reads_python_batches(tmp_path):
    folder = _write_cifar10(tmp_path)
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert np.array_equal(d.train_x[0].numpy().reshape(-1), first[b"data"][0])  # CHW row layout
    assert d.train_y[:4].tolist() == first[b"labels"]
    assert real_dataset_present("cifar10", tmp_path)


def _idx(path, arr, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_torchvision_loader_on_small_files(tmp_path):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    imgs = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (2, 28, 28))}
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", imgs[split], 2051)
        _idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, len(imgs[split])), 2049)
    d = load_dataset("mnist", tmp_path)
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_x.shape == (2, 1, 28, 28)
    assert np.array_equal(d.train_x[:, 0].numpy(), imgs["train"])


def test_real_subsample_is_fixed(tmp_path):
    _write_cifar10(tmp_path)
    a = load_dataset("cifar10", tmp_path, train_size=7, test_size=2)
    b = load_dataset("cifar10", tmp_path, train_size=7, test_size=2)
    assert len(a.train_y) == 7 and torch.equal(a.train_x, b.train_x)


def test_caltech101_loader_on_small_files(tmp_path):
    from PIL import Image

    cats = tmp_path / "caltech101" / "caltech101" / "101_ObjectCategories"
    rng = np.random.default_rng(0)
    for c, n in (("accordion", 5), ("airplanes", 10), ("BACKGROUND_Google", 3)):
        (cats / c).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(arr).save(cats / c / f"image_{i + 1:04d}.jpg")
    from repro.data.real import load_real

    tx, ty, sx, sy = load_real("caltech101", tmp_path)
    assert tx.shape[1:] == (3, 64, 64) and tx.dtype == torch.uint8
    assert len(tx) + len(sx) == 15  # the background class is not an object class
    assert sorted(set(ty.tolist())) == [0, 1] and np.bincount(ty.numpy()).tolist() == [4, 8]  # 80/20 per class
