"""MCDAL (Cho et al., TNNLS 2022): auxiliary heads on the detached penultimate feature, trained to disagree
on unlabeled data; acquisition by classifier discrepancy relative to the labeled set.

`mcdal` is the paper's reading (Eqs. 2-5); `mcdal-code` the official code's (chojw/Maximum-Classifier-Discrepancy-for-Active-Learning@92e1b14).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.al.losses import mcdal as mcdal_losses
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.core.tasks import get_task
from repro.core.train import TrainContext, TrainingHook, eval_mode, frozen_batchnorm_stats, learning_rate
from repro.models.base import ModelOutput, final_linear
from repro.spec.recipe import Recipe
from repro.spec.schema import Choice, Int, spec


@dataclass(frozen=True, kw_only=True)
class MCDALOptions(ScoreOptions):
    heads: int = spec(Int(2, 16), 2)  # auxiliary heads k (MCDAL Fig. 8: 2, 4, 6, 8)
    distance: str = spec(Choice(mcdal_losses.DISCREPANCIES), "l1")  # d(., .) (MCDAL Fig. 7: l1, l2, kl)


def head_probs(heads: nn.ModuleList, main_logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(1 + k, N, C) probabilities, main classifier first. Dense maps (N, C, H, W) are reduced to (N, C) by
    averaging each classifier's softmax mask before any discrepancy (MCDAL Sec. 4.2), not after."""
    if main_logits.dim() > 2:
        seg = get_task("segmentation")
        return torch.stack([seg.class_probs(main_logits)] + [seg.class_probs(h(features)) for h in heads])
    return torch.stack([F.softmax(main_logits.float(), -1)] + [F.softmax(h(features).float(), -1) for h in heads])


def auxiliary_head(model: nn.Module) -> nn.Module:
    """One auxiliary classifier shaped like the task model's: a Linear for classifiers; for DRN a 1x1 conv with
    DRN's frozen bilinear upsampling ("the same as decoder layers of DRN", MCDAL Sec. 4.2)."""
    if hasattr(model, "up"):
        seg = model.seg
        return nn.Sequential(nn.Conv2d(seg.in_channels, seg.out_channels, 1), copy.deepcopy(model.up))
    if not any(isinstance(m, nn.Linear) for m in model.head.modules()):
        raise ValueError("mcdal: no auxiliary-head reading for this model (classifiers and DRN segmentation only)")
    linear = final_linear(model)
    return nn.Linear(linear.in_features, linear.out_features)


class MCDALHook(TrainingHook):
    """Per labeled batch: one task step on CE (Eq. 1), then the heads minimise CE - L_dis (Eqs. 2-3) on the
    detached features of a labeled and an unlabeled batch; only the heads' optimizer steps for that loss."""

    uses_unlabeled = True

    def __init__(self, heads: int, distance: str, code_reading: bool = False):
        self.k, self.distance, self.code_reading = heads, distance, code_reading
        self.discrepancy_trace: list[torch.Tensor] = []  # mean L_dis on unlabeled per epoch (device scalars)

    def build_modules(self, model: nn.Module, spec) -> dict[str, nn.Module]:
        return {"heads": nn.ModuleList(auxiliary_head(model) for _ in range(self.k))}

    def setup(self, ctx: TrainContext) -> None:
        self.heads = ctx.state["heads"]
        self.opt = ctx.make_optimizer(self.heads.parameters())
        self._dis_sum, self._dis_n = torch.zeros((), device=ctx.device), 0

    def _dis(self, probs: torch.Tensor) -> torch.Tensor:
        return mcdal_losses.pairwise_discrepancy(probs, self.distance).mean()

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with ctx.autocast():
            out = ctx.model(x)
            task_loss = ctx.task_loss(out, y)
        ctx.step(ctx.task_optimizer, task_loss)
        feats_l = out.features.detach().float()

        def head_ce(h):  # the task's loss on a head's output (cross-entropy; dense: per pixel, 255 ignored)
            return ctx.task.loss(ctx.model, ModelOutput(h(feats_l), None), y)

        if self.code_reading:  # the code's separate CE-only head step before the discrepancy step
            ctx.step(self.opt, sum(head_ce(h) for h in self.heads))
            with torch.no_grad(), ctx.autocast():  # the code re-runs the net on the labeled batch too
                feats_l = ctx.model(x).features.float()
        xu = ctx.next_unlabeled()
        # Paper: the heads "do not effect the training of the task model": this train-mode pass leaves the
        # BN running statistics alone. The official code's pass updates them (`mcdal-code`).
        bn_guard = contextlib.nullcontext() if self.code_reading else frozen_batchnorm_stats(ctx.model)
        with torch.no_grad(), ctx.autocast(), bn_guard:
            out_u = ctx.model(xu)
        feats_u, main_u = out_u.features.float(), out_u.logits.float()
        ce = sum(head_ce(h) for h in self.heads)
        dis = self._dis(head_probs(self.heads, main_u, feats_u))
        ctx.step(self.opt, ce - dis)
        self._dis_sum += dis.detach()
        self._dis_n += 1
        return task_loss.detach()

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if self._dis_n:
            self.discrepancy_trace.append(self._dis_sum / self._dis_n)
        self._dis_sum, self._dis_n = torch.zeros_like(self._dis_sum), 0


