"""Datasets on the device, their augmentation, and the active-learning pool."""

from repro.data.augment import AUGMENTATIONS, Augmenter
from repro.data.datasets import ImageData, load_dataset
from repro.data.pool import ActivePool, indices_sha256
from repro.data.real import DatasetMissingError
from repro.data.specs import DATASETS, DatasetSpec, get_spec

__all__ = [
    "AUGMENTATIONS", "ActivePool", "Augmenter", "DATASETS", "DatasetMissingError", "DatasetSpec",
    "ImageData", "get_spec", "indices_sha256", "load_dataset",
]
