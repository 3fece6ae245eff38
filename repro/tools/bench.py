"""`python -m repro bench train|sample`: training throughput of the shared trainer vs a naive DataLoader loop.

The naive baseline is what most reference codes do: a torchvision Dataset with per-sample PIL transforms,
a DataLoader (0 and 2 workers), and `.item()` on the loss every step. All variants run in one process,
in alternating order over several repeats; medians are reported. Not a test.
"""

from __future__ import annotations

import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F
from tabulate import tabulate
from tqdm.auto import tqdm

from repro.al.loop import build_task_model
from repro.al.selection import kcenter_greedy
from repro.al.strategies import STRATEGIES
from repro.core.device import resolve_device
from repro.core.infer import accuracy
from repro.core.seeding import derive_seed
from repro.core.train import TrainRequest, fit, make_augmenter
from repro.data.augment import Augmenter
from repro.data.datasets import ImageData, load_dataset
from repro.data.synthetic import make_synthetic
from repro.exec.lockstep import fit_group
from repro.models import build_model
from repro.report.stats import MIN_SEEDS, Sample, band_for
from repro.spec.datasets import get_spec
from repro.spec.params import load_params
from repro.spec.recipe import Recipe
from repro.tools.sampling import dense_sampling_workload, sampling_workload, time_query


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


# --- `python -m repro bench runs`: DAL's MNIST protocol (issue 12), runs per hour alone vs in lockstep ---

DAL_SIZES = tuple(range(100, 2101, 100))  # labeled counts of the 21 stages (initial 100, 20 queries of 100)


def _dal_stage_seconds(n: int, runs: int, epochs: int, grouped: bool, device, threads: int | None = None,
                       bf16_cpu: bool = False) -> float:
    """Seconds per run for `epochs` epochs of DAL's LeNet recipe (Adam, batch 32, 20% validation evaluated
    every epoch) on n labeled MNIST-shaped images: `runs` runs alone one after another, or in one lockstep group
    (`bf16_cpu`: the recipe's opt-in bf16 training on a CPU)."""

    if threads is not None:
        torch.set_num_threads(threads)
    spec = get_spec("synthetic-mnist")
    data = ImageData(spec, *make_synthetic(spec, max(DAL_SIZES), 16)).to(device)
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=32, epochs=epochs, validation_fraction=0.2,
                    eval_batch_size=4096, bf16_cpu=bf16_cpu)
    labeled = [np.random.default_rng(s).choice(len(data.train_y), n, replace=False) for s in range(runs)]
    models = []
    for s in range(runs):
        torch.manual_seed(s)
        models.append(build_model("lenet", 10, 1, (28, 28), 1.0, 0.5).to(device))
    t = time.perf_counter()
    if grouped:
        fit_group([TrainRequest(m, data, lab, recipe, s, name=f"random/seed{s}")
                   for s, (m, lab) in enumerate(zip(models, labeled))])
    else:
        for s, (m, lab) in enumerate(zip(models, labeled)):
            fit(m, data, lab, recipe, s)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / runs


def _two_workers_seconds(n: int, runs: int, epochs: int, bf16_cpu: bool = False) -> float:
    """Seconds per run when two single-threaded processes each train `runs` runs alone at the same time (how
    `python -m repro run` spreads an experiment's runs over a 2-core CPU)."""

    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        list(pool.map(_dal_stage_seconds, [100] * 2, [1] * 2, [1] * 2, [False] * 2, [torch.device("cpu")] * 2, [1] * 2))  # warm
        t = time.perf_counter()
        list(pool.map(_dal_stage_seconds, [n] * 2, [runs] * 2, [epochs] * 2, [False] * 2, [torch.device("cpu")] * 2,
                      [1] * 2, [bf16_cpu] * 2))
        return (time.perf_counter() - t) / (2 * runs)


