"""Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019; "LL4AL"; no official code: the common
reimplementation is Mephisto405/Learning-Loss-for-Active-Learning@3c11ff7).

A loss-prediction module on the task model's four ResNet stage outputs (per stage: global average pool ->
Linear(c, 128) -> ReLU; concatenated -> Linear(4 * 128, 1)) is trained jointly with the task model on
mean CE + lambda * LossPredLoss (`repro.al.losses.ll`), one backward, two SGD optimizers on the recipe's
settings and schedule. After `detach_fraction` of the epochs (the reference's `epoch > 120` of 200,
0-indexed) the stage features are detached: the module keeps training but stops shaping the backbone.
Query: top-K predicted loss (eval mode, no augmentation) among a seeded random subset of M = 10,000
unlabeled examples ("random subset sampling", RSS; `subset: null` is DAAL Fig. 5's "LL w/o RSS").

`preselect: coreset` is DAAL Fig. 5's "LL + Core-set": greedy k-center (Core-set) on the penultimate
features first picks `preselect_size` representative candidates (default 2 x budget: DAAL gives no size),
then LL takes the top-K predicted loss among them.

The task model and the module are re-initialised every stage (the suite's protocol); the unofficial reference
code builds them once per trial and keeps them across cycles (Mephisto405/Learning-Loss-for-Active-Learning@3c11ff7), a reading not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.al.losses.ll import learning_loss_objective, loss_prediction_loss
from repro.al.selection import kcenter_greedy
from repro.al.strategies.base import BudgetError, QueryContext, ScoreOptions, ScoreStrategy, register
from repro.core.train import TrainContext, TrainingHook, device_layout, eval_mode
from repro.spec.schema import Choice, Float, Int, Optional, spec

HIDDEN = 128  # LL4AL Fig. 3 / reference lossnet: FC 128 per stage


@dataclass(frozen=True, kw_only=True)
class LLOptions(ScoreOptions):
    subset: int | None = spec(Optional(Int(1)), 10_000)  # LL4AL: random subset M = 10,000 (null: "LL w/o RSS")
    margin: float = spec(Float(0.0, 1e3), 1.0)  # xi
    weight: float = spec(Float(0.0, 1e3), 1.0)  # lambda
    detach_fraction: float = spec(Float(0.0, 1.0), 0.6)  # features detached when epoch > round(f * epochs)
    preselect: str = spec(Choice(("none", "coreset")), "none")  # "coreset": DAAL Fig. 5 "LL + Core-set"
    preselect_size: int | None = spec(Optional(Int(1)), None)  # core-set candidates (None: 2 x budget)


def stage_inputs(out) -> tuple[torch.Tensor, ...]:
    """The module's inputs: the backbone's stage outputs; backbones without stages (LeNet, VGG) give their
    penultimate features as the single "stage" (our choice: the paper only describes multi-block nets)."""
    return tuple(out.stages) if len(out.stages) else (out.features,)


class LossPredictionModule(nn.Module):
    """LL4AL Sec. 3.2 / Fig. 3: per input feature map GAP -> FC(c, 128) -> ReLU, concatenated, FC -> loss."""

    def __init__(self, channels: Sequence[int], hidden: int = HIDDEN):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in channels)
        self.out = nn.Linear(hidden * len(channels), 1)

    def forward(self, stages: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(stages) != len(self.fcs):
            raise ValueError(f"loss module built for {len(self.fcs)} stage(s), got {len(stages)}")
        # global average pool over every spatial axis (a (N, D) feature passes through)
        pooled = [s.flatten(2).mean(2) if s.dim() > 2 else s for s in stages]
        return self.out(torch.cat([F.relu(fc(p)) for fc, p in zip(self.fcs, pooled)], 1)).squeeze(1)


def stage_channels(model: nn.Module, spec) -> tuple[int, ...]:
    """Channel count of each module input, from a no-grad eval-mode forward pass on one zero image of the
    dataset's shape (eval mode: BatchNorm running statistics stay untouched); feature width without a spec."""
    if spec is None:
        return (model.feature_dim,)
    p = next(model.parameters())
    with torch.no_grad(), eval_mode(model):
        out = model(torch.zeros(1, spec.channels, spec.height, spec.width, device=p.device, dtype=p.dtype))
    return tuple(int(s.shape[1]) for s in stage_inputs(out))


def detach_epoch(fraction: float, epochs: int) -> int:
    """Features are detached in epochs > this (0-indexed): round(0.6 * 200) = 120, the reference's EPOCHL."""
    return int(round(fraction * epochs))


