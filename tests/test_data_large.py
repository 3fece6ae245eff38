"""ImageNet / iNaturalist 2018 loaders on tiny trees the tests make (labels, the subset picked before decoding,
256 x 256 storage, the missing-data and memory-cap errors) and MAL's 256 -> 224 crop on the device."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import torchvision.datasets  # noqa: F401  (imported at collection: seconds on a cold start, not a test's time)
from PIL import Image

from repro.data.augment import AUGMENTATIONS, Augmenter, center_crop, normalize, random_crop_to
from repro.data.datasets import _subsample
from repro.data.loaders import common, large
from repro.data.loaders.common import DatasetMissingError
from repro.data.loaders.real import load_real, real_dataset_present
from repro.data.validate import DataError
from repro.spec.datasets import DATASETS, REAL, get_spec

WNIDS = ["n02", "n01", "n03"]  # written unsorted: class index = the sorted wnid order
INAT = {"Plantae/1": 1, "Aves/0": 0, "Aves/2": 2}  # 2018/<super>/<category id>: ids interleave the supers


def fake_spec(monkeypatch, name: str, **changes):
    spec = dataclasses.replace(REAL[name], **changes)
    monkeypatch.setitem(REAL, name, spec)
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def colour(label: int, i: int) -> tuple[int, int, int]:
    """A flat colour that encodes (label, image number): red = 60 * (label + 1), green = 10 * i."""
    return 60 * (label + 1), 10 * i, 128


def write_image(path, label: int, i: int, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(label, i)).save(path, format="PNG" if path.suffix == ".png" else "JPEG",
                                                   quality=100)


def read_colours(x: torch.Tensor) -> np.ndarray:
    """(N, 2): (label, image number) decoded from each image's centre pixel."""
    px = x[:, :2, 128, 128].long().numpy()
    return np.stack([np.round(px[:, 0] / 60).astype(int) - 1, np.round(px[:, 1] / 10).astype(int)], axis=1)


def write_imagenet(tmp_path, monkeypatch, n_train=4, n_test=2):
    """data/imagenet/{train,val}/<wnid>/*.JPEG (one .png too), images of odd sizes; spec sized to match."""
    root = tmp_path / "imagenet"
    order = {w: c for c, w in enumerate(sorted(WNIDS))}
    for split, n in (("train", n_train), ("val", n_test)):
        for w in WNIDS:
            for i in range(n):
                suffix = ".png" if (w, i) == ("n03", 1) else ".JPEG"
                write_image(root / split / w / f"{w}_{i}{suffix}", order[w], i, size=(40 + 7 * i, 30))
    fake_spec(monkeypatch, "imagenet", num_classes=3, train_size=3 * n_train, test_size=3 * n_test)
    return root


def write_inat(tmp_path, monkeypatch, damage=None):
    """data/inat2018/2018/<super>/<id>/*.jpg with train2018.json / val2018.json listing them in shuffled order."""
    root = tmp_path / "inat2018"
    rng = np.random.default_rng(0)
    for split, fname, per in (("train", "train2018.json", 3), ("test", "val2018.json", 2)):
        files = [(cat, label, i) for cat, label in INAT.items() for i in range(per)]
        files = [files[j] for j in rng.permutation(len(files))]
        images, annotations = [], []
        for k, (cat, label, i) in enumerate(files):
            rel = f"{cat}/{split}{i}.jpg"
            write_image(root / "2018" / rel, label, i, size=(30, 50))
            images.append({"id": 100 * k + 7, "file_name": f"train_val2018/{rel}", "width": 30, "height": 50})
            annotations.append({"id": k, "image_id": 100 * k + 7, "category_id": label})
        ann = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in range(3)]}
        if damage:
            damage(split, ann)
        (root / fname).write_text(json.dumps(ann))
    fake_spec(monkeypatch, "inat2018", num_classes=3, train_size=9, test_size=6)
    return root


