"""What each dataset looks like: shape, classes, split sizes, normalisation. Real and embedded alike."""

from __future__ import annotations

from dataclasses import dataclass

# MCDAL's reference normalises CIFAR-10 with the CIFAR-100 constants (weiaicunzai/pytorch-cifar100@11d8418 conf/global_settings.py, which
# chojw/Maximum-Classifier-Discrepancy-for-Active-Learning@92e1b14 uses).
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# MAL Sec. 4.1: ImageNet / iNaturalist images "are resized to 256 and then random-cropped to 224". They are stored
# at RESIZE_SIZE x RESIZE_SIZE (shorter side resized, centre square) and cropped to CROP_SIZE on the device
# (repro/data/augment.py, `crop224`; evaluation takes the centre crop).
RESIZE_SIZE, CROP_SIZE = 256, 224
CITYSCAPES_FRAME = (1024, 2048)  # (H, W) of every Cityscapes frame
# DRN's Cityscapes statistics (fyu/drn@d75db2e info.json)
CITYSCAPES_MEAN, CITYSCAPES_STD = (0.290101, 0.328081, 0.286964), (0.182954, 0.186566, 0.184475)
# torchvision's ssd300_vgg16 transform: mean subtraction on the 0..255 scale, no division ((x/255 - m) / (1/255))
SSD_MEAN, SSD_STD = (0.48235, 0.45882, 0.40784), (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
TASKS = ("classification", "segmentation", "detection")
# Targets per task (what loaders return and ImageData holds as train_y / test_y):
#   classification: int64 (N,) class ids
#   segmentation:   uint8 (N, H, W) train ids 0..C-1, IGNORE_INDEX where unlabeled
#   detection:      float32 (N, M, 6) rows [x1, y1, x2, y2, class 0..C-1, difficult 0/1] in stored-image pixels,
#                   padded with rows of -1 (class -1); C excludes the background
IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    height: int
    width: int
    num_classes: int
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    real: bool  # True: loaded from data/<name>/; False: embedded (ships with the code or its deps)
    stand_in_for: str | None = None  # embedded stand-ins name the real dataset they mimic
    # (H, W) the images are held at when it differs from the model's input (height, width): the ImageNet-scale
    # datasets are kept at 256 x 256 and cropped to 224 x 224 on the device. None: held at (height, width).
    stored_size: tuple[int, int] | None = None
    task: str = "classification"  # one of TASKS: what the targets are and how a model is scored
    # the dataset whose files under data/ this one reads, stored differently (None: its own data/<name>/)
    files_of: str | None = None
    # held in host memory on a GPU run, batches gathered to the device per step (full-resolution frames)
    host_resident: bool = False
    downloads: bool = False  # `python -m repro data download <name>` fetches it (the others need a registration)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's input."""
        return (self.channels, self.height, self.width)

    @property
    def root(self) -> str:
        """The folder under data/ its files are read from."""
        return self.files_of or self.name

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored uint8 images (what loaders return and ImageData holds)."""
        return (self.channels, *(self.stored_size or (self.height, self.width)))


REAL = {
    "cifar10": DatasetSpec("cifar10", 3, 32, 32, 10, 50_000, 10_000, CIFAR100_MEAN, CIFAR100_STD, True, downloads=True),
    "cifar100": DatasetSpec("cifar100", 3, 32, 32, 100, 50_000, 10_000, CIFAR100_MEAN, CIFAR100_STD, True, downloads=True),
    # DAL feeds x/255 without mean/std normalisation (dsgissin/DiscriminativeActiveLearning@625e9a1).
    "mnist": DatasetSpec("mnist", 1, 28, 28, 10, 60_000, 10_000, (0.0,), (1.0,), True, downloads=True),
    # Caltech-101 has no official split: a seeded stratified 80/20 split of the 8,677 object images
    # (background class excluded), resized to 64x64 (choice recorded in data/README.md).
    "caltech101": DatasetSpec("caltech101", 3, 64, 64, 101, 6_941, 1_736, IMAGENET_MEAN, IMAGENET_STD, True, downloads=True),
    # MAL Sec. 4.1 / supp. Table 1: 224 x 224 inputs (resized to 256, random-cropped to 224 in training);
    # stored at 256 x 256 (repro/data/loaders/large.py), cropped on the device.
    "imagenet": DatasetSpec("imagenet", 3, 224, 224, 1_000, 1_281_167, 50_000, IMAGENET_MEAN, IMAGENET_STD, True,
                            stored_size=(RESIZE_SIZE, RESIZE_SIZE), downloads=True),
    "inat2018": DatasetSpec("inat2018", 3, 224, 224, 8_142, 437_513, 24_426, IMAGENET_MEAN, IMAGENET_STD, True,
                            stored_size=(RESIZE_SIZE, RESIZE_SIZE), downloads=True),
    # Cityscapes fine: 2,975 train frames (MCDAL's pool); the 500 val frames are the test set (test labels are not
    # public). Held at the native 1024 x 2048 in host memory; the model trains on 688 x 688 crops (fyu/drn's
    # `segment.py` RandomCrop, docs/cityscapes.md) and is evaluated on full frames.
    "cityscapes": DatasetSpec("cityscapes", 3, 688, 688, 19, 2_975, 500, CITYSCAPES_MEAN, CITYSCAPES_STD, True,
                              stored_size=CITYSCAPES_FRAME, task="segmentation", host_resident=True),
    # the same files squashed to 688 x 688 (a third-party VAAL segmentation port's Scale(688, 688),
    # Valkyrja3607/VAAL_Segmantation@5a75491; docs/cityscapes.md): an option, not the papers' protocol
    "cityscapes-squashed": DatasetSpec("cityscapes-squashed", 3, 688, 688, 19, 2_975, 500, CITYSCAPES_MEAN,
                                       CITYSCAPES_STD, True, task="segmentation", files_of="cityscapes"),
    # BDD100K 10K segmentation: 7,000 train / 1,000 val (MAL supp. Table 1), resized to 224 x 224 (MAL Sec. 4.2)
    "bdd100k": DatasetSpec("bdd100k", 3, 224, 224, 19, 7_000, 1_000, IMAGENET_MEAN, IMAGENET_STD, True,
                           task="segmentation"),
    # PASCAL VOC 07+12 trainval (16,551) / 07 test (4,952), resized to SSD300's 300 x 300, 20 object classes
    "voc": DatasetSpec("voc", 3, 300, 300, 20, 16_551, 4_952, SSD_MEAN, SSD_STD, True, task="detection"),
}

EMBEDDED = {
    # scikit-learn's bundled 8x8 handwritten digits (real data; stand-in for MNIST). Pixels 0..16 scaled to 0..255.
    "digits": DatasetSpec("digits", 1, 8, 8, 10, 1_437, 360, (0.0,), (1.0,), False, "mnist"),
}
# Stand-ins are generated at the model's input size (no stored_size: synthetic-imagenet is held at 224 x 224, so
# `crop224` is the identity on it and evaluation crops nothing).
# Dense stand-ins are generated small (CPU smoke runs of DRN / SSD at reduced widths), keeping the aspect ratio;
# the Cityscapes stand-in keeps its protocol too: frames stored at 32 x 64, trained on 24 x 24 crops.
DENSE_STAND_IN_SIZE = {"cityscapes": (24, 24), "bdd100k": (32, 32), "voc": (96, 96)}
DENSE_STAND_IN_STORED = {"cityscapes": (32, 64)}
for _name, _spec in REAL.items():
    if _spec.files_of:  # another storage of a dataset that has its stand-in already
        continue
    _h, _w = DENSE_STAND_IN_SIZE.get(_name, (_spec.height, _spec.width))
    # the VOC stand-in trains its reduced SSD from scratch: unit-scale inputs (SSD_MEAN / SSD_STD's 0..255 scale
    # suits torchvision's pretrained VGG; from scratch it made the smoke losses diverge)
    _mean, _std = (IMAGENET_MEAN, IMAGENET_STD) if _name == "voc" else (_spec.mean, _spec.std)
    EMBEDDED[f"synthetic-{_name}"] = DatasetSpec(
        f"synthetic-{_name}", _spec.channels, _h, _w, _spec.num_classes,
        _spec.train_size, _spec.test_size, _mean, _std, False, _name, task=_spec.task,
        stored_size=DENSE_STAND_IN_STORED.get(_name),
    )

DATASETS: dict[str, DatasetSpec] = {**REAL, **EMBEDDED}
DOWNLOADABLE = tuple(name for name, s in REAL.items() if s.downloads)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; allowed: {sorted(DATASETS)}") from None