class LLHook(TrainingHook):
    """Per labeled batch: mean CE + lambda * LossPredLoss, one backward, a step of both optimizers."""

    def __init__(self, opts: LLOptions):
        self.o = opts

    def build_modules(self, model: nn.Module, spec) -> dict[str, nn.Module]:
        return {"loss_module": LossPredictionModule(stage_channels(model, spec))}

    def setup(self, ctx: TrainContext) -> None:
        self.module = ctx.state["loss_module"]
        self.opt = ctx.make_optimizer(self.module.parameters())  # LL4AL: same SGD + schedule as the task model
        self.rank_trace: list[torch.Tensor] = []  # mean ranking loss per epoch (device scalars)
        self._rank_sum, self._n = torch.zeros((), device=ctx.device), 0

    def detached(self, ctx: TrainContext) -> bool:
        return ctx.epoch > detach_epoch(self.o.detach_fraction, ctx.recipe.epochs)

    def objective(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, ranking term) of one labeled batch, with the graph (no step)."""
        with ctx.autocast():
            out = ctx.model(x)
            stages = stage_inputs(out)
            if self.detached(ctx):
                stages = tuple(s.detach() for s in stages)
            pred = self.module(stages)
        # each example's own task loss (dense: the image's mean pixel loss; detection: its SSD loss)
        ce = ctx.task.per_example_loss(ctx.model, out, y)
        if ctx.task.name == "classification":
            return learning_loss_objective(ce, pred.float(), self.o.margin, self.o.weight)
        # dense tasks: L_target is the task's own batch loss (pixel-mean CE; SSD's MultiBox normalised by the
        # batch's positives), the per-image losses are the ranking targets (LL4AL Sec. 3.3 / 4.2)
        rank = loss_prediction_loss(pred.float(), ce, self.o.margin)
        return ctx.task_loss(out, y) + self.o.weight * rank, rank

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total, rank = self.objective(ctx, x, y)
        self._rank_sum += rank.detach()
        self._n += 1
        return ctx.step((ctx.task_optimizer, self.opt), total)  # one backward, both optimizers

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if self._n:
            self.rank_trace.append(self._rank_sum / self._n)
        self._rank_sum, self._n = torch.zeros_like(self._rank_sum), 0


@torch.no_grad()
def predicted_losses(ctx: QueryContext, indices: np.ndarray) -> torch.Tensor:
    """The loss module's prediction for train_x[indices]: task model and module in eval mode, fp32, plain
    (unaugmented, normalised) images, in eval-size batches."""
    if "loss_module" not in ctx.state:
        raise RuntimeError("ll: query without a trained loss_module (ctx.state comes from fit with its hook)")
    module, model = ctx.state["loss_module"], ctx.model
    model.eval()
    module.eval()
    device = ctx.data.train_x.device
    idx = torch.as_tensor(np.asarray(indices), device=device)
    preds = [torch.zeros(0, device=device)]
    for chunk in idx.split(ctx.recipe.eval_batch_size):
        x = device_layout(ctx.augmenter.eval(ctx.data.train_x[chunk]), device)
        preds.append(module(stage_inputs(model(x))).float())
    return torch.cat(preds)


@register("ll")
class LearningLossStrategy(ScoreStrategy):
    """Top-K of the predicted loss (LL4AL Sec. 3.1) among the random subset (or the core-set preselection)."""

    tasks = ("classification", "segmentation", "detection")
    Options = LLOptions
    pointwise = True  # the score is; `preselect: coreset` only narrows the candidates, in `candidates`

    def training_hook(self) -> TrainingHook:
        return LLHook(self.options)

    def candidates(self, ctx: QueryContext, budget: int) -> np.ndarray:
        pool = super().candidates(ctx, budget)
        if self.options.preselect == "none":
            return pool
        return self.coreset_preselection(ctx, pool, budget)

    def coreset_preselection(self, ctx: QueryContext, pool: np.ndarray, budget: int) -> np.ndarray:
        """Greedy k-center (Core-set) picks of `preselect_size` (default 2 x budget) among `pool`, the labeled
        set as the initial centers, on the task model's penultimate features; sorted pool indices."""
        size = self.options.preselect_size or 2 * budget
        if size < budget:
            raise BudgetError(f"ll: preselect_size {size} is smaller than the query budget {budget}")
        if size >= len(pool):
            return pool
        labeled = ctx.pool.labeled
        idx = np.concatenate([labeled, pool])
        features = ctx.embeddings(idx)
        mask = torch.zeros(len(idx), dtype=torch.bool, device=features.device)
        mask[: len(labeled)] = True
        picks = kcenter_greedy(features, mask, size).cpu().numpy()
        return np.sort(idx[picks]).astype(np.int64)

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        return predicted_losses(ctx, candidates)

