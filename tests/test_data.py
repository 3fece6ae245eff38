"""Datasets: embedded stand-ins (digits, synthetic), real loaders on small files the tests make, and the
validation every loader runs (damaged files give one line naming the file, the problem and the fix)."""

import dataclasses
import pickle
import struct
import time

import numpy as np
import pytest
import torch
from PIL import Image

from repro.data import datasets as datasets_module
from repro.data.datasets import load_dataset
from repro.data.loaders.common import DatasetMissingError
from repro.data.loaders.real import load_real, real_dataset_present
from repro.data.validate import DataError, validate
from repro.spec.datasets import DATASETS, EMBEDDED, REAL, get_spec


def fake_spec(monkeypatch, name: str, **changes):
    """Let a real dataset's spec expect a tiny fake's sizes (or classes): loaders check the real ones."""
    spec = dataclasses.replace(REAL[name], **changes)
    monkeypatch.setitem(REAL, name, spec)
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def assert_one_line(err: DataError, where, *phrases: str) -> str:
    """The message is one line that starts with the file it concerns and holds each phrase."""
    msg = str(err)
    assert "\n" not in msg and msg.startswith(f"{where}: "), msg
    for phrase in phrases:
        assert phrase in msg, (phrase, msg)
    return msg


@pytest.mark.parametrize("name", sorted(n for n in EMBEDDED if n.startswith("synthetic-") and n != "synthetic-caltech101"
                                       and EMBEDDED[n].task == "classification"))
def test_synthetic_mimics_shape_and_is_deterministic(name):
    spec = get_spec(name)
    n, m = (600, 200) if spec.height <= 64 else (150, 50)  # 224-px stand-ins (ImageNet, iNaturalist): fewer
    t = time.perf_counter()
    a = load_dataset(name, train_size=n, test_size=m)
    assert time.perf_counter() - t < 5
    b = load_dataset(name, train_size=n, test_size=m)
    assert a.train_x.shape == (n, *REAL[spec.stand_in_for].shape) and a.train_x.dtype == torch.uint8
    assert a.test_x.shape[0] == m and a.num_classes == REAL[spec.stand_in_for].num_classes
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
    from repro.data.loaders import mnist_wheel
    monkeypatch.setattr(mnist_wheel, "wheel_file", lambda: None)
    for name in REAL:
        with pytest.raises(DatasetMissingError) as exc:
            load_dataset(name, tmp_path)
        msg = str(exc.value)
        how = "data/README.md" if REAL[name].task != "classification" else f"repro data download {name}"
        assert "\n" not in msg and how in msg and str(tmp_path) in msg
        assert not real_dataset_present(name, tmp_path)


CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def write_fake_cifar10(root, n_train_per_batch=4, n_test=3, damage=None):
    """CIFAR-10's python batches, tiny; labels cycle through the classes. `damage(file, batch)` may alter one."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    start = 0
    for name, n in [*[(f, n_train_per_batch) for f in CIFAR10_TRAIN_FILES], ("test_batch", n_test)]:
        labels = ((start + np.arange(n)) % 10).tolist()
        start += n
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": labels}
        if damage is not None:
            batch = damage(name, batch)
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def _write_cifar10_with_spec(root, monkeypatch, n_train_per_batch=4, n_test=3, damage=None):
    """The fake, with cifar10's spec expecting its sizes."""
    fake_spec(monkeypatch, "cifar10", train_size=len(CIFAR10_TRAIN_FILES) * n_train_per_batch, test_size=n_test)
    return write_fake_cifar10(root, n_train_per_batch, n_test, damage)


def test_cifar10_loader_reads_python_batches(tmp_path, monkeypatch):
    folder = _write_cifar10_with_spec(tmp_path, monkeypatch)
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert np.array_equal(d.train_x[0].numpy().reshape(-1), first[b"data"][0])  # CHW row layout
    assert d.train_y[:4].tolist() == first[b"labels"]
    assert real_dataset_present("cifar10", tmp_path)


def _idx(path, arr, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def write_fake_mnist_raw(root, n_train=12, n_test=4):
    """torchvision's MNIST/raw idx files, tiny; labels cycle through the classes. Returns the images."""
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    imgs = {"train": rng.integers(0, 256, (n_train, 28, 28)), "t10k": rng.integers(0, 256, (n_test, 28, 28))}
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", imgs[split], 2051)
        _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(len(imgs[split])) % 10, 2049)
    return raw, imgs


def test_mnist_torchvision_loader_on_small_files(tmp_path, monkeypatch):
    _, imgs = write_fake_mnist_raw(tmp_path)
    fake_spec(monkeypatch, "mnist", train_size=len(imgs["train"]), test_size=len(imgs["t10k"]))
    d = load_dataset("mnist", tmp_path)
    assert d.train_x.shape == (len(imgs["train"]), 1, 28, 28) and d.test_x.shape == (len(imgs["t10k"]), 1, 28, 28)
    assert np.array_equal(d.train_x[:, 0].numpy(), imgs["train"])


