"""Committee methods on segmentation: Query-By-Committee (Kuo et al. 2018, as MCDAL Fig. 6 cites it [29]) and
Suggestive Annotation (Yang et al. 2017; DAAL Fig. 3's "SA").

Both train a committee of task-model copies beside the task model, in the same steps (the hook's modules); every
copy starts as the task model does (with `pretrained`, from the same pinned ImageNet body), with its own random head:
- `qbc`: the task model plus `members - 1` copies from their own initialisations, every one on the task model's
  labeled batches; a pixel's disagreement is the generalised Jensen-Shannon divergence of the members' class
  distributions (Kuo et al.'s JS-divergence heatmap), reduced per image by the mean over pixels (Kuo et al. sum
  the top-K patches of a CT stack and weigh them by a labeling-time model, which Cityscapes frames lack: our
  reading).
- `sa`: `members` copies, each trained on its own bootstrap resample of the labeled set (Yang et al. Sec. 2.2);
  uncertainty = the members' per-pixel variance averaged over classes and pixels; the `2 x budget` most uncertain
  unlabeled images are the candidates, and the budget is picked among them by greedy max set cover of the whole
  unlabeled set under cosine similarity of image descriptors (Yang et al. Eq. 1-2; the descriptor is the members'
  mean pooled last feature map, as SA takes the FCN's encoder output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.al import scores, selection
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, Strategy, register
from repro.core.seeding import derive_seed
from repro.core.train import BatchStream, TrainContext, TrainingHook, eval_mode
from repro.models import rebuild_model
from repro.spec.schema import Int, spec


@dataclass(frozen=True, kw_only=True)
class CommitteeOptions(ScoreOptions):
    members: int = spec(Int(2, 32), 4)  # committee size (neither paper's Cityscapes setting states one: our choice)


class CommitteeHook(TrainingHook):
    """One step of the task model, then one step of every member on its batch (the task model's batch, or the
    next batch of its own bootstrap resample)."""

    def __init__(self, extra: int, bootstrap: bool):
        self.extra, self.bootstrap = extra, bootstrap

    def build_modules(self, model: nn.Module, spec) -> dict[str, nn.Module]:
        # fresh copies, initialised as the task model was (its pinned pretrained backbone, if any) and otherwise
        # from the global generator `fit` seeded (each member its own draw: head, and body when not pretrained)
        return {"members": nn.ModuleList(rebuild_model(model) for _ in range(self.extra))}

    def setup(self, ctx: TrainContext) -> None:
        self.members = ctx.state["members"]
        self.opts = [ctx.make_optimizer(m.parameters()) for m in self.members]
        self.streams = None
        self.seed = int(ctx.gen.initial_seed())  # the fit's seed, before any draw

    def bootstrap_streams(self, ctx: TrainContext) -> list[BatchStream]:
        """Each member's endless batches of its own bootstrap resample of the labeled set (with replacement)."""
        labeled, streams = ctx.labeled_stream.indices, []
        for i in range(self.extra):
            g = torch.Generator(device=ctx.device).manual_seed(derive_seed(self.seed, i, "bootstrap"))
            resample = labeled[torch.randint(len(labeled), (len(labeled),), generator=g, device=ctx.device)]
            streams.append(BatchStream(resample, ctx.recipe.batch_size, g))
        return streams

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bootstrap and self.streams is None:
            self.streams = self.bootstrap_streams(ctx)
        loss = ctx.default_step(x, y)
        for i, (member, opt) in enumerate(zip(self.members, self.opts)):
            member.train()
            xb, yb = (x, y) if self.streams is None else ctx.labeled_batch(self.streams[i].next())
            with ctx.autocast():
                member_loss = ctx.task.loss(member, member(xb), yb)
            ctx.step(opt, member_loss)
        return loss


class _Committee:
    """What QBC and SA share: the options, the hook and the members' outputs."""

    Options = CommitteeOptions
    tasks = ("segmentation",)
    quick_options = {"members": 2}
    bootstrap = False
    includes_task_model = True

    def training_hook(self) -> TrainingHook:
        extra = self.options.members - (1 if self.includes_task_model else 0)
        return CommitteeHook(extra, self.bootstrap)

    def committee(self, ctx: QueryContext) -> list[nn.Module]:
        if "members" not in ctx.state:
            raise RuntimeError(f"{self.name}: query without a trained committee (ctx.state comes from fit)")
        members = list(ctx.state["members"])
        return ([ctx.model] if self.includes_task_model else []) + members

    def member_outputs(self, ctx: QueryContext, indices: np.ndarray, fn) -> torch.Tensor:
        """fn(stacked class-last member probabilities (K, n, *S, C), stacked pooled features (K, n, D)) per chunk
        (the shared chunked scorer `ctx.map`, over all members at once)."""
        task, members = ctx.task, self.committee(ctx)

        def chunk(outs):
            probs = torch.stack([task.class_last(torch.softmax(o.logits.float(), dim=1)) for o in outs])
            feats = torch.stack([task.pool(o.features.float()) for o in outs])
            return fn(probs, feats)

        with eval_mode(*members):
            return ctx.map(indices, chunk, model=_Members(members))


class _Members(nn.Module):
    """The committee as one module: its forward is every member's output (for `ctx.map`)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> list:
        return [m(x) for m in self.members]


@register("qbc")
class QBCStrategy(_Committee, ScoreStrategy):
    """Top-k of the members' mean per-pixel Jensen-Shannon divergence (`scores.committee_js_divergence`)."""

    pointwise = True

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        return self.member_outputs(ctx, candidates,
                                   lambda probs, _: ctx.task.reduce(scores.committee_js_divergence(probs)))


@register("sa")
class SuggestiveAnnotationStrategy(_Committee, Strategy):
    """The 2 x budget most uncertain (`scores.committee_variance`, mean over pixels), then max set cover of the
    unlabeled set by cosine similarity (`selection.max_cover_greedy`)."""

    bootstrap = True
    includes_task_model = False

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        self.check_budget(ctx, budget)
        unlabeled = self.candidates(ctx, budget)
        unc, desc = self.member_outputs(
            ctx, unlabeled, lambda probs, feats: (ctx.task.reduce(scores.committee_variance(probs)), feats.mean(0)))
        k_c = min(len(unlabeled), 2 * budget)
        order = torch.sort(unc, descending=True, stable=True).indices[:k_c]
        desc = F.normalize(desc, dim=1)
        sim = desc @ desc[order].T  # (all unlabeled, candidates)
        picks = order[selection.max_cover_greedy(sim, budget)]
        return np.asarray(unlabeled)[picks.cpu().numpy()].astype(np.int64)
