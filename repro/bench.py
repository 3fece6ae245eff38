"""`python -m repro bench train|sample`: training throughput of the shared trainer vs a naive DataLoader loop.

The naive baseline is what most reference codes do: a torchvision Dataset with per-sample PIL transforms,
a DataLoader (0 and 2 workers), and `.item()` on the loss every step. All variants run in one process,
in alternating order over several repeats; medians are reported. Not a test.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from tabulate import tabulate

from repro.data.datasets import ImageData
from repro.data.specs import get_spec
from repro.data.synthetic import make_synthetic
from repro.models import build_model
from repro.recipe import Recipe
from repro.train import fit, resolve_device


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str  # a synthetic stand-in: timing-equivalent to the real images
    backbone: str
    width: float
    recipe: Recipe
    images: int  # images per timed epoch
    gpu_only: bool = False


def workloads(device: torch.device, full: bool) -> list[Workload]:
    lenet = Recipe(optimizer="adam", lr=1e-3, batch_size=32, epochs=1)
    resnet = Recipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=1,
                    augment=("crop", "flip"))
    cuda = device.type == "cuda"
    out = [
        Workload("LeNet, MNIST shapes, Adam, batch 32", "synthetic-mnist", "lenet", 1.0, lenet, 4096 if not cuda else 32768),
        Workload("ResNet-18 x1/8, CIFAR shapes, SGD, batch 128, crop+flip", "synthetic-cifar10", "resnet18", 0.125,
                 resnet, 2048 if not cuda else 32768),
    ]
    if cuda or full:
        out.append(Workload("ResNet-18 (full width), CIFAR shapes, SGD, batch 128, crop+flip", "synthetic-cifar10",
                            "resnet18", 1.0, resnet, 50_000 if cuda else 1024, gpu_only=True))
    return out


class _PILDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset: uint8 HWC arrays -> PIL image -> per-sample transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        img = self.images[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(img), int(self.labels[i])


def _naive_epoch(w: Workload, data: ImageData, workers: int, device) -> float:
    from torchvision import transforms

    spec = data.spec
    tf = []
    if "crop" in w.recipe.augment:
        tf.append(transforms.RandomCrop(spec.height, padding=4))
    if "flip" in w.recipe.augment:
        tf.append(transforms.RandomHorizontalFlip())
    tf += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    x = data.train_x[: w.images].permute(0, 2, 3, 1).cpu().numpy()
    ds = _PILDataset(x, data.train_y[: w.images].cpu().numpy(), transforms.Compose(tf))
    loader = torch.utils.data.DataLoader(ds, batch_size=w.recipe.batch_size, shuffle=True, num_workers=workers)
    torch.manual_seed(0)
    model = build_model(w.backbone, spec.num_classes, spec.channels, (spec.height, spec.width), w.width).to(device)
    r = w.recipe
    opt = (torch.optim.SGD(model.parameters(), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
           if r.optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=r.lr))
    model.train()
    t = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb).logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the per-step host sync reference codes do for logging
    return w.images / (time.perf_counter() - t)


def _trainer_epoch(w: Workload, data: ImageData, device) -> float:
    spec = data.spec
    torch.manual_seed(0)
    model = build_model(w.backbone, spec.num_classes, spec.channels, (spec.height, spec.width), w.width).to(device)
    res = fit(model, data, np.arange(w.images), replace(w.recipe, epochs=1), seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return w.images / res.seconds


def bench_train(repeats: int = 3, full: bool = False) -> list[dict]:
    device = resolve_device("auto")
    rows = []
    for w in workloads(device, full):
        spec = get_spec(w.dataset)
        data = ImageData(spec, *make_synthetic(spec, w.images, 16)).to(device)
        variants = {
            "trainer": lambda w=w, data=data: _trainer_epoch(w, data, device),
            "naive, 0 workers": lambda w=w, data=data: _naive_epoch(w, data, 0, device),
            "naive, 2 workers": lambda w=w, data=data: _naive_epoch(w, data, 2, device),
        }
        _trainer_epoch(replace(w, images=min(w.images, 512)), data, device)  # warm-up (allocator, cudnn)
        results: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for rep in range(repeats):
            for name in (names if rep % 2 == 0 else names[::-1]):  # alternate the order
                results[name].append(variants[name]())
        med = {k: statistics.median(v) for k, v in results.items()}
        rows.append({"workload": w.name, "device": str(device), **{f"{k} img/s": round(v) for k, v in med.items()},
                     "x vs 0 workers": round(med["trainer"] / med["naive, 0 workers"], 2),
                     "x vs 2 workers": round(med["trainer"] / med["naive, 2 workers"], 2)})
    return rows


def main(what: str, repeats: int, full: bool, methods: list[str] | None = None) -> int:
    if what == "sample":
        return main_sample(full, methods)
    if what != "train":
        raise ValueError(f"unknown benchmark {what!r}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}; "
          f"medians of {repeats} alternating repeats")
    rows = bench_train(repeats, full)
    print(tabulate(rows, headers="keys", tablefmt="github"))
    return 0


# --- `python -m repro bench sample`: query time and parameter count per method (MCDAL Table 1's workload) ---


def bench_sample(full: bool = False, methods: list[str] | None = None) -> tuple[list[dict], dict]:
    """Stage-1 pool of MCDAL Table 1 (5,000 labeled + 45,000 unlabeled CIFAR-10-shaped images, ResNet-18,
    budget 2,500) on a GPU or with --full; a reduced pool on CPU (500 + 4,500, ResNet-18 x1/8, budget 250).
    Synthetic images are timing-equivalent. Models get one short training pass so method modules exist."""
    from repro.data.pool import ActivePool
    from repro.losses import kcenter_greedy
    from repro.models import count_parameters
    from repro.strategies import STRATEGIES, QueryContext, build_strategy

    device = resolve_device("auto")
    big = full or device.type == "cuda"
    n_lab, n_unl, width, budget = (5000, 45_000, 1.0, 2500) if big else (500, 4500, 0.125, 250)
    spec = get_spec("synthetic-cifar10")
    data = ImageData(spec, *make_synthetic(spec, n_lab + n_unl, 16)).to(device)
    pool = ActivePool.initial("synthetic-cifar10", n_lab + n_unl, n_lab, 0)
    recipe = Recipe(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=128, epochs=1, epoch_iterations=2,
                    augment=("crop", "flip"), eval_batch_size=1024 if device.type == "cpu" else 4096)
    from repro.data.augment import Augmenter

    aug = Augmenter((), spec.mean, spec.std, device)
    rows = []
    # DAL is not in MCDAL Table 1 and its discriminator (up to 1,000 epochs per mini-query until 98% training
    # accuracy) dominates any CPU budget on this pool; name it with --methods to time it anyway.
    for name in methods or sorted(set(STRATEGIES) - {"dal", "coreset-robust"}):  # minutes per query: ask by name
        strategy = build_strategy(name)
        torch.manual_seed(0)
        model = strategy.adapt_model(build_model("resnet18", 10, 3, (32, 32), width, dropout=0.5)).to(device)
        trained = fit(model, data, pool.labeled, recipe, 0, hook=strategy.training_hook(), unlabeled=pool.unlabeled)
        ctx = QueryContext(model, data, pool, aug, recipe, 0, 0, state=trained.state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        picked = strategy.query(ctx, budget)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        assert len(set(picked.tolist())) == budget
        params = count_parameters(model) + sum(count_parameters(m) for m in strategy.method_modules(model, spec).values())
        rows.append({"method": name, "query seconds": round(seconds, 3), "parameters": f"{params:,}"})
        print(f"  {name:<20} {seconds:9.3f} s  {params:>12,} params", flush=True)
    # k-center alone on 50,000 x 512 features (5,000 labeled), budget 2,500
    g = torch.Generator(device=device).manual_seed(0)
    feats = torch.randn(50_000, 512, generator=g, device=device)
    labeled = torch.zeros(50_000, dtype=torch.bool, device=device)
    labeled[:5000] = True
    t = time.perf_counter()
    kcenter_greedy(feats, labeled, 2500)
    if device.type == "cuda":
        torch.cuda.synchronize()
    kc = {"kcenter 50,000 x 512, 5,000 labeled, budget 2,500": f"{time.perf_counter() - t:.2f} s"}
    workload = {"device": str(device), "labeled": n_lab, "unlabeled": n_unl, "width": width, "budget": budget}
    return rows, {**workload, **kc}


def main_sample(full: bool, methods: list[str] | None = None) -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}")
    rows, extra = bench_sample(full, methods)
    print(tabulate(rows, headers="keys", tablefmt="github"))
    for k, v in extra.items():
        print(f"{k}: {v}")
    return 0
