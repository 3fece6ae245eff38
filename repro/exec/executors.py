"""An experiment's runs as ONE submitit job array: Slurm (`--executor slurm`) or local processes (`--executor
local`, what the tests use). Each task is one (method, seed) run through `repro.al.loop.run`, so it writes the same
checkpoints and record as a local run (resumable, atomic, idempotent); the submitting command waits for the
whole array, so a DVC stage that calls it still owns its outputs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXECUTORS = ("slurm", "local")
DEFAULT_TIMEOUT_MIN = 24 * 60


class ExecutorError(ValueError):
    """A bad `--executor` option or combination (reported as one line)."""


@dataclass(frozen=True)
class ArrayOptions:
    executor: str  # "slurm" | "local"
    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    array_parallelism: int | None = None
    timeout_min: int = DEFAULT_TIMEOUT_MIN


def array_options(executor: str | None, partition: str | None = None, gpus_per_run: int | None = None,
                  cpus_per_run: int | None = None, array_parallelism: int | None = None,
                  timeout_min: int | None = None, jobs: int | None = None, torchrun: bool = False
                  ) -> ArrayOptions | None:
    """The validated options of `run --executor ...`; None without --executor (runs stay in this process)."""
    slurm_only = {"--partition": partition, "--array-parallelism": array_parallelism}
    either = {"--gpus-per-run": gpus_per_run, "--cpus-per-run": cpus_per_run, "--timeout-min": timeout_min}
    if executor is None:
        for flag, value in {**slurm_only, **either}.items():
            if value is not None:
                raise ExecutorError(f"{flag} needs --executor slurm" + ("" if flag in slurm_only else " (or local)"))
        return None
    if executor not in EXECUTORS:
        raise ExecutorError(f"--executor {executor!r}: expected one of {list(EXECUTORS)}")
    if torchrun:
        raise ExecutorError("--executor cannot run under torchrun (WORLD_SIZE > 1): submit from one process")
    if jobs is not None:
        raise ExecutorError("--jobs sets local worker processes; with --executor use --array-parallelism (slurm)")
    if executor == "local":
        for flag, value in slurm_only.items():
            if value is not None:
                raise ExecutorError(f"{flag} is a Slurm option (--executor slurm); --executor local starts "
                                    "every run at once on this machine")
    elif shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise ExecutorError("--executor slurm: no `sbatch` (or `srun`) on this machine's PATH; submit from a Slurm "
                            "login node (or use --executor local)")
    for flag, value, low in (("--gpus-per-run", gpus_per_run, 0), ("--cpus-per-run", cpus_per_run, 1),
                             ("--array-parallelism", array_parallelism, 1), ("--timeout-min", timeout_min, 1)):
        if value is not None and value < low:
            raise ExecutorError(f"{flag} {value}: expected an integer >= {low}")
    gpus = gpus_per_run if gpus_per_run is not None else (1 if executor == "slurm" else 0)
    return ArrayOptions(executor, partition, gpus, cpus_per_run, array_parallelism,
                        timeout_min or DEFAULT_TIMEOUT_MIN)


def log_folder(params: Any, experiment: str) -> Path:
    """Where submitit keeps the array's pickles and logs (beside the checkpoints, outside DVC's outs)."""
    return Path(params.checkpoint_dir).resolve() / "submitit" / experiment


def run_one(params_path: str, profile: str | None, experiment: str, method: str, seed: int, cwd: str
            ) -> dict[str, Any]:
    """One array task: (re)load params as the submitting command did, apply the run settings (params'
    `threads` torch threads, the deterministic knob: `--cpus-per-run` only reserves CPUs), run (or resume) one
    run, return its last stage. Top level and argument-only, so submitit pickles it by reference."""
    os.chdir(cwd)  # params.yaml's relative paths (data/, results/, checkpoints/) mean what they meant there
    from repro.al import loop
    from repro.al.methods import load_params
    from repro.core.determinism import apply_run_settings

    params = load_params(params_path, profile)
    apply_run_settings(params)
    return loop.run(params, experiment, method, seed, progress=False)["stages"][-1]


@dataclass
class Finished:
    method: str
    seed: int
    last: dict[str, Any] | None  # the run's last stage; None when it failed
    error: str | None = None  # one line: what failed and where its log is


def run_array(params: Any, params_path: str | Path, profile: str | None, experiment: str,
              runs: list[tuple[str, int]], opts: ArrayOptions) -> Iterator[Finished]:
    """Submit `runs` as one job array and yield each as it finishes (failed ones too, with their error line)."""
    import submitit
    from submitit.helpers import as_completed

    folder = log_folder(params, experiment)
    ex = submitit.AutoExecutor(folder=folder, cluster=opts.executor)
    ex.update_parameters(name=f"repro-{experiment}", timeout_min=opts.timeout_min, nodes=1, tasks_per_node=1,
                         gpus_per_node=opts.gpus_per_run,
                         **({"cpus_per_task": opts.cpus_per_run} if opts.cpus_per_run else {}))
    if opts.executor == "slurm":
        ex.update_parameters(slurm_partition=opts.partition,
                             **({"slurm_array_parallelism": opts.array_parallelism} if opts.array_parallelism else {}))
    n = len(runs)
    jobs = ex.map_array(run_one, [str(Path(params_path).resolve())] * n, [profile] * n, [experiment] * n,
                        [m for m, _ in runs], [s for _, s in runs], [os.getcwd()] * n)
    which = {job.job_id: run for job, run in zip(jobs, runs)}
    try:
        for job in as_completed(jobs, poll_frequency=1.0 if opts.executor == "local" else 15.0):
            method, seed = which[job.job_id]
            error = job.exception()
            if error is None:
                yield Finished(method, seed, job.result())
            else:
                yield Finished(method, seed, None, f"{experiment}/{method}/seed{seed} failed (job {job.job_id}): "
                                                   f"{_last_line(error)}; log: {job.paths.stderr}")
    except BaseException:  # interrupted (Ctrl-C, a killed DVC stage): no run goes on unattended
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        raise


def _last_line(error: BaseException) -> str:
    """The failing run's own error (the last line of the traceback submitit relays), else the first line."""
    parts = str(error).split("-" * 22)  # submitit frames the task's traceback with these rules
    body = parts[1] if len(parts) >= 3 else str(error)
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    return lines[-1] if len(parts) >= 3 else lines[0]
