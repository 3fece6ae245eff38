"""ImageNet and iNaturalist 2018 (MAL Sec. 4.1, supp. Table 1) from data/<name>/, decoded only in part.

These sets are too large to hold whole on the device (1.28M ImageNet images at 3 x 256 x 256 uint8 are 246 GiB),
so each loader lists its files with torchvision, picks the seeded subset FIRST (the same indices
`repro.data.datasets._subsample` would keep: salt 1 for train, 2 for test), and decodes only those: PIL, shorter
side resized to 256 (bilinear, antialiased, as `transforms.Resize(256)`), the centre 256 x 256 kept, in a
thread pool with a progress bar. MAL's "random-cropped to 224" happens on the device (`crop224` in
repro/data/augment.py; evaluation takes the centre 224 crop). A request whose images would exceed
REPRO_MAX_DATASET_GIB (default 40) GiB is refused before any decoding: the full protocol needs a streaming,
data-parallel path that is not built yet.

Layouts (data/README.md):
- imagenet: torchvision's ImageFolder layout, `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG`; class index = the
  sorted wnid order (ImageFolder's). `python -m repro data download imagenet` cannot download ImageNet; it
  unpacks ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz placed in the root
  into that layout (torchvision.datasets.ImageNet).
- inat2018: torchvision's INaturalist(root, version="2018") layout, `2018/<super-category>/<category id>/*.jpg`
  (train_val2018.tar.gz extracted, its train_val2018/ renamed 2018/), plus the official split annotations
  `train2018.json` and `val2018.json` (train_val2018.json.tar.gz). torchvision's 2018 dataset has no split (it
  lists train and val images together and reads no annotation file), so the split and the image order come
  from the two JSON files; labels are torchvision's category ids (the directory numbers), checked against the
  JSON's category_id.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from repro.data.loaders import common
from repro.data.loaders.common import (
    TEST_SALT,
    TRAIN_SALT,
    DatasetMissingError,
    missing,
    subset_indices,
)
from repro.data.validate import READ_ERRORS, DataError, describe, validate
from repro.spec.datasets import REAL, RESIZE_SIZE

LARGE = ("imagenet", "inat2018")

IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")
INAT_ANNOTATIONS = {"train": "train2018.json", "test": "val2018.json"}
INAT_ANNOTATIONS_URL = "https://ml-inat-competition-datasets.s3.amazonaws.com/2018/train_val2018.json.tar.gz"
INAT_ARCHIVE_DIR = "train_val2018"  # the first component of the JSON file names (torchvision renames it 2018/)

EXPECTED = {
    "imagenet": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, torchvision's ImageFolder layout",
    "inat2018": ("2018/<super-category>/<category id>/*.jpg, torchvision's INaturalist version '2018' layout "
                 "(the extracted train_val2018/ renamed 2018/), and train2018.json, val2018.json"),
}


@dataclass
class Split:
    """One split's image files (in the dataset's canonical order) and their int64 labels."""

    paths: list[Path]
    labels: np.ndarray


def check_memory(name: str, n_train: int, n_test: int) -> None:
    """Refuse (one-line ValueError) a subset whose stored uint8 images exceed the cap, before decoding anything."""
    shape = REAL[name].stored_shape
    common.check_memory(name, n_train, n_test, math.prod(shape), "images", "x".join(map(str, shape)),
                        f": the full {name} protocol needs the streaming data-parallel data path, which is not built "
                        "yet")


def decode_one(path: Path, size: int = RESIZE_SIZE) -> torch.Tensor:
    """(3, size, size) uint8: RGB, shorter side resized to `size` (bilinear, antialiased), centre square."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as img:
        img = img.convert("RGB")
    img = TF.center_crop(TF.resize(img, size), [size, size])
    return TF.pil_to_tensor(img)


