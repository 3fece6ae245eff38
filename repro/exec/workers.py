"""Runs of one experiment in parallel worker processes: on a CPU the small smoke models are bound by per-op
overhead, so N single-threaded processes finish N runs in about the time 2 threads take for 1.3 of them
(measured on the 2-core reference machine). Each worker loads the data once and runs whole (method, seed)
runs, which checkpoint and write their records exactly as a sequential run does; a run's result does not
depend on which worker ran it, nor on how many runs were pending: every run has params' `threads` torch
threads (`repro.core.determinism.apply_run_settings`, recorded in the run's machine class), in a worker or not."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import get_context

_STATE: dict = {}


RUNS_PER_WORKER = 2  # a worker (spawn, import torch, load the data: ~3-5 s) pays off from ~2 single-threaded smoke runs


def default_jobs(device: str, todo: int) -> int:
    """REPRO_JOBS if set; on a CUDA device 1 (one GPU); on a CPU one process per core, with at least
    RUNS_PER_WORKER runs to do per worker (fewer runs go in the one process). Runs are single-threaded whatever
    the process (params' `threads`), so a second worker pays off as soon as each has 2 runs to do."""
    env = os.environ.get("REPRO_JOBS")
    if env:
        return max(1, int(env))
    if device == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, todo // RUNS_PER_WORKER))


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (a killed `dvc repro`) stops instead of running on as an orphan."""

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _init(params_path: str, profile: str | None, experiment: str) -> None:
    """A worker's start: params, then the run settings (threads, deterministic knob) before any data is loaded."""
    _exit_with_parent(os.getppid())
    from repro.al import loop
    from repro.al.methods import load_params
    from repro.core.determinism import apply_run_settings

    try:
        params = load_params(params_path, profile)
        apply_run_settings(params)
        _STATE.update(params=params, experiment=experiment, data=loop.load_experiment_data(params, experiment))
    except Exception as e:  # (missing or damaged data) raised by the first run, as a sequential run would
        _STATE["error"] = e


def _run(method: str, seed: int) -> tuple[str, int, dict]:
    from repro.al import loop

    if "error" in _STATE:
        raise _STATE["error"]
    rec = loop.run(_STATE["params"], _STATE["experiment"], method, seed, data=_STATE["data"], progress=False)
    return method, seed, rec["stages"][-1]


def _run_group(runs: list[tuple[str, int]]) -> list[tuple[str, int, dict]]:
    """Several runs in lockstep (`lockstep.run_group`, params' `group_runs`) in this worker."""
    from repro.exec import lockstep

    if "error" in _STATE:
        raise _STATE["error"]
    return [(r["method"], r["seed"], r["stages"][-1])
            for r in lockstep.run_group(_STATE["params"], _STATE["experiment"], runs, data=_STATE["data"], progress=False)]


def run_parallel(params_path: str, profile: str | None, experiment: str, runs: list[tuple[str, int]], jobs: int,
                 grouped: bool = False):
    """Yield (method, seed, last stage) as runs finish; the first failing run's error is raised. `grouped`: each
    worker takes every jobs-th run and trains its share in lockstep (records come when its share is done)."""
    ctx = get_context("spawn")  # no fork after torch started its thread pools
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init,
                             initargs=(str(params_path), profile, experiment)) as pool:
        if grouped:
            pending = {pool.submit(_run_group, runs[k::jobs]) for k in range(jobs) if runs[k::jobs]}
        else:
            pending = {pool.submit(_run, m, s) for m, s in runs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                if fut.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise fut.exception()
                yield from (fut.result() if grouped else [fut.result()])