def test_real_subsample_is_fixed(tmp_path, monkeypatch):
    _write_cifar10_with_spec(tmp_path, monkeypatch)
    a = load_dataset("cifar10", tmp_path, train_size=7, test_size=2)
    b = load_dataset("cifar10", tmp_path, train_size=7, test_size=2)
    assert len(a.train_y) == 7 and torch.equal(a.train_x, b.train_x)


CALTECH_FAKE = {"accordion": 5, "airplanes": 10}  # images per object class; BACKGROUND_Google is added


def write_fake_caltech101(root, monkeypatch):
    """torchvision's Caltech-101 layout, tiny; caltech101's spec expects its classes and 80/20 sizes."""
    cats = root / "caltech101" / "caltech101" / "101_ObjectCategories"
    rng = np.random.default_rng(0)
    for c, n in (*CALTECH_FAKE.items(), ("BACKGROUND_Google", 3)):
        (cats / c).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(arr).save(cats / c / f"image_{i + 1:04d}.jpg")
    n_train = sum(round(0.8 * n) for n in CALTECH_FAKE.values())
    fake_spec(monkeypatch, "caltech101", num_classes=len(CALTECH_FAKE), train_size=n_train,
              test_size=sum(CALTECH_FAKE.values()) - n_train)
    return cats


def test_caltech101_loader_on_small_files(tmp_path, monkeypatch):
    write_fake_caltech101(tmp_path, monkeypatch)
    tx, ty, sx, sy = load_real("caltech101", tmp_path)
    assert tx.shape[1:] == (3, 64, 64) and tx.dtype == torch.uint8
    assert len(tx) + len(sx) == 15  # the background class is not an object class
    assert sorted(set(ty.tolist())) == [0, 1] and np.bincount(ty.numpy()).tolist() == [4, 8]  # 80/20 per class


# --- validation: one function behind every loader ---------------------------------------------------------


def _valid_mnist_like(n_train=20, n_test=5):
    """A small valid (train_x, train_y, test_x, test_y) in MNIST's layout, every class present."""
    rng = np.random.default_rng(3)
    return (torch.from_numpy(rng.integers(0, 256, (n_train, 1, 28, 28), dtype=np.uint8)),
            torch.arange(n_train) % 10,
            torch.from_numpy(rng.integers(0, 256, (n_test, 1, 28, 28), dtype=np.uint8)),
            torch.arange(n_test) % 10)


def _set(parts, i, value):
    return tuple(value if j == i else p for j, p in enumerate(parts))


def _relabel(y, old, new):
    y = y.clone()
    y[y == old] = new
    return y


DAMAGES = {  # name -> (damage of a valid 4-tuple, what the message must say)
    "float images": (lambda p: _set(p, 0, p[0].float()), "train images are float32, expected uint8"),
    "wrong image shape": (lambda p: _set(p, 0, p[0][:, :, :27]), "train images have shape"),
    "int32 labels": (lambda p: _set(p, 1, p[1].int()), "train labels are int32, expected int64"),
    "2-D labels": (lambda p: _set(p, 3, p[3][:, None]), "test labels have shape"),
    "fewer labels": (lambda p: _set(p, 1, p[1][:-1]), "train images but"),
    "negative label": (lambda p: _set(p, 3, p[3] - 1), "test labels range over -1.."),
    "label = num_classes": (lambda p: _set(p, 1, p[1] + 1), "outside mnist's 10 classes"),
    "blank images": (lambda p: _set(p, 2, torch.zeros_like(p[2])), "every test pixel is 0"),
    "wrong split size": (lambda p: (p[0][1:], p[1][1:], p[2], p[3]), "train images, expected"),
    "absent class": (lambda p: _set(p, 1, _relabel(p[1], 3, 4)), "class(es) 3 never occur"),
}