def bench_runs(group: int = 20, epochs: int = 2, repeats: int = 3) -> list[dict]:
    """Runs per hour of DAL's MNIST protocol with `random` (the query costs nothing, so this is the training):
    150 epochs at each of the 21 labeled counts 100..2,100 plus a 10,000-image test pass per stage. Epoch time is
    measured at 500 and 1,700 labeled (medians of alternating repeats) and taken as linear in the labeled count.
    Modes: runs alone in one process; (CPU) two single-threaded worker processes; runs in one lockstep group."""

    device = resolve_device("auto")
    spec = get_spec("synthetic-mnist")
    test = ImageData(spec, *make_synthetic(spec, 16, 10_000)).to(device)
    torch.manual_seed(0)
    model = build_model("lenet", 10, 1, (28, 28), 1.0, 0.5).to(device)
    aug = Augmenter((), spec.mean, spec.std, device)
    accuracy(model, test.test_x, test.test_y, None, aug, 4096)
    t = time.perf_counter()
    accuracy(model, test.test_x, test.test_y, None, aug, 4096)
    test_pass = time.perf_counter() - t
    threads = torch.get_num_threads()
    modes = {f"alone, 1 process x {threads} threads": lambda n: _dal_stage_seconds(n, 2, epochs, False, device)}
    if device.type == "cpu":
        modes["alone, 2 worker processes x 1 thread"] = lambda n: _two_workers_seconds(n, 1, epochs)
        # the recipe's opt-in bf16 training (not the paper profile's: `bench precision` measures what it changes)
        modes["alone, 1 process, bf16_cpu (opt-in)"] = lambda n: _dal_stage_seconds(n, 2, epochs, False, device,
                                                                                      bf16_cpu=True)
        modes["alone, 2 workers x 1 thread, bf16_cpu (opt-in)"] = lambda n: _two_workers_seconds(n, 1, epochs, True)
    modes[f"lockstep, group of {group}"] = lambda n: _dal_stage_seconds(n, group, epochs, True, device)
    _dal_stage_seconds(100, 2, 1, True, device)  # warm-up (vmap's first call)
    times: dict[tuple[str, int], list[float]] = {(m, n): [] for m in modes for n in (500, 1700)}
    for rep in range(repeats):
        for m in (list(modes) if rep % 2 == 0 else list(modes)[::-1]):
            for n in (500, 1700):
                times[(m, n)].append(modes[m](n) / epochs)
    torch.set_num_threads(threads)
    rows = []
    for m in modes:
        e500, e1700 = (statistics.median(times[(m, n)]) for n in (500, 1700))
        slope = (e1700 - e500) / 1200
        run_seconds = sum(150 * (e500 + slope * (n - 500)) for n in DAL_SIZES) + 21 * test_pass
        rows.append({"mode": m, "s/epoch at 500 labeled": round(e500, 4), "s/epoch at 1,700": round(e1700, 4),
                     "min per run": round(run_seconds / 60, 1), "runs/hour": round(3600 / run_seconds, 1)})
    base = rows[0]["runs/hour"]
    for r in rows:
        r["x alone"] = round(r["runs/hour"] / base, 2)
    return rows


# --- `python -m repro bench precision`: the opt-in bf16 training on a CPU against fp32, paired seeds ---


def bench_precision(seeds: int = 5, sizes: tuple[int, ...] = (100, 500, 2000), margin: float = 1.0,
                    experiment: str = "dal_mnist_b100", data_dir: str = "data") -> tuple[list[dict], str]:
    """Test accuracy after training with the paper profile's recipe of `experiment` (DAL's LeNet on MNIST: 150 epochs,
    20% validation, best epoch) in fp32 and with `bf16_cpu`, on random labeled sets of each size: per seed the same
    labeled set, initialisation and batches, so the difference is the precision's. Per size: the paired mean
    difference (bf16 - fp32, points), its 90% t-interval, TOST equivalence at +-`margin` points (the audit's
    `parity` test) and the training seconds of each. Needs >= 5 seeds for a verdict (`report.stats.MIN_SEEDS`)."""

    device = resolve_device("auto")
    params = load_params(profile="paper")
    exp = params.experiment(experiment)
    recipe = params.recipe(exp.recipe)
    try:
        data = load_dataset(exp.dataset, data_dir, device=device)
        source = f"real {exp.dataset}"
    except (FileNotFoundError, OSError, RuntimeError, ValueError) as err:
        data = load_dataset(f"synthetic-{exp.dataset}", data_dir, device=device)
        source = f"synthetic-{exp.dataset} (real {exp.dataset} unavailable: {err})"
    aug = make_augmenter(data, recipe, device)
    rows, bar = [], tqdm(total=len(sizes) * seeds * 2, desc="bench precision", unit="fit")
    for n in sizes:
        acc: dict[bool, list[float]] = {False: [], True: []}
        secs: dict[bool, list[float]] = {False: [], True: []}
        for seed in range(seeds):
            labeled = np.random.default_rng(derive_seed(seed, n, "precision")).choice(len(data.train_y), n,
                                                                                      replace=False)
            for bf16 in (False, True):
                model = build_task_model(exp, data, seed, data_dir).to(device)
                res = fit(model, data, labeled, replace(recipe, bf16_cpu=bf16), seed)
                secs[bf16].append(res.seconds)
                acc[bf16].append(100 * accuracy(model, data.test_x, data.test_y, None, aug, recipe.eval_batch_size,
                                                bf16=False))
                bar.update()
        d = np.array(acc[True]) - np.array(acc[False])
        band, sample = band_for("parity", margin), Sample(d)
        outcome = band.outcome(sample)
        verdict = {"reproduced": "equivalent", "contradicted": "not equivalent",
                   "inconclusive": "inconclusive"}[outcome] if seeds >= MIN_SEEDS else f"no verdict (n < {MIN_SEEDS})"
        lo, hi = (float(v) for v in sample.interval(band.alpha_side)) if seeds > 1 else (math.nan, math.nan)
        rows.append({"labeled": n, "fp32 acc %": round(statistics.mean(acc[False]), 2),
                     "bf16 acc %": round(statistics.mean(acc[True]), 2), "mean diff (pp)": round(float(d.mean()), 2),
                     "90% CI (pp)": f"[{lo:+.2f}, {hi:+.2f}]", f"TOST +-{margin:g} pp": verdict,
                     "fp32 s/fit": round(statistics.mean(secs[False]), 1),
                     "bf16 s/fit": round(statistics.mean(secs[True]), 1),
                     "speed-up": round(sum(secs[False]) / sum(secs[True]), 2)})
    bar.close()
    return rows, f"{source}; recipe {exp.recipe} ({recipe.epochs} epochs); {seeds} paired seeds"