def test_imagenet_labels_are_sorted_wnid_order_and_images_256(tmp_path, monkeypatch):
    write_imagenet(tmp_path, monkeypatch)
    assert real_dataset_present("imagenet", tmp_path)
    tx, ty, sx, sy = load_real("imagenet", tmp_path)
    assert tx.shape == (12, 3, 256, 256) and sx.shape == (6, 3, 256, 256) and tx.dtype == sx.dtype == torch.uint8
    assert ty.dtype == torch.int64 and ty.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # n01, n02, n03
    assert sy.tolist() == [0, 0, 1, 1, 2, 2]
    got = read_colours(tx)
    assert (got[:, 0] == ty.numpy()).all() and got[:, 1].tolist() == [0, 1, 2, 3] * 3  # each image with its label
    assert (read_colours(sx)[:, 0] == sy.numpy()).all()


def test_imagenet_subset_is_the_one_subsampling_keeps(tmp_path, monkeypatch):
    write_imagenet(tmp_path, monkeypatch)
    full = load_real("imagenet", tmp_path)
    calls = []
    real_decode = large.decode
    monkeypatch.setattr(large, "decode", lambda paths, *a, **k: calls.append(len(paths)) or real_decode(paths, *a, **k))
    tx, ty, sx, sy = load_real("imagenet", tmp_path, train_size=5, test_size=2)
    assert calls == [5, 2]  # only the subset is decoded
    ex, ey = _subsample(full[0], full[1], 5, salt=1)
    vx, vy = _subsample(full[2], full[3], 2, salt=2)
    assert torch.equal(tx, ex) and torch.equal(ty, ey) and torch.equal(sx, vx) and torch.equal(sy, vy)


@pytest.mark.parametrize("total,n,salt", [(12, 5, 1), (6, 2, 2), (1000, 37, 1), (10, 10, 1), (10, None, 2), (7, 9, 1)])
def test_subset_indices_follow_subsample(total, n, salt):
    x = torch.arange(total)
    assert common.subset_indices(total, n, salt).tolist() == _subsample(x, x, n, salt)[1].tolist()


def test_decoding_is_resize_256_then_centre_crop(tmp_path):
    from torchvision import transforms

    path = tmp_path / "a.JPEG"
    arr = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)  # landscape, H 50 x W 90
    Image.fromarray(arr).save(path, quality=95)
    want = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(256), transforms.PILToTensor()])
    with Image.open(path) as img:
        expected = want(img.convert("RGB"))
    got = large.decode([path, path], "fix", workers=2)
    assert got.shape == (2, 3, 256, 256) and torch.equal(got[0], expected) and torch.equal(got[1], expected)


def test_inat2018_split_order_and_labels_come_from_the_annotations(tmp_path, monkeypatch):
    root = write_inat(tmp_path, monkeypatch)
    assert real_dataset_present("inat2018", tmp_path)
    tx, ty, sx, sy = load_real("inat2018", tmp_path)
    assert tx.shape == (9, 3, 256, 256) and sx.shape == (6, 3, 256, 256)
    for x, y, fname in ((tx, ty, "train2018.json"), (sx, sy, "val2018.json")):
        ann = json.loads((root / fname).read_text())
        assert y.tolist() == [a["category_id"] for a in ann["annotations"]]  # the JSON's order and categories
        assert (read_colours(x)[:, 0] == y.numpy()).all()
    sub = load_real("inat2018", tmp_path, train_size=4, test_size=3)
    assert torch.equal(sub[0], _subsample(tx, ty, 4, 1)[0]) and torch.equal(sub[3], _subsample(sx, sy, 3, 2)[1])


