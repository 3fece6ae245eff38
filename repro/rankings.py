"""Rankings of the unlabeled pool after the first iteration (DAL Fig. 3): one task model per seed, every
method scores every unlabeled example with it; the per-example scores are saved for the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repro.config import Params
from repro.data.augment import Augmenter
from repro.data.pool import ActivePool
from repro.loop import build_task_model, load_experiment_data, stage_seed
from repro.records import atomic_write_json, provenance
from repro.strategies import QueryContext, build_strategy
from repro.strategies.dal import fit_labeled_vs_unlabeled, unlabeled_probability, unlabeled_side
from repro.train import fit


def rankings_dir(params: Params, name: str) -> Path:
    return Path(params.results_dir) / name


def score_pool(params: Params, name: str, seed: int, data) -> dict[str, np.ndarray]:
    """{'unlabeled': pool indices, <method>: score per unlabeled example ("higher = query first")}."""
    r = params.ranking(name)
    exp = params.experiment(r.of)
    recipe = params.recipe(exp.recipe)
    counts = exp.schedule.labeled_counts(data.pool_size)
    pool = ActivePool.initial(exp.dataset, data.pool_size, counts[0], seed)  # the same initial pool as `of`'s runs
    model = build_task_model(exp, data, stage_seed(seed, 0, "init")).to(data.train_x.device)
    fit(model, data, pool.labeled, recipe, stage_seed(seed, 0, "train"))
    aug = Augmenter((), data.spec.mean, data.spec.std, data.train_x.device)
    ctx = QueryContext(model, data, pool, aug, recipe, seed, 0, budget=counts[1] - counts[0])  # the first query's size
    unlabeled = pool.unlabeled
    out = {"unlabeled": unlabeled, "initial_pool_sha256": np.array(pool.sha256())}  # checked against the runs
    for m in r.methods:
        if m == "dal":  # one discriminator, labeled vs unlabeled (its 10 |L| subsample), scoring every unlabeled example
            method, opts = params.method_spec(m, r.of)
            _, psi = ctx.predict(np.arange(pool.size))
            lab, unl = (torch.as_tensor(i, device=psi.device) for i in (pool.labeled, unlabeled))
            gen = torch.Generator(device=psi.device).manual_seed(stage_seed(seed, 0, "dal-rank-sub"))
            disc = fit_labeled_vs_unlabeled(psi, lab, unlabeled_side(unl, lab.numel(), opts.subsample, gen), opts,
                                            seed=stage_seed(seed, 0, "dal-rank"))
            out[m] = unlabeled_probability(disc, psi[unl]).cpu().numpy()
            continue
        method, opts = params.method_spec(m, r.of)
        if getattr(opts, "subset", None) is not None:  # a ranking needs every example scored
            from dataclasses import replace

            opts = replace(opts, subset=None)
        out[m] = build_strategy(method, opts).score(ctx, unlabeled).float().cpu().numpy()
    return out


def run_rankings(params: Params, name: str, progress: bool = True) -> list[Path]:
    from tqdm.auto import tqdm

    r = params.ranking(name)
    exp = params.experiment(r.of)
    data = load_experiment_data(params, r.of)
    out_dir = rankings_dir(params, name)
    paths = []
    for seed in tqdm(exp.seeds, desc=f"{name} seeds", disable=not progress):
        scores = score_pool(params, name, seed, data)
        path = out_dir / f"seed{seed}.npz"
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".seed{seed}.tmp.npz"
        np.savez(tmp, **scores)
        tmp.replace(path)
        paths.append(path)
    atomic_write_json(out_dir / "meta.json", {
        "rankings": name, "of": r.of, "methods": list(r.methods), "seeds": list(exp.seeds),
        "profile": params.profile, "provenance": provenance(data.train_x.device, "", {"dir": str(out_dir)}),
    })
    return paths
