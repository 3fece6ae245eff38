"""Datasets on the device (loaders, validation, stand-ins), their augmentation, and the active-learning pool."""
