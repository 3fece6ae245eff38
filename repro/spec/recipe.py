"""The training recipe (what the shared trainer reads) and its learning-rate schedule."""

from __future__ import annotations

from dataclasses import dataclass

from repro.spec.schema import Bool, Choice, Float, Int, ListOf, Optional, spec

# on-device augmentations (repro.data.augment), in the order they are applied; named here so params validate
# without importing torch. frame_crop / frame_center: a random / the centre crop of a stored frame to the model's
# input (segmentation frames held larger than the input); ssd: SSD's photometric distortion, expand, min-IoU crop
# and flip of images with their boxes.
AUGMENTATIONS = ("crop224", "frame_crop", "frame_center", "crop", "flip", "rotate", "ssd")
# which a task's targets can follow (classification labels follow anything)
TASK_AUGMENTATIONS = {
    "classification": ("crop224", "crop", "flip", "rotate"),
    "segmentation": ("frame_crop", "frame_center", "flip"),
    "detection": ("flip", "ssd"),
}
FRAME_CROPS = ("frame_crop", "frame_center")


def _augmentations():
    return AUGMENTATIONS


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How the task model is trained (the one shared trainer reads only this)."""

    optimizer: str = spec(Choice(("sgd", "adam")))
    lr: float = spec(Float(0.0, 10.0, lo_open=True))
    momentum: float = spec(Float(0.0, 1.0, hi_open=True), 0.0)
    weight_decay: float = spec(Float(0.0, 1.0), 0.0)
    nesterov: bool = spec(Bool(), False)
    batch_size: int = spec(Int(1, 65_536))
    epochs: int = spec(Int(1, 100_000))
    # None: an epoch is one pass over the labeled set; N: an epoch is N iterations of a cycled labeled stream
    # (MCDAL's and VAAL's reference codes).
    epoch_iterations: int | None = spec(Optional(Int(1, 10_000_000)), None)
    milestones: tuple[int, ...] = spec(ListOf(Int(1, 100_000), unique=True, increasing=True), ())
    gamma: float = spec(Float(0.0, 1.0, lo_open=True), 0.1)
    warmup_epochs: int = spec(Int(0, 100_000), 0)
    augment: tuple[str, ...] = spec(ListOf(Choice(_augmentations), unique=True), ())
    eval_batch_size: int = spec(Int(1, 1_000_000), 1024)
    # DAL's reference: hold out a random share of the labeled set, evaluate the best-validation weights
    # among the epochs after `best_after_epoch`.
    validation_fraction: float = spec(Float(0.0, 1.0, hi_open=True), 0.0)
    best_after_epoch: int = spec(Int(0, 100_000), 0)
    bf16: bool = spec(Bool(), True)  # bf16 autocast on CUDA (numerics only)
    # bf16 autocast of the training steps on a CPU too (opt-in; AMX / AVX512-BF16 CPUs train LeNet ~1.9x faster).
    # It changes rounding, so it stays off in every profile; `python -m repro bench precision` measures it against
    # fp32 with paired seeds. Evaluation and queries stay fp32 on a CPU.
    bf16_cpu: bool = spec(Bool(), False)


def learning_rate(recipe: Recipe, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """Multi-step decay per epoch (gamma at each milestone epoch, 0-indexed as MultiStepLR stepped per epoch),
    with a per-iteration linear warm-up over the first `warmup_epochs` (lr * t / T, t = 1..T)."""
    if epoch < recipe.warmup_epochs:
        total = recipe.warmup_epochs * steps_per_epoch
        return recipe.lr * (epoch * steps_per_epoch + step_in_epoch + 1) / total
    decays = sum(1 for m in recipe.milestones if m <= epoch)
    return recipe.lr * recipe.gamma**decays
