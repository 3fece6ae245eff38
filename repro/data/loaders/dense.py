"""Dense-prediction datasets from data/<name>/: Cityscapes and BDD100K (semantic segmentation), PASCAL VOC 07+12
(detection). Nothing is downloaded: each needs a registration or a manual download (data/README.md).

Each loader lists its files first (torchvision's Cityscapes / VOCDetection classes where they exist), picks the
seeded subset of the experiment's train_size / test_size (the indices `repro.data.datasets._subsample` would keep:
salt 1 train, salt 2 test, `repro.data.loaders.large.subset_indices`), refuses a subset over REPRO_MAX_DATASET_GIB, and
decodes only those files, in a thread pool, resized to the spec's (height, width). Targets (repro/spec/datasets.py):
- segmentation: uint8 (N, H, W) train ids 0..C-1, IGNORE_INDEX (255) unlabeled; masks resized NEAREST.
- detection: float32 (N, M, 6) rows [x1, y1, x2, y2, class, difficult] in stored-image pixels, padded with rows of
  -1; M = the largest box count of the whole split (so a subset equals subsampling a full load).

Layouts (data/README.md):
- cityscapes: leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and gtFine/{train,val}/<city>/*_gtFine_labelIds.png
  (val is the test set). labelIds are mapped to the 19 train ids with cityscapesScripts' table.
- bdd100k: images/10k/{train,val}/*.jpg and labels/sem_seg/masks/{train,val}/*.png (masks hold train ids 0..18 and
  255 already, BDD100K's format), paired by file stem.
- voc: VOCdevkit/VOC2007 (trainval + test) and VOCdevkit/VOC2012 (trainval), torchvision's VOCDetection layout;
  train = 07 trainval + 12 trainval, test = 07 test; "difficult" objects kept (flag 1).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from repro.data.loaders import common
from repro.data.loaders.common import (
    TEST_SALT,
    TRAIN_SALT,
    DatasetMissingError,
    subset_indices,
)
from repro.data.validate import READ_ERRORS, DataError, describe
from repro.spec.datasets import IGNORE_INDEX, REAL, DatasetSpec

EXPECTED = {
    "cityscapes": ("leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
                   "gtFine/{train,val}/<city>/*_gtFine_labelIds.png"),
    "bdd100k": "images/10k/{train,val}/*.jpg and labels/sem_seg/masks/{train,val}/*.png (paired by file stem)",
    "voc": ("VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main/trainval.txt,ImageSets/Main/test.txt} and "
            "VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets/Main/trainval.txt}, torchvision's VOCDetection "
            "layout"),
}
SOURCES = {
    "cityscapes": "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com "
                  "(registration)",
    "bdd100k": "the 10K images and the semantic-segmentation labels zips from bdd-data.berkeley.edu (registration)",
    "voc": "VOCtrainval_06-Nov-2007.tar, VOCtest_06-Nov-2007.tar and VOCtrainval_11-May-2012.tar (PASCAL VOC)",
}
MARKERS = {"cityscapes": "leftImg8bit", "bdd100k": "images/10k", "voc": "VOCdevkit"}

# cityscapesScripts' labels.py: labelId -> trainId of the 19 evaluated classes; every other id is ignored.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}
CITYSCAPES_MAX_LABEL_ID = 33  # labelIds PNGs hold 0..33 (license plate, id -1, is not drawn)
CITYSCAPES_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label_id, _train_id in CITYSCAPES_TRAIN_IDS.items():
    CITYSCAPES_LUT[_label_id] = _train_id
BDD_NUM_CLASSES = 19
BDD_VALID = np.zeros(256, dtype=bool)
BDD_VALID[:BDD_NUM_CLASSES] = True
BDD_VALID[IGNORE_INDEX] = True

# name -> (lookup table raw mask value -> stored value, which raw values are valid, what they are called)
SEG_LABELS = {
    "cityscapes": (CITYSCAPES_LUT, np.arange(256) <= CITYSCAPES_MAX_LABEL_ID, "Cityscapes' labelIds 0..33"),
    "bdd100k": (np.arange(256, dtype=np.uint8), BDD_VALID,
                "BDD100K's train ids 0..18 and 255 (its documented mask format)"),
}

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_SPLITS = {"train": (("2007", "trainval"), ("2012", "trainval")), "test": (("2007", "test"),)}


def _missing(name: str, root: Path) -> DatasetMissingError:
    return DatasetMissingError(
        f"dataset {name!r} not found under {root}/ (expected {EXPECTED[name]}): it is not downloaded "
        f"automatically; get {SOURCES[name]} and place the files there (see data/README.md)"
    )


def _fix(name: str, root: Path) -> str:
    return f"re-place the files under {root}/ as data/README.md describes ({name})"


def dense_dataset_present(name: str, data_dir: Path | str) -> bool:
    """Whether data_dir/<name>/ looks like the dataset (no listing, no loading)."""
    return (Path(data_dir) / name / MARKERS[name]).is_dir()


# ---- checks ----------------------------------------------------------------------------------------------------

def check_dense_memory(spec: DatasetSpec, n_train: int, n_test: int) -> None:
    """Refuse (one-line ValueError) a subset whose uint8 images (and segmentation masks) exceed the cap, before
    decoding anything."""
    c, h, w = spec.stored_shape
    seg = spec.task == "segmentation"
    common.check_memory(spec.name, n_train, n_test, c * h * w + (h * w if seg else 0),
                        "images and masks" if seg else "images", f"{c}x{h}x{w}", f", or raise {common.MAX_GIB_ENV}")


def _targets_problem(y: Any, spec: DatasetSpec, n: int, split: str) -> str | None:
    """The first thing wrong with one split's dense targets, or None."""
    h, w = spec.stored_shape[1:]
    dtype = str(y.dtype).removeprefix("torch.")
    if spec.task == "segmentation":
        if dtype != "uint8":
            return f"{split} masks are {dtype}, expected uint8"
        if tuple(y.shape) != (n, h, w):
            return f"{split} masks have shape {tuple(y.shape)}, expected ({n}, {h}, {w})"
        yn = np.asarray(y)
        bad = (yn >= spec.num_classes) & (yn != IGNORE_INDEX)
        if bad.any():
            return (f"{split} masks hold value {int(yn[bad][0])}, outside {spec.name}'s train ids "
                    f"0..{spec.num_classes - 1} and {IGNORE_INDEX}")
        return None
    if spec.task != "detection":
        return f"task {spec.task!r} is not a dense task"
    if dtype != "float32":
        return f"{split} boxes are {dtype}, expected float32"
    if y.ndim != 3 or y.shape[0] != n or y.shape[2] != 6 or y.shape[1] < 1:
        return f"{split} boxes have shape {tuple(y.shape)}, expected ({n}, M >= 1, 6)"
    yn = np.asarray(y)
    pad = yn[..., 4] == -1
    if not (yn[pad] == -1).all():
        return f"{split} padding rows (class -1) are not all -1"
    rows = yn[~pad]
    if len(rows) == 0:
        return None
    cls, diff = rows[:, 4], rows[:, 5]
    if ((cls < 0) | (cls >= spec.num_classes) | (cls != np.round(cls))).any():
        return f"{split} box classes fall outside {spec.name}'s {spec.num_classes} classes 0..{spec.num_classes - 1}"
    if not np.isin(diff, (0.0, 1.0)).all():
        return f"{split} difficult flags are not 0/1"
    x1, y1, x2, y2 = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    if not (np.isfinite(rows).all() and (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all()
            and (y2 <= h).all() and (x1 < x2).all() and (y1 < y2).all()):
        return f"{split} boxes are not 0 <= x1 < x2 <= {w}, 0 <= y1 < y2 <= {h}"
    return None


def validate_dense(parts: tuple[Any, Any, Any, Any], spec: DatasetSpec, where: str | Path, fix: str,
                   sizes: tuple[int, int] | None = None) -> tuple[Any, Any, Any, Any]:
    """Check (train_x, train_y, test_x, test_y) of a segmentation / detection dataset against `spec` (the target
    formats of repro/spec/datasets.py) and return them unchanged; a problem is a one-line DataError(where, ..., fix)."""
    for split, x, y in (("train", parts[0], parts[1]), ("test", parts[2], parts[3])):
        dtype = str(x.dtype).removeprefix("torch.")
        if dtype != "uint8":
            problem = f"{split} images are {dtype}, expected uint8"
        elif x.ndim != 4 or tuple(x.shape[1:]) != spec.stored_shape:
            shape = ", ".join(map(str, spec.stored_shape))
            problem = f"{split} images have shape {tuple(x.shape)}, expected (N, {shape})"
        elif len(x) == 0:
            problem = f"no {split} images"
        else:
            problem = _targets_problem(y, spec, len(x), split)
        if problem:
            raise DataError(where, problem, fix)
    if sizes is not None:
        for split, x, expected in (("train", parts[0], sizes[0]), ("test", parts[2], sizes[1])):
            if len(x) != expected:
                raise DataError(where, f"{len(x)} {split} images, expected {expected} ({spec.name}'s {split} split)",
                                fix)
    return parts


# ---- decoding --------------------------------------------------------------------------------------------------

def _run(n: int, work: Callable[[int], None], desc: str, workers: int | None = None) -> None:
    """work(i) for i in range(n) in a thread pool (PIL decodes and resizes outside the GIL), with a progress bar."""

    pool = ThreadPoolExecutor(max_workers=workers or min(32, os.cpu_count() or 1), thread_name_prefix="decode")
    try:
        with tqdm(total=n, desc=desc, unit="img", mininterval=2.0, disable=n == 0) as bar:
            for _ in pool.map(work, range(n)):
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_image(path: Path, hw: tuple[int, int], fix: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """((3, H, W) uint8 resized bilinear (PIL, antialiased), the original (width, height))."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        size = rgb.size
        arr = np.array(rgb.resize((hw[1], hw[0]), Image.Resampling.BILINEAR), dtype=np.uint8)
    except READ_ERRORS as e:
        raise DataError(path, f"cannot be read as an image ({describe(e)})", fix) from None
    return torch.from_numpy(arr).permute(2, 0, 1), size


def _read_mask(path: Path, hw: tuple[int, int], image_size: tuple[int, int], valid: np.ndarray, what: str,
               fix: str) -> np.ndarray:
    """(H, W) label values of a single-channel label PNG resized NEAREST; every value (at full resolution) must be
    one where `valid` (256 entries) is True and its size must be its image's."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            full = np.array(img)
            size = img.size
            small = np.array(img.resize((hw[1], hw[0]), Image.Resampling.NEAREST))
        if full.dtype == bool:  # a 1-bit PNG
            full, small = full.astype(np.uint8), small.astype(np.uint8)
    except READ_ERRORS as e:
        raise DataError(path, f"cannot be read as a label image ({describe(e)})", fix) from None
    if full.ndim != 2:
        raise DataError(path, f"has {full.shape[-1]} channels, expected a single-channel label PNG ({what})", fix)
    if size != image_size:
        raise DataError(path, f"is {size[0]}x{size[1]} but its image is {image_size[0]}x{image_size[1]}", fix)
    if full.size:
        lo, hi = int(full.min()), int(full.max())
        bad_value = lo if lo < 0 else hi if hi > 255 else None
        if bad_value is None:
            bad = ~valid[full]
            bad_value = int(full[bad][0]) if bad.any() else None
        if bad_value is not None:
            raise DataError(path, f"holds value {bad_value}, outside {what}", fix)
    return small.astype(np.int64)


@dataclass
class SegSplit:
    """One split's image and mask files, in the loader's canonical order."""

    images: list[Path]
    masks: list[Path]


def _decode_segmentation(split: SegSplit, idx: np.ndarray, spec: DatasetSpec, lut: np.ndarray, valid: np.ndarray,
                         what: str, fix: str, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    hw = spec.stored_shape[1:]
    x = torch.empty((len(idx), 3, *hw), dtype=torch.uint8)
    y = torch.empty((len(idx), *hw), dtype=torch.uint8)

    def work(i: int) -> None:
        j = int(idx[i])
        x[i], size = _read_image(split.images[j], hw, fix)
        y[i] = torch.from_numpy(lut[_read_mask(split.masks[j], hw, size, valid, what, fix)])

    _run(len(idx), work, desc)
    return x, y


def _check_counts(name: str, root: Path, counts: tuple[int, int], fix: str) -> None:
    spec = REAL[name]
    for split, n, expected in (("train", counts[0], spec.train_size), ("test", counts[1], spec.test_size)):
        if n != expected:
            raise DataError(root, f"{n:,} {split} images, expected {expected:,} ({name}'s {split} split)", fix)


def _missing_files(root: Path, kind: str, paths: Sequence[Path], fix: str) -> None:
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise DataError(root, f"{len(absent)} {kind} file(s) are absent (e.g. {absent[0]})", fix)


# ---- Cityscapes ------------------------------------------------------------------------------------------------

def list_cityscapes(root: Path) -> tuple[SegSplit, SegSplit]:
    """(train, val) of data/cityscapes/ via torchvision's Cityscapes (fine, semantic), sorted by image path
    (torchvision lists the folders in os.listdir order)."""
    if not all((root / top / split).is_dir() for top in ("leftImg8bit", "gtFine") for split in ("train", "val")):
        raise _missing("cityscapes", root)
    from torchvision.datasets import Cityscapes

    fix = _fix("cityscapes", root)
    splits = []
    for split in ("train", "val"):
        try:
            ds = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
        except READ_ERRORS as e:
            raise DataError(root / "leftImg8bit" / split, f"is not torchvision's Cityscapes layout ({describe(e)})",
                            fix) from None
        pairs = sorted((Path(img), Path(t[0])) for img, t in zip(ds.images, ds.targets, strict=True)
                       if img.endswith("_leftImg8bit.png"))
        masks = [m for _, m in pairs]
        _missing_files(root / "gtFine" / split, "*_gtFine_labelIds.png", masks, fix)
        splits.append(SegSplit([p for p, _ in pairs], masks))
    _check_counts("cityscapes", root, (len(splits[0].images), len(splits[1].images)), fix)
    return splits[0], splits[1]


# ---- BDD100K ---------------------------------------------------------------------------------------------------

def list_bdd100k(root: Path) -> tuple[SegSplit, SegSplit]:
    """(train, val) of data/bdd100k/: images/10k/<split>/*.jpg paired with labels/sem_seg/masks/<split>/*.png by
    file stem, sorted by stem."""
    images_dir, masks_dir = root / "images" / "10k", root / "labels" / "sem_seg" / "masks"
    if not all((d / split).is_dir() for d in (images_dir, masks_dir) for split in ("train", "val")):
        raise _missing("bdd100k", root)
    fix = _fix("bdd100k", root)
    splits = []
    for split in ("train", "val"):
        images = {p.stem: p for p in (images_dir / split).glob("*.jpg")}
        masks = {p.stem: p for p in (masks_dir / split).glob("*.png")}
        for have, lack, kind, where in ((images, masks, "image(s) have no mask", masks_dir / split),
                                        (masks, images, "mask(s) have no image", images_dir / split)):
            odd = sorted(set(have) - set(lack))
            if odd:
                raise DataError(where, f"{len(odd)} {split} {kind} of the same stem (e.g. {odd[0]}); the 2021 "
                                       f"release of the 10K images matches the masks (bdd100k issue #103)", fix)
        stems = sorted(images)
        splits.append(SegSplit([images[s] for s in stems], [masks[s] for s in stems]))
    _check_counts("bdd100k", root, (len(splits[0].images), len(splits[1].images)), fix)
    return splits[0], splits[1]


# ---- PASCAL VOC ------------------------------------------------------------------------------------------------

@dataclass
class DetSplit:
    """One split's image files and boxes: per image float32 (k, 6) [x1, y1, x2, y2, class, difficult] in the
    original image's pixels (0-based edges, see `parse_voc_annotation`)."""

    images: list[Path]
    boxes: list[np.ndarray]


def parse_voc_annotation(path: Path, fix: str) -> np.ndarray:
    """float32 (k, 6) rows of a VOC XML file, in its object order; class = index in VOC_CLASSES."""
    try:
        tree = ET.parse(path)
        rows = []
        for obj in tree.getroot().findall("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise DataError(path, f"names class {name!r}, not one of VOC's 20 classes", fix)
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            difficult = int((obj.findtext("difficult") or "0").strip())
            # VOC boxes are 1-based inclusive pixel indices: pixel i spans [i - 1, i) in 0-based continuous
            # coordinates, so the box's edges are [xmin - 1, xmax] x [ymin - 1, ymax] (as ssd.pytorch subtracts 1).
            rows.append([xmin - 1, ymin - 1, xmax, ymax, VOC_CLASSES.index(name), difficult])
    except DataError:
        raise
    except READ_ERRORS + (ET.ParseError,) as e:
        raise DataError(path, f"cannot be read as a VOC annotation ({describe(e)})", fix) from None
    out = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    if len(out) and ((out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1]) | ~np.isin(out[:, 5], (0, 1))).any():
        raise DataError(path, "holds a box with xmax < xmin or ymax < ymin, or a difficult flag other than 0/1", fix)
    return out


def list_voc(root: Path) -> tuple[DetSplit, DetSplit]:
    """(07+12 trainval, 07 test) of data/voc/ via torchvision's VOCDetection (ImageSets/Main order); every
    annotation of both splits is parsed (small XML files) so that M is the split's largest box count."""
    sets = [(year, image_set) for pairs in VOC_SPLITS.values() for year, image_set in pairs]
    if not all((root / "VOCdevkit" / f"VOC{y}" / "ImageSets" / "Main" / f"{s}.txt").is_file() for y, s in sets):
        raise _missing("voc", root)
    from torchvision.datasets import VOCDetection

    fix = _fix("voc", root)
    splits = []
    for pairs in VOC_SPLITS.values():
        images, boxes = [], []
        for year, image_set in pairs:
            try:
                ds = VOCDetection(str(root), year=year, image_set=image_set, download=False)
            except READ_ERRORS as e:
                raise DataError(root / "VOCdevkit" / f"VOC{year}",
                                f"is not torchvision's VOCDetection layout ({describe(e)})", fix) from None
            _missing_files(root / "VOCdevkit" / f"VOC{year}" / "Annotations", f"VOC{year} {image_set} annotation",
                           [Path(a) for a in ds.annotations], fix)
            images += [Path(p) for p in ds.images]
            boxes += [parse_voc_annotation(Path(a), fix) for a in ds.annotations]
        splits.append(DetSplit(images, boxes))
    _check_counts("voc", root, (len(splits[0].images), len(splits[1].images)), fix)
    return splits[0], splits[1]


def _decode_detection(split: DetSplit, idx: np.ndarray, spec: DatasetSpec, fix: str,
                      desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = spec.stored_shape[1:]
    m = max(1, max((len(b) for b in split.boxes), default=0))  # the whole split's largest count
    x = torch.empty((len(idx), 3, h, w), dtype=torch.uint8)
    y = torch.full((len(idx), m, 6), -1.0, dtype=torch.float32)

    def work(i: int) -> None:
        j = int(idx[i])
        x[i], (w0, h0) = _read_image(split.images[j], (h, w), fix)
        b = split.boxes[j].copy()
        # clipped to the image, scaled to the stored size, clipped again: float32 rounding can overshoot the side
        # (a 299-px edge scaled to 300 is 300.0000305, which validate_dense would refuse; issue 22.9)
        b[:, [0, 2]] = (b[:, [0, 2]].clip(0, w0) * (w / w0)).clip(0, w)
        b[:, [1, 3]] = (b[:, [1, 3]].clip(0, h0) * (h / h0)).clip(0, h)
        if len(b) and ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any():
            raise DataError(split.images[j], f"a box of its annotation lies outside the {w0}x{h0} image", fix)
        y[i, : len(b)] = torch.from_numpy(b)

    _run(len(idx), work, desc)
    return x, y


# ---- loading ---------------------------------------------------------------------------------------------------

LISTERS = {"cityscapes": list_cityscapes, "bdd100k": list_bdd100k, "voc": list_voc}


def load_dense_real(name: str, root: Path, train_size: int | None = None, test_size: int | None = None):
    """(train_x uint8 (N, 3, H, W), train_y, test_x, test_y) of `name` from `root` (data/<name>/), targets in the
    task's format; only the seeded subset `_subsample` would keep (salts 1 / 2) is decoded."""
    if name not in REAL or REAL[name].root not in LISTERS:
        raise KeyError(f"{name!r} is not a dense real dataset; allowed: "
                       f"{[n for n, s in REAL.items() if s.root in LISTERS]}")
    root = Path(root)
    spec = REAL[name]
    train, test = LISTERS[spec.root](root)
    tr = subset_indices(len(train.images), train_size, TRAIN_SALT)
    te = subset_indices(len(test.images), test_size, TEST_SALT)
    check_dense_memory(spec, len(tr), len(te))
    fix = _fix(spec.root, root)
    if spec.task == "detection":
        parts = (*_decode_detection(train, tr, spec, fix, f"{name} train"),
                 *_decode_detection(test, te, spec, fix, f"{name} test"))
    else:
        lut, valid, what = SEG_LABELS[spec.root]
        parts = (*_decode_segmentation(train, tr, spec, lut, valid, what, fix, f"{name} train"),
                 *_decode_segmentation(test, te, spec, lut, valid, what, fix, f"{name} test"))
    return validate_dense(parts, spec, root, fix, (len(tr), len(te)))
