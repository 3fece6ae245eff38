"""Sampling time of one query (MCDAL Table 1's measure) on a CIFAR-10-shaped pool: shared by
`python -m repro bench sample` and the MCDAL Table 1 artifact.

The full workload is Table 1's stage 1 (5,000 labeled + 45,000 unlabeled, ResNet-18, budget 2,500); the reduced
one (CPU, smoke) is 500 + 4,500 at width 1/8, budget 250. Synthetic images are timing-equivalent. Each model
gets a two-iteration training pass first, so the method's own modules exist and have run once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from repro.al.strategies import QueryContext, build_strategy
from repro.core.train import fit
from repro.data.augment import Augmenter
from repro.data.datasets import ImageData
from repro.data.pool import ActivePool
from repro.data.synthetic import make_synthetic
from repro.data.synthetic_dense import make_synthetic_dense
from repro.models import build_model, count_parameters
from repro.spec.datasets import get_spec
from repro.spec.recipe import Recipe


@dataclass
class SamplingWorkload:
    data: ImageData
    pool: ActivePool
    recipe: Recipe
    augmenter: Augmenter
    budget: int
    width: float
    backbone: str = "resnet18"
    dropout: float | None = 0.5  # classification: MC-dropout methods sample the head's dropout

    def describe(self) -> dict:
        spec = self.data.spec
        return {"device": str(self.data.train_x.device), "task": spec.task, "dataset": spec.name,
                "image": f"{spec.height}x{spec.width}", "backbone": self.backbone, "labeled": self.pool.n_labeled,
                "unlabeled": self.pool.n_unlabeled, "width": self.width, "budget": self.budget}


def sampling_workload(device: torch.device, full: bool) -> SamplingWorkload:
    n_lab, n_unl, width, budget = (5000, 45_000, 1.0, 2500) if full else (500, 4500, 0.125, 250)
    spec = get_spec("synthetic-cifar10")
    data = ImageData(spec, *make_synthetic(spec, n_lab + n_unl, 16)).to(device)
    pool = ActivePool.initial("synthetic-cifar10", n_lab + n_unl, n_lab, 0)
    recipe = Recipe(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=128, epochs=1, epoch_iterations=2,
                    augment=("crop", "flip"), eval_batch_size=1024 if device.type == "cpu" else 4096)
    return SamplingWorkload(data, pool, recipe, Augmenter((), spec.mean, spec.std, device), budget, width)


def dense_sampling_workload(task: str, device: torch.device, full: bool) -> SamplingWorkload:
    """A segmentation (Cityscapes-shaped, DRN-D-22) or detection (VOC-shaped, SSD300) pool: `full` is the paper's
    scale (2,975 frames at 688 x 688, budget 149; 16,551 images at 300 x 300, budget 1,000) for a GPU, the
    default a CPU-sized one (512 images at the stand-ins' 32 x 64 / 96 x 96, reduced widths, budget 32)."""

    name, backbone = {"segmentation": ("cityscapes", "drn_d_22"), "detection": ("voc", "ssd300")}[task]
    if full:
        real = get_spec(name)
        spec = replace(get_spec(f"synthetic-{name}"), height=real.height, width=real.width)
        n_lab, n = (298, 2975) if task == "segmentation" else (1000, 16_551)
        width, budget = 1.0, (149 if task == "segmentation" else 1000)
    else:
        spec = get_spec(f"synthetic-{name}")
        n_lab, n, width, budget = 64, 512, 0.125, 32
    data = ImageData(spec, *make_synthetic_dense(spec, n, 8)).to(device)
    pool = ActivePool.initial(spec.name, n, n_lab, 0)
    recipe = Recipe(optimizer="sgd", lr=0.001, momentum=0.9, batch_size=8, epochs=1, epoch_iterations=2,
                    augment=("flip",), eval_batch_size=8 if full else 64)
    return SamplingWorkload(data, pool, recipe, Augmenter((), spec.mean, spec.std, device), budget, width, backbone,
                            None)


def time_query(name: str, w: SamplingWorkload) -> tuple[float, int]:
    """(seconds of one query of `w.budget`, parameters of the task model + the method's modules at this width)."""

    device = w.data.train_x.device
    strategy = build_strategy(name)
    torch.manual_seed(0)
    spec = w.data.spec
    model = strategy.adapt_model(build_model(w.backbone, spec.num_classes, spec.channels, (spec.height, spec.width),
                                             w.width, dropout=w.dropout)).to(device)
    trained = fit(model, w.data, w.pool.labeled, w.recipe, 0, hook=strategy.training_hook(), unlabeled=w.pool.unlabeled)
    ctx = QueryContext(model, w.data, w.pool, w.augmenter, w.recipe, 0, 0, state=trained.state)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    picked = strategy.query(ctx, w.budget)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    if len(set(picked.tolist())) != w.budget:
        raise RuntimeError(f"{name}: the query returned {len(set(picked.tolist()))} distinct picks, not {w.budget}")
    params = count_parameters(model) + sum(count_parameters(m) for m in strategy.method_modules(model, w.data.spec).values())
    return seconds, params