@pytest.mark.parametrize("as_numpy", [False, True], ids=["tensors", "numpy"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_validate_names_each_problem_in_one_line(damage, as_numpy):
    spec = get_spec("mnist")
    parts = _valid_mnist_like()
    sizes = (len(parts[1]), len(parts[3]))
    convert = (lambda p: tuple(t.numpy() for t in p)) if as_numpy else (lambda p: p)
    assert validate(convert(parts), spec, "some/file", "the fix", sizes, all_classes=True) is not None
    damaged, phrase = DAMAGES[damage]
    with pytest.raises(DataError) as exc:
        validate(convert(damaged(parts)), spec, "some/file", "the fix", sizes, all_classes=True)
    assert_one_line(exc.value, "some/file", phrase)
    assert str(exc.value).endswith("; the fix") and exc.value.problem in str(exc.value)


def test_validate_is_cheap_at_mnist_size():
    spec = get_spec("mnist")
    x = torch.zeros(spec.train_size, *spec.shape, dtype=torch.uint8)
    x[0, 0, 0, 0] = 255
    parts = (x, torch.arange(spec.train_size) % 10, x[: spec.test_size], torch.arange(spec.test_size) % 10)
    best = min(_timed(lambda: validate(parts, spec, "w", "f", (spec.train_size, spec.test_size), True))
               for _ in range(3))
    assert best < 0.25


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _cifar_damage(file, change):
    return lambda name, batch: change(batch) if name == file else batch


CIFAR_DAMAGES = {  # name -> (damage of one batch, which file the message names, what it must say)
    "float images": (_cifar_damage("data_batch_2", lambda b: {**b, b"data": b[b"data"].astype(np.float32)}),
                     "data_batch_2", "images are float32"),
    "short rows": (_cifar_damage("test_batch", lambda b: {**b, b"data": b[b"data"][:, :3000]}),
                   "test_batch", "expected uint8 rows of 3072"),
    "label outside classes": (_cifar_damage("data_batch_4", lambda b: {**b, b"labels": [10] + b[b"labels"][1:]}),
                              "data_batch_4", "..10, outside cifar10's 10 classes 0..9"),
    "no labels": (_cifar_damage("data_batch_1", lambda b: {b"data": b[b"data"]}), "data_batch_1", "cannot be read"),
}


@pytest.mark.parametrize("damage", sorted(CIFAR_DAMAGES))
def test_damaged_cifar_batch_is_one_line_naming_the_file(tmp_path, monkeypatch, damage):
    change, file, phrase = CIFAR_DAMAGES[damage]
    folder = _write_cifar10_with_spec(tmp_path, monkeypatch, damage=change)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path)
    assert_one_line(exc.value, folder / file, phrase, "python -m repro data download cifar10")


def test_truncated_cifar_batch_is_one_line_naming_the_file(tmp_path, monkeypatch):
    folder = _write_cifar10_with_spec(tmp_path, monkeypatch)
    _truncate(folder / "data_batch_3")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path)
    assert_one_line(exc.value, folder / "data_batch_3", "cannot be read as a CIFAR python batch")


def test_real_split_sizes_and_classes_are_checked_against_the_spec(tmp_path, monkeypatch):
    folder = write_fake_cifar10(tmp_path)  # the real spec: 50,000 / 10,000 images expected
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path)
    assert_one_line(exc.value, folder, f"train images, expected {REAL['cifar10'].train_size}")

    other = tmp_path / "other"
    folder = _write_cifar10_with_spec(other, monkeypatch, damage=lambda name, b: {**b, b"labels": [c % 9 for c in b[b"labels"]]})
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", other)
    assert_one_line(exc.value, folder, "class(es) 9 never occur in the train labels")


def test_damaged_mnist_raw_files_are_one_line(tmp_path, monkeypatch):
    raw, imgs = write_fake_mnist_raw(tmp_path)
    fake_spec(monkeypatch, "mnist", train_size=len(imgs["train"]), test_size=len(imgs["t10k"]))
    _idx(raw / "t10k-labels-idx1-ubyte", np.full(len(imgs["t10k"]), 12), 2049)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line(exc.value, raw, "test labels range over 12..12", "python -m repro data download mnist")
    _truncate(raw / "train-images-idx3-ubyte")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line(exc.value, raw / "train-images-idx3-ubyte", "cannot be read as an MNIST idx file")


def test_damaged_caltech101_image_is_one_line_naming_it(tmp_path, monkeypatch):
    cats = write_fake_caltech101(tmp_path, monkeypatch)
    bad = cats / "airplanes" / "image_0003.jpg"
    _truncate(bad)
    bad.write_bytes(b"not a jpeg" + bad.read_bytes()[10:])
    with pytest.raises(DataError) as exc:
        load_real("caltech101", tmp_path)
    assert_one_line(exc.value, bad, "cannot be read as an image", "python -m repro data download caltech101")


def test_embedded_stand_ins_are_validated_too(monkeypatch):
    parts = datasets_module._digits()
    monkeypatch.setattr(datasets_module, "_digits", lambda: (parts[0], parts[1] % 9, parts[2], parts[3]))
    with pytest.raises(DataError) as exc:
        load_dataset("digits")
    assert_one_line(exc.value, datasets_module.DIGITS_SOURCE, "class(es) 9 never occur")

    real_make = datasets_module.make_synthetic
    monkeypatch.setattr(datasets_module, "make_synthetic",
                        lambda *a, **k: _set(real_make(*a, **k), 0, real_make(*a, **k)[0].float()))
    with pytest.raises(DataError) as exc:
        load_dataset("synthetic-mnist", train_size=30, test_size=10)
    assert_one_line(exc.value, "the synthetic-mnist generator (repro/data/synthetic.py)", "train images are float32")
