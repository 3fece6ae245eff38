"""The one epoch loop every training goes through, for one run (`train.fit`) or a lockstep group of runs
(`lockstep.fit_group`): epochs with a progress bar, the per-epoch loss read (one host sync per epoch), the held-out
validation split and best-epoch selection (DAL's reference protocol), early stopping, and the summary each run gets.

What one epoch of training is belongs to the trainee (`Trainee`): a run steps its method's hook through the
epoch's phases; a lockstep group steps every run's batch in one vmapped step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from repro.recipe import Recipe
from repro.seeding import derive_seed


@dataclass
class TrainResult:
    epochs: int
    steps: int
    seconds: float
    final_loss: float
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    # the method's trained modules (the hook's `build_modules`), for its query and the checkpoint
    state: nn.ModuleDict = field(default_factory=nn.ModuleDict)


def split_validation(labeled: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a seeded `fraction` of the labeled set held out (none when fraction <= 0)."""
    if fraction <= 0:
        return labeled, labeled[:0]
    perm = np.random.default_rng(derive_seed(seed, 0, "validation")).permutation(labeled)
    n_val = int(math.floor(len(labeled) * fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def labeled_pass(stream, recipe: Recipe) -> list[torch.Tensor]:
    """One epoch's labeled batches of a `train.BatchStream`: a reshuffled pass, or the recipe's fixed iterations of
    the cycled stream."""
    if recipe.epoch_iterations is None:
        return stream.pass_batches()
    return [stream.next() for _ in range(recipe.epoch_iterations)]


class Trainee(Protocol):
    """What `run_epochs` steps: `runs` runs trained together (1 for a lone run)."""

    runs: int
    has_validation: bool

    def train_epoch(self, epoch: int) -> tuple[torch.Tensor, int]:
        """One epoch of training: the (runs,) summed step losses (on the device) and the number of steps."""

    def validation_accuracy(self) -> list[float]:
        """Each run's accuracy on its held-out split (eval mode; one host sync)."""

    def snapshot(self, run: int) -> Any:
        """A copy of run `run`'s weights, to restore if this epoch stays the best."""

    def restore(self, run: int, state: Any) -> None:
        """Leave run `run`'s model with these weights (None: its weights as trained)."""

    def end_epoch(self) -> bool:
        """After-epoch work; True stops training."""


def run_epochs(trainee: Trainee, recipe: Recipe, desc: str | None = None) -> list[TrainResult]:
    """Train for the recipe's epochs (or until `end_epoch` says stop); with a validation split, each run ends with
    the weights of its best validation epoch from `recipe.best_after_epoch` on."""
    from tqdm.auto import tqdm

    start, steps, epochs_run = time.perf_counter(), 0, 0
    runs = trainee.runs
    best_acc = [-1.0] * runs
    best_epoch: list[int | None] = [None] * runs
    best_state: list[Any] = [None] * runs
    losses = [float("nan")] * runs
    # epoch bars only on a terminal (dvc logs keep the per-stage bars)
    bar = tqdm(range(recipe.epochs), desc=desc, leave=False, disable=None if desc else True, unit="ep")
    for epoch in bar:
        epochs_run = epoch + 1
        loss_sum, n_batches = trainee.train_epoch(epoch)
        steps += n_batches
        if trainee.has_validation and epoch >= recipe.best_after_epoch:
            for r, acc in enumerate(trainee.validation_accuracy()):
                if acc > best_acc[r]:
                    best_acc[r], best_epoch[r], best_state[r] = acc, epoch, trainee.snapshot(r)
        stop = trainee.end_epoch()
        if desc is not None or epoch == recipe.epochs - 1 or stop:
            losses = (loss_sum / max(1, n_batches)).tolist()  # one host sync per epoch
            bar.set_postfix(loss=f"{sum(losses) / runs:.3f}")
        if stop:
            break
    for r in range(runs):
        trainee.restore(r, best_state[r])
    share = (time.perf_counter() - start) / runs
    return [TrainResult(epochs_run, steps, share, losses[r], best_epoch[r],
                        best_acc[r] if best_state[r] is not None else None) for r in range(runs)]
