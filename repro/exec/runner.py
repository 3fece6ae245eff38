"""`python -m repro run`: an experiment's (method, seed) runs through one back-end, chosen in this order:
torchrun (every rank runs every run, data-parallel inside each), a submitit job array (`--executor`), worker
processes (`--jobs` / REPRO_JOBS), lockstep groups in this process (params' `group_runs`), or one after the other
here. Finished runs are not redone: their records are re-emitted (a resumed stage's runs print the same lines)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tqdm.auto import tqdm

from repro.al import loop
from repro.al.methods import check_default_steps
from repro.core import distributed
from repro.core.determinism import apply_run_settings
from repro.core.device import resolve_device
from repro.core.train import grouping_enabled
from repro.exec import executors, lockstep
from repro.exec.plan import describe_plan, run_is_done
from repro.exec.workers import default_jobs, run_parallel
from repro.spec import layout
from repro.spec.params import Params
from repro.spec.schema import ConfigError


@dataclass(frozen=True)
class RunOptions:
    """What the command line asks for beyond params.yaml."""

    params_path: str
    profile: str | None
    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    quiet: bool = False
    jobs: int | None = None
    array: executors.ArrayOptions | None = None


def run_experiment(params: Params, experiment: str, opts: RunOptions) -> int:
    """Run (or resume) the experiment's runs; the exit status."""
    apply_run_settings(params)  # threads and the deterministic knob, before CUDA starts (workers apply their own)
    exp = params.experiment(experiment)
    methods = list(opts.methods) or list(exp.methods)
    for m in methods:
        if m not in exp.methods:
            raise ConfigError("method", m, f"allowed for {experiment}: {list(exp.methods)}")
    runs = [(m, s) for m in methods for s in (opts.seeds or exp.seeds)]
    if distributed.is_writer():
        print(describe_plan(params, experiment, runs), flush=True)
    if distributed.launched():
        return _torchrun(params, experiment, methods, runs, opts)
    todo = [(m, s) for m, s in runs if not run_is_done(params, experiment, m, s)]
    if opts.array is not None:
        if _array(params, experiment, todo, opts):
            return 1
        runs = [r for r in runs if r not in todo]  # the ones done before re-emit their records below
    device = resolve_device(params.device)
    jobs = 1 if opts.array is not None else opts.jobs or default_jobs(device.type, len(todo))
    grouped = grouping_enabled(params.group_runs, device)
    if jobs > 1 and len(todo) > 1:
        _workers(params, experiment, todo, jobs, grouped, opts)
        runs = [r for r in runs if r not in todo]  # the finished ones re-emit their records below
    _here(params, experiment, runs, grouped, opts)
    return 0


def done_line(params: Params, experiment: str, method: str, seed: int, last: dict) -> str:
    return (f"{experiment}/{method}/seed{seed}: {last['metric']} {last['value']:.4f} "
            f"at {last['labeled']} labeled -> {layout.record_path(params, experiment, method, seed)}")


def _torchrun(params: Params, experiment: str, methods: list[str], runs: list[tuple[str, int]],
              opts: RunOptions) -> int:
    """Every rank runs every run, training data-parallel inside each; rank 0 writes and prints."""
    writer = distributed.is_writer()
    try:
        check_default_steps(params, experiment, methods)
        device = distributed.init_process_group_from_env(resolve_device(params.device))
        data = loop.load_experiment_data(params, experiment, device)
        for method, seed in runs:
            rec = loop.run(params, experiment, method, seed, data=data, progress=writer and not opts.quiet)
            distributed.barrier()  # rank 0 has written the record before anyone starts the next run
            if writer:
                print(done_line(params, experiment, method, seed, rec["stages"][-1]), flush=True)
    except distributed.DistributedError as e:  # the same on every rank: rank 0 says it
        if writer:
            print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.destroy()
    return 0


def _array(params: Params, experiment: str, todo: list[tuple[str, int]], opts: RunOptions) -> bool:
    """The runs still to do as one submitit job array; whether any failed (errors printed)."""
    failed = []
    if todo:
        print(f"{len(todo)} run(s) as one {opts.array.executor} job array; logs: "
              f"{executors.log_folder(params, experiment)}/", flush=True)
    finished = executors.run_array(params, opts.params_path, opts.profile, experiment, todo, opts.array) if todo else ()
    for fin in finished:
        if fin.error is None:
            print(done_line(params, experiment, fin.method, fin.seed, fin.last), flush=True)
        else:
            failed.append(fin.error)
            print(f"error: {fin.error}", file=sys.stderr, flush=True)
    if failed:
        print(f"error: {len(failed)} of {len(todo)} run(s) of {experiment} failed (errors and logs above)",
              file=sys.stderr)
    return bool(failed)


def _workers(params: Params, experiment: str, todo: list[tuple[str, int]], jobs: int, grouped: bool,
             opts: RunOptions) -> None:
    print(f"{len(todo)} run(s) in {jobs} worker processes (--jobs / REPRO_JOBS)", flush=True)
    bar = tqdm(total=len(todo), desc=f"{experiment} runs", unit="run", disable=opts.quiet)
    for method, seed, last in run_parallel(opts.params_path, opts.profile, experiment, todo, jobs, grouped=grouped):
        bar.update()
        tqdm.write(done_line(params, experiment, method, seed, last))
    bar.close()


def _here(params: Params, experiment: str, runs: list[tuple[str, int]], grouped: bool, opts: RunOptions) -> None:
    """The remaining runs in this process: in lockstep groups, or one after the other."""
    data = loop.load_experiment_data(params, experiment) if runs else None
    if grouped and len(runs) > 1:  # lockstep groups (params' group_runs)
        for rec in lockstep.run_group(params, experiment, runs, data=data, progress=not opts.quiet):
            tqdm.write(done_line(params, experiment, rec["method"], rec["seed"], rec["stages"][-1]))
        return
    for method, seed in tqdm(runs, desc=f"{experiment} runs", unit="run", disable=opts.quiet or not runs):
        rec = loop.run(params, experiment, method, seed, data=data, progress=not opts.quiet)
        tqdm.write(done_line(params, experiment, method, seed, rec["stages"][-1]))
