"""A dataset tensor held in host memory that hands out batches on the compute device.

Full-resolution Cityscapes frames (2,975 + 500 at 3 x 1024 x 2048 uint8, 21.9 GB, with 7.3 GB of masks) stay in
host memory on a GPU run; each batch is gathered on the host and copied to the device, where it is cropped and
augmented (repro/data/augment.py). It quacks like the device tensors `ImageData` otherwise holds: `len`,
`shape`, `dtype`, `dim()`, `device` (the compute device) and indexing, which returns a device tensor.

Cost: the host needs the batch's indices, so each gather copies them from the device (one small transfer per
batch, the only host sync these datasets add); the gathered batch is pinned and copied without blocking.
"""

from __future__ import annotations

import torch


class HostFrames:
    """`tensor` (on the CPU) read batch by batch onto `device`."""

    def __init__(self, tensor: torch.Tensor, device):
        if tensor.device.type != "cpu":
            raise ValueError(f"HostFrames holds a CPU tensor, got one on {tensor.device}")
        self.host = tensor
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.host)

    @property
    def shape(self) -> torch.Size:
        return self.host.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.host.dtype

    def dim(self) -> int:
        return self.host.dim()

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.to("cpu")
        batch = self.host[idx]
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    def to(self, device) -> HostFrames:
        """The same host tensor handed out on `device` (it never moves)."""
        return HostFrames(self.host, device)

    def cpu(self) -> torch.Tensor:
        return self.host

    def __repr__(self) -> str:
        return f"HostFrames({tuple(self.shape)}, {self.dtype}, host -> {self.device})"


def hold(tensor, device, on_host: bool):
    """`tensor` for a run on `device`: moved there, or kept on the host behind HostFrames when `on_host` (and the
    device is not the CPU itself)."""
    device = torch.device(device)
    host = tensor.host if isinstance(tensor, HostFrames) else tensor
    if on_host and device.type != "cpu":
        return HostFrames(host.cpu(), device)
    return host.to(device)