def decode(paths: Sequence[Path], fix: str, size: int = RESIZE_SIZE, desc: str = "decoding",
           workers: int | None = None) -> torch.Tensor:
    """(N, 3, size, size) uint8 of `paths`, in order, decoded by a thread pool into one preallocated tensor.
    A file PIL cannot read is a DataError naming it."""

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)

    def work(i: int) -> None:
        try:
            out[i] = decode_one(paths[i], size)
        except READ_ERRORS as e:
            raise DataError(paths[i], f"cannot be read as an image ({describe(e)})", fix) from None

    workers = workers or min(32, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    try:
        with tqdm(total=len(paths), desc=desc, unit="img", mininterval=2.0) as bar:
            for _ in pool.map(work, range(len(paths))):
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out


# ---- listing (no decoding) ------------------------------------------------------------------------------------

def _fix(name: str, root: Path) -> str:
    return f"re-place the files under {root}/ as data/README.md describes ({name})"


def _image_folder(folder: Path, fix: str):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(folder))  # lists (sorted classes, sorted files); opens no image
    except READ_ERRORS as e:
        raise DataError(folder, f"is not torchvision's ImageFolder layout ({describe(e)})", fix) from None


def list_imagenet(root: Path) -> tuple[Split, Split]:
    """(train, val) of data/imagenet/ in ImageFolder order: class index = sorted wnid order."""
    spec, fix = REAL["imagenet"], _fix("imagenet", root)
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        raise missing("imagenet", root, EXPECTED["imagenet"])
    train, val = _image_folder(root / "train", fix), _image_folder(root / "val", fix)
    if len(train.classes) != spec.num_classes:
        raise DataError(root / "train", f"holds {len(train.classes)} class folders, expected {spec.num_classes}", fix)
    if val.classes != train.classes:
        odd = sorted(set(val.classes) ^ set(train.classes))
        raise DataError(root / "val", f"class folders differ from train/'s (e.g. {', '.join(odd[:3])})", fix)
    splits = []
    for ds in (train, val):
        paths = [Path(p) for p, _ in ds.samples]
        splits.append(Split(paths, np.asarray([c for _, c in ds.samples], dtype=np.int64)))
    _check_counts("imagenet", root, *splits, fix)
    return splits[0], splits[1]


def _read_annotations(path: Path, fix: str) -> tuple[list[str], np.ndarray]:
    """(file names, category ids) of an iNaturalist COCO-style annotation file, in its image order."""
    try:
        with open(path, encoding="utf-8") as f:
            ann = json.load(f)
        label_of = {a["image_id"]: a["category_id"] for a in ann["annotations"]}
        files = [im["file_name"] for im in ann["images"]]
        labels = np.asarray([label_of[im["id"]] for im in ann["images"]], dtype=np.int64)
    except READ_ERRORS as e:  # json.JSONDecodeError is a ValueError
        raise DataError(path, f"cannot be read as iNaturalist annotations ({describe(e)})", fix) from None
    return files, labels


def list_inat2018(root: Path) -> tuple[Split, Split]:
    """(train, val) of data/inat2018/ in the annotation files' image order, labels = torchvision's category ids."""
    spec, fix = REAL["inat2018"], _fix("inat2018", root)
    images = root / "2018"
    ann_paths = {split: root / f for split, f in INAT_ANNOTATIONS.items()}
    if not images.is_dir() or not all(p.is_file() for p in ann_paths.values()):
        raise missing("inat2018", root, EXPECTED["inat2018"])
    from torchvision.datasets import INaturalist

    try:
        ds = INaturalist(str(root), version="2018")  # lists 2018/<super>/<id>/ files; reads no annotation
    except READ_ERRORS as e:
        raise DataError(images, f"is not torchvision's iNaturalist 2018 layout ({describe(e)})", fix) from None
    if len(ds.all_categories) != spec.num_classes:
        raise DataError(images, f"holds {len(ds.all_categories)} categories, expected {spec.num_classes}", fix)
    category_of = {f"{ds.all_categories[c].replace(os.sep, '/')}/{f}": c for c, f in ds.index}
    splits = []
    for ann_path in ann_paths.values():
        files, ann_labels = _read_annotations(ann_path, fix)
        rel = [f.split("/", 1)[1] if f.startswith(f"{INAT_ARCHIVE_DIR}/") else f for f in files]
        absent = [f for f in rel if f not in category_of]
        if absent:
            raise DataError(ann_path, f"lists {len(absent)} image(s) not under {images}/ (e.g. {absent[0]})", fix)
        labels = np.asarray([category_of[f] for f in rel], dtype=np.int64)
        wrong = np.flatnonzero(labels != ann_labels)
        if len(wrong):
            i = int(wrong[0])
            raise DataError(ann_path, f"{len(wrong)} image(s) sit in another category's folder than their "
                                      f"category_id (e.g. {rel[i]}: folder {labels[i]}, category_id "
                                      f"{ann_labels[i]})", fix)
        splits.append(Split([images / f for f in rel], labels))
    _check_counts("inat2018", root, *splits, fix)
    return splits[0], splits[1]