def main(what: str, repeats: int, full: bool, methods: list[str] | None = None, group: int = 20, seeds: int = 5,
         sizes: list[int] | None = None) -> int:
    if what == "sample":
        return main_sample(full, methods)
    if what == "precision":
        rows, about = bench_precision(seeds=seeds, sizes=tuple(sizes or (100, 500, 2000)))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}; {about}")
        print(tabulate(rows, headers="keys", tablefmt="github"))
        return 0
    if what == "runs":
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}; "
              f"DAL MNIST protocol (LeNet, 21 stages x 150 epochs), runs alone vs {group} in lockstep")
        print(tabulate(bench_runs(group, repeats=repeats), headers="keys", tablefmt="github"))
        return 0
    if what != "train":
        raise ValueError(f"unknown benchmark {what!r}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}; "
          f"medians of {repeats} alternating repeats")
    rows = bench_train(repeats, full)
    print(tabulate(rows, headers="keys", tablefmt="github"))
    return 0


# --- `python -m repro bench sample`: query time and parameter count per method (MCDAL Table 1's workload) ---


def bench_sample(full: bool = False, methods: list[str] | None = None) -> tuple[list[dict], dict]:
    """Query time and parameters per method on MCDAL Table 1's stage-1 workload (`repro.tools.sampling`): the full
    pool on a GPU or with --full, the reduced one on a CPU."""

    device = resolve_device("auto")
    w = sampling_workload(device, full or device.type == "cuda")
    rows = []
    # DAL is not in MCDAL Table 1 and its discriminator (up to 1,000 epochs per mini-query until 98% training
    # accuracy) dominates any CPU budget on this pool; name it with --methods to time it anyway.
    names = [n for n in sorted(set(STRATEGIES) - {"dal", "coreset-robust"}) if "classification" in STRATEGIES[n].tasks]
    for name in methods or names:  # dal, coreset-robust: minutes per query: ask by name
        seconds, params = time_query(name, w)
        rows.append({"task": "classification", "method": name, "query seconds": round(seconds, 3),
                     "parameters": f"{params:,}"})
        print(f"  {name:<20} {seconds:9.3f} s  {params:>12,} params", flush=True)
    # the dense workloads: every method with a segmentation / detection reading (issue 11, section 5)
    for task in ("segmentation", "detection"):
        dense = dense_sampling_workload(task, device, full or device.type == "cuda")
        print(f"  {task}: {dense.describe()}", flush=True)
        for name in sorted(n for n in STRATEGIES if task in STRATEGIES[n].tasks and n != "upper-bound"):
            if methods and name not in methods:
                continue
            seconds, params = time_query(name, dense)
            rows.append({"task": task, "method": name, "query seconds": round(seconds, 3), "parameters": f"{params:,}"})
            print(f"  {task[:3]} {name:<16} {seconds:9.3f} s  {params:>12,} params", flush=True)
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
    return rows, {**w.describe(), **kc}


def main_sample(full: bool, methods: list[str] | None = None) -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}")
    rows, extra = bench_sample(full, methods)
    print(tabulate(rows, headers="keys", tablefmt="github"))
    for k, v in extra.items():
        print(f"{k}: {v}")
    return 0