class CodeWarmupHook(MCDALHook):
    def learning_rate(self, recipe: Recipe, epoch: int, step: int, steps_per_epoch: int, n_train: int) -> float:
        """The official code's warm-up as it behaves: WarmUpLR's length is len(labeled_loader) = n // batch
        iterations per warm-up epoch, but it is stepped on every one of the epoch's fixed iterations, so the
        rate climbs past the base rate (to about 10x at 5,000 labels) before the multi-step schedule resumes."""
        if epoch < recipe.warmup_epochs:
            total = max(1, n_train // recipe.batch_size) * recipe.warmup_epochs
            return recipe.lr * (epoch * steps_per_epoch + step + 1) / total
        return learning_rate(recipe, epoch, step, steps_per_epoch)


@register("mcdal")
class MCDALStrategy(ScoreStrategy):
    """Paper reading: S(x_u) = |D(x_u) - mean_L D(x_l)| (Eq. 5), D = sum of d over all classifier pairs with
    d the per-class mean L1 of Eq. 4 (or `distance`)."""

    tasks = ("classification", "segmentation")
    Options = MCDALOptions
    code_reading = False

    def training_hook(self) -> TrainingHook:
        cls = CodeWarmupHook if self.code_reading else MCDALHook
        return cls(self.options.heads, self.options.distance, self.code_reading)

    def discrepancies(self, ctx: QueryContext, indices: np.ndarray) -> torch.Tensor:
        heads, distance = ctx.state["heads"], self.options.distance
        if ctx.task.name == "classification":
            logits, features = ctx.predict(indices)
            with torch.no_grad():
                d = mcdal_losses.pairwise_discrepancy(head_probs(heads, logits, features), distance)
        else:  # chunk by chunk: each classifier's map reduced to (N, C) on the device, then the discrepancy
            with eval_mode(heads):
                d = ctx.map(indices, lambda out: mcdal_losses.pairwise_discrepancy(
                    head_probs(heads, out.logits, out.features.float()), distance))
        # the code's acquisition L1 sums over classes: C times the training-time mean
        return d * ctx.data.num_classes if self.code_reading and self.options.distance == "l1" else d

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        if "heads" not in ctx.state:
            raise RuntimeError("mcdal: query without trained heads (ctx.state comes from fit with its hook)")
        d_u = self.discrepancies(ctx, candidates)
        d_l = self.discrepancies(ctx, ctx.pool.labeled)
        if self.code_reading:
            return d_u - d_l.mean()  # no absolute value: the same ranking as top-k D(x_u)
        return mcdal_losses.mcdal_acquisition(d_u, d_l)


@register("mcdal-code")
class MCDALCodeStrategy(MCDALStrategy):
    """Official code's reading: no |.| in Eq. 5, L1 summed over classes at acquisition (mean at training),
    a CE-only head step before each discrepancy step, and its over-shooting warm-up."""

    code_reading = True