def _check_counts(name: str, root: Path, train: Split, test: Split, fix: str) -> None:
    spec = REAL[name]
    for split, s, expected in (("train", train, spec.train_size), ("test", test, spec.test_size)):
        if len(s.paths) != expected:
            raise DataError(root, f"{len(s.paths):,} {split} images, expected {expected:,} ({name}'s {split} split)",
                            fix)


LISTERS = {"imagenet": list_imagenet, "inat2018": list_inat2018}


# ---- download / unpack -----------------------------------------------------------------------------------------

def fetch(name: str, root: Path) -> None:
    """Put the files in place: unpack manually placed ImageNet archives; download iNaturalist 2018 (network)."""
    root.mkdir(parents=True, exist_ok=True)
    if name == "imagenet":
        if (root / "train").is_dir() and (root / "val").is_dir():
            return
        if not all((root / a).is_file() for a in IMAGENET_ARCHIVES):
            raise DatasetMissingError(
                f"dataset 'imagenet' cannot be downloaded automatically: place {', '.join(IMAGENET_ARCHIVES)} "
                f"(image-net.org, after registration) in {root}/ and run again to unpack them, or place "
                f"{EXPECTED['imagenet']} there (see data/README.md)")
        from torchvision import datasets

        for split in ("train", "val"):
            datasets.ImageNet(str(root), split=split)  # unpacks into root/<split>/<wnid>/ (minutes to hours)
        return
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    datasets.INaturalist(str(root), version="2018", download=True)  # train_val2018.tar.gz -> 2018/
    if not all((root / f).is_file() for f in INAT_ANNOTATIONS.values()):
        download_and_extract_archive(INAT_ANNOTATIONS_URL, str(root))


def prepare(name: str, data_dir: Path | str) -> tuple[int, int]:
    """Fetch / unpack `name` into data_dir/<name>/ and list it (nothing decoded): (train, test) image counts."""
    root = Path(data_dir) / name
    fetch(name, root)
    train, test = LISTERS[name](root)
    return len(train.paths), len(test.paths)


# ---- loading ---------------------------------------------------------------------------------------------------

def load_large(name: str, root: Path, download: bool = False, train_size: int | None = None,
               test_size: int | None = None):
    """(train_x uint8 (N, 3, 256, 256), train_y int64, test_x, test_y) of the seeded subset of `name`:
    the images `_subsample` would keep (salts 1 / 2), decoded only those."""
    if name not in LISTERS:
        raise KeyError(f"{name!r} is not one of the partly decoded datasets {list(LISTERS)}")
    if download:
        fetch(name, root)
    train, test = LISTERS[name](root)
    tr = subset_indices(len(train.paths), train_size, TRAIN_SALT)
    te = subset_indices(len(test.paths), test_size, TEST_SALT)
    check_memory(name, len(tr), len(te))
    fix = _fix(name, root)
    parts = (
        decode([train.paths[i] for i in tr], fix, desc=f"{name} train"), torch.from_numpy(train.labels[tr]),
        decode([test.paths[i] for i in te], fix, desc=f"{name} test"), torch.from_numpy(test.labels[te]),
    )
    # Shapes, dtypes and label range always; every class present only when the whole train split was taken.
    return validate(parts, REAL[name], root, fix, (len(tr), len(te)), all_classes=len(tr) == len(train.paths))
