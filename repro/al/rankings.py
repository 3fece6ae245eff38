"""Rankings of the unlabeled pool after the first iteration (DAL Fig. 3): one task model per seed, every
method scores every unlabeled example with it; the per-example scores are saved for the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from repro.al.loop import build_task_model, load_experiment_data, run_data
from repro.al.methods import method_spec
from repro.al.strategies import QueryContext, build_strategy
from repro.core.provenance import provenance
from repro.core.train import derive_seed, fit
from repro.data.augment import Augmenter
from repro.data.pool import ActivePool
from repro.spec.layout import rankings_dir, rankings_path
from repro.spec.params import Params
from repro.spec.records import atomic_write_json


def score_pool(params: Params, name: str, seed: int, data) -> dict[str, np.ndarray]:
    """{'unlabeled': pool indices, <method>: score per unlabeled example ("higher = query first")}.

    One task model per seed, trained on `of`'s initial labeled set, is shared by the methods that do not
    change training; a method with a training hook trains its own (same initial model and seed) with its hook.
    """
    r = params.ranking(name)
    exp = params.experiment(r.of)
    recipe = params.recipe(exp.recipe)
    data = run_data(exp, data, seed)  # the run's pool (a per-run train_subset), as `of`'s runs
    counts = exp.schedule.labeled_counts(data.pool_size)
    pool = ActivePool.initial(exp.dataset, data.pool_size, counts[0], seed)  # the same initial pool as `of`'s runs
    aug = Augmenter((), data.spec.mean, data.spec.std, data.train_x.device)
    unlabeled = pool.unlabeled
    out = {"unlabeled": unlabeled, "initial_pool_sha256": np.array(pool.sha256())}  # checked against the runs
    shared = None
    for m in r.methods:
        strategy = build_strategy(*method_spec(params, m, r.of))
        hook = strategy.training_hook()
        if hook is None and shared is not None:
            model, trained = shared
        else:
            model = strategy.adapt_model(build_task_model(exp, data, derive_seed(seed, 0, "init"), params.data_dir)).to(data.train_x.device)
            trained = fit(model, data, pool.labeled, recipe, derive_seed(seed, 0, "train"), hook=hook,
                          unlabeled=strategy.training_unlabeled(pool, seed, 0))
            if hook is None:
                shared = model, trained
        ctx = QueryContext(model, data, pool, aug, recipe, seed, 0, budget=counts[1] - counts[0],  # the first query's size
                           state=trained.state)
        out[m] = strategy.pool_scores(ctx, unlabeled).float().cpu().numpy()
    return out


def run_rankings(params: Params, name: str, progress: bool = True) -> list[Path]:

    r = params.ranking(name)
    exp = params.experiment(r.of)
    data = load_experiment_data(params, r.of)
    out_dir = rankings_dir(params, name)
    paths = []
    for seed in tqdm(exp.seeds, desc=f"{name} seeds", disable=not progress):
        scores = score_pool(params, name, seed, data)
        path = rankings_path(params, name, seed)
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
