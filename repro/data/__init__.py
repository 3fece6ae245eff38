"""Datasets on the device, their augmentation, and the active-learning pool.

Names are imported lazily (PEP 562), so `repro.data.specs` (shapes and sizes) loads without torch: the figure
and audit stages read specs but never tensors."""

from importlib import import_module

_WHERE = {
    "AUGMENTATIONS": "augment", "Augmenter": "augment", "ImageData": "datasets", "load_dataset": "datasets",
    "ActivePool": "pool", "indices_sha256": "pool", "DatasetMissingError": "real", "DATASETS": "specs",
    "DatasetSpec": "specs", "get_spec": "specs",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'repro.data' has no attribute {name!r}")
    return getattr(import_module(f"repro.data.{_WHERE[name]}"), name)