def test_inat2018_annotation_disagreeing_with_the_folders_is_one_line(tmp_path, monkeypatch):
    def relabel(split, ann):
        if split == "train":
            ann["annotations"][0]["category_id"] = (ann["annotations"][0]["category_id"] + 1) % 3

    root = write_inat(tmp_path, monkeypatch, relabel)
    with pytest.raises(DataError) as exc:
        load_real("inat2018", tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{root / 'train2018.json'}: ") and "category_id" in msg

    def unknown(split, ann):
        if split == "test":
            ann["images"][0]["file_name"] = "train_val2018/Aves/0/nowhere.jpg"

    other = tmp_path / "other"
    write_inat(other, monkeypatch, unknown)
    with pytest.raises(DataError, match="nowhere.jpg"):
        load_real("inat2018", other)


def test_missing_data_names_the_expected_layout(tmp_path):
    for name, phrases in (("imagenet", ("train/<wnid>/*.JPEG", "val/<wnid>/*.JPEG", "ImageFolder")),
                          ("inat2018", ("2018/<super-category>/<category id>/*.jpg", "train2018.json",
                                        "val2018.json", "INaturalist"))):
        assert not real_dataset_present(name, tmp_path)
        with pytest.raises(DatasetMissingError) as exc:
            load_real(name, tmp_path)
        msg = str(exc.value)
        assert "\n" not in msg and str(tmp_path / name) in msg and "data/README.md" in msg
        for phrase in phrases:
            assert phrase in msg, (phrase, msg)


def test_prepare_lists_without_decoding_and_imagenet_archives_are_manual(tmp_path, monkeypatch):
    write_imagenet(tmp_path, monkeypatch)
    monkeypatch.setattr(large, "decode", lambda *a, **k: pytest.fail("prepare decodes nothing"))
    assert large.prepare("imagenet", tmp_path) == (12, 6)
    with pytest.raises(DatasetMissingError) as exc:
        large.prepare("imagenet", tmp_path / "elsewhere")
    msg = str(exc.value)
    assert "\n" not in msg and "cannot be downloaded automatically" in msg
    assert all(a in msg for a in large.IMAGENET_ARCHIVES)


def test_wrong_split_size_and_damaged_image_are_one_line(tmp_path, monkeypatch):
    root = write_imagenet(tmp_path, monkeypatch)
    fake_spec(monkeypatch, "imagenet", num_classes=3, train_size=13, test_size=6)
    with pytest.raises(DataError, match=r"12 train images, expected 13 \(imagenet's train split\)"):
        load_real("imagenet", tmp_path)
    fake_spec(monkeypatch, "imagenet", num_classes=3, train_size=12, test_size=6)
    bad = root / "val" / "n01" / "n01_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError) as exc:
        load_real("imagenet", tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: cannot be read as an image")


def test_memory_cap_refuses_before_decoding(tmp_path, monkeypatch):
    write_imagenet(tmp_path, monkeypatch)
    monkeypatch.setattr(large, "decode", lambda *a, **k: pytest.fail("decoded despite the cap"))
    monkeypatch.setenv(common.MAX_GIB_ENV, "0.001")  # 1 MiB: 18 images x 192 KiB do not fit
    with pytest.raises(ValueError) as exc:
        load_real("imagenet", tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("imagenet: 12 train + 6 test images at 3x256x256 uint8 are")
    for phrase in ("GiB", "0.001 GiB cap", common.MAX_GIB_ENV, "train_size", "streaming data-parallel"):
        assert phrase in msg, (phrase, msg)
    monkeypatch.setenv(common.MAX_GIB_ENV, "lots")
    with pytest.raises(ValueError, match="REPRO_MAX_DATASET_GIB='lots' is not a positive number"):
        load_real("imagenet", tmp_path)
    # the full ImageNet protocol is refused under the default cap: 1,331,167 images are ~244 GiB
    monkeypatch.delenv(common.MAX_GIB_ENV)
    with pytest.raises(ValueError, match=r"1,281,167 train \+ 50,000 test .* 243\.7 GiB, over the 40 GiB cap"):
        large.check_memory("imagenet", 1_281_167, 50_000)
    large.check_memory("imagenet", 64_058, 50_000)  # MAL's first ImageNet split with the full test set: 21 GiB


def test_stored_size_is_256_for_the_imagenet_scale_sets_only():
    assert REAL["imagenet"].stored_shape == (3, 256, 256) and REAL["imagenet"].shape == (3, 224, 224)
    assert REAL["inat2018"].stored_shape == (3, 256, 256)
    assert get_spec("synthetic-imagenet").stored_shape == (3, 224, 224)  # stand-ins are held at 224
    assert get_spec("cifar10").stored_shape == get_spec("cifar10").shape == (3, 32, 32)


# ---- crop224 ---------------------------------------------------------------------------------------------------

def coords(b: int) -> torch.Tensor:
    """(b, 3, 256, 256) uint8: channel 0 = row, channel 1 = column, channel 2 = image number."""
    r = torch.arange(256, dtype=torch.uint8)
    x = torch.empty(b, 3, 256, 256, dtype=torch.uint8)
    x[:, 0] = r[:, None]
    x[:, 1] = r[None, :]
    x[:, 2] = torch.arange(b, dtype=torch.uint8)[:, None, None]
    return x


def test_crop224_train_crops_vary_with_the_generator():
    x = coords(16)
    a = random_crop_to(x, torch.Generator().manual_seed(0))
    b = random_crop_to(x, torch.Generator().manual_seed(0))
    c = random_crop_to(x, torch.Generator().manual_seed(1))
    assert a.shape == (16, 3, 224, 224) and torch.equal(a, b) and not torch.equal(a, c)
    oy, ox = a[:, 0, 0, 0].long(), a[:, 1, 0, 0].long()
    assert 0 <= int(oy.min()) and int(oy.max()) <= 32 and 0 <= int(ox.min()) and int(ox.max()) <= 32
    assert len(set(zip(oy.tolist(), ox.tolist()))) > 8  # per-image offsets
    for i in range(16):  # each is a plain window of its own image
        assert torch.equal(a[i], x[i, :, oy[i] : oy[i] + 224, ox[i] : ox[i] + 224])


def test_crop_offsets_are_uniform_over_the_margin():
    x = torch.zeros(4000, 1, 12, 12, dtype=torch.uint8)
    x[:, :, 0, 0] = 1  # the corner lands at (-oy, -ox): only offset 0 keeps it
    out = random_crop_to(x, torch.Generator().manual_seed(3), size=4)
    assert out.shape == (4000, 1, 4, 4)
    kept = out[:, 0, 0, 0].float().mean().item()
    assert abs(kept - 1 / 81) < 0.01  # offsets uniform over 0..8 in each axis


def test_crop224_recipe_and_eval_centre_crop():
    assert "crop224" in AUGMENTATIONS
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    aug = Augmenter(["flip", "crop224"], mean, std, "cpu")
    assert aug.names == ("crop224", "flip")
    x = coords(6)
    out = aug.train(x, torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 224, 224) and out.dtype == torch.float32
    m, s = torch.tensor(mean), torch.tensor(std)
    centre = x[..., 16:240, 16:240]
    from torchvision.transforms.functional import center_crop as tv_center_crop

    assert torch.equal(centre, tv_center_crop(x, [224, 224])) and torch.equal(center_crop(x), centre)
    # eval takes the centre 224 crop whatever the list, the loop's augmentation-free Augmenter included
    for names in (["crop224", "flip"], []):
        assert torch.equal(Augmenter(names, mean, std, "cpu").eval(x), normalize(centre, m, s))
    # training without crop224 still shows the model 224 x 224 (the centre)
    assert torch.equal(Augmenter([], mean, std, "cpu").train(x, torch.Generator()), normalize(centre, m, s))


def test_crop224_leaves_other_sizes_alone():
    mean, std = [0.5] * 3, [0.25] * 3
    m, s = torch.tensor(mean), torch.tensor(std)
    x224 = torch.randint(0, 256, (3, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = Augmenter(["crop224"], mean, std, "cpu")
    assert torch.equal(aug.train(x224, torch.Generator()), normalize(x224, m, s))  # synthetic stand-ins: identity
    assert torch.equal(aug.eval(x224), normalize(x224, m, s))
    x32 = x224[..., :32, :32]
    assert torch.equal(Augmenter(["crop", "flip"], mean, std, "cpu").eval(x32), normalize(x32, m, s))
    with pytest.raises(ValueError, match="crop224 needs images of at least 224x224, got 32x32"):
        aug.train(x32, torch.Generator())
