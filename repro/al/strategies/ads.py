"""ADS (Fu et al., AAAI 2021): two sigmoid classifiers on a shared feature; Alg. 1 per active-learning stage:
train on L once before the first epoch, then every epoch (i) agreement: classifiers fixed, features aligned on
U (Eqs. 2, 4, 5), (ii) discrepancy: features fixed, classifiers pushed apart on U while fitting L (Eqs. 6-8
with Eq. 1), (iii) training on L (Eq. 1); selection by E(u) (Eq. 3) among a random subset of M = 10,000.

The agreement and discrepancy steps each make one full pass over that random unlabeled subset (the same
subset the query scores; the official code's unlabeled loader); the discrepancy step draws a labeled batch
from the cycled labeled stream for every unlabeled batch ("the loss of labeled examples and unlabeled
examples are mixed together and train the model once").

Options cover the ablations: Table 1 (`weighting` none / entropy / calibration x `selection` random /
entropy, and `classifiers: 1` for the single-classifier baseline) and Table 2 (`entropy_from` mean / max /
min: which entropy the calibration weight uses; selection always uses Eq. 3's mean). Reading choices: each
head is Linear(D, C) + sigmoid on the backbone feature (the paper names no architecture; the code's
prototype heads are not described in the text); the task prediction is the mean of the two heads' scores.
The official code's readings (fumengying19/AAAI21-ADS, branch `code`, utils/train_ADS.py; the variant `ads-code`)
are options: `renormalise` (E(u) on scores renormalised to sum 1), `log2`, and `epoch_steps: code`: Alg. 1's
steps 2 and 3 as the code's `train_conv` / `train_f` run them, in the same order as the paper's (train_init on L
in epoch 0 only, then agreement -> discrepancy -> L every epoch): the calibration weight divided by 128 (the
code's batch size, whatever the batch) and the batch mean taken, 1/128 of Eqs. 5 / 8; and a new SGD at every
iteration (no momentum carried, the recipe's base rate never decayed, weight decay on the step's trainable
subset). Classification only: the official code has no detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro.al.losses import ads as ads_losses
from repro.al.strategies.ads_detection import ADSDetectionHook, classifier_detections, image_scores
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.core.train import TrainContext, TrainingHook, eval_mode
from repro.models.base import Backbone, final_linear
from repro.spec.schema import Bool, Choice, Float, Int, Optional, spec


@dataclass(frozen=True, kw_only=True)
class ADSOptions(ScoreOptions):
    subset: int | None = spec(Optional(Int(1)), 10_000)  # ADS: M = 10,000 random unlabeled (train and query)
    classifiers: int = spec(Int(1, 2), 2)  # 1: the single-classifier baseline of Table 1 (no agreement/discrepancy)
    weighting: str = spec(Choice(("none", "entropy", "calibration")), "calibration")  # Table 1 columns
    selection: str = spec(Choice(("entropy", "random")), "entropy")  # Table 1 "Ent. (sel.)"
    entropy_from: str = spec(Choice(("mean", "max", "min")), "mean")  # Table 2: the entropy inside the weights
    tau: float = spec(Float(0.0, 10.0), 0.1)  # Eqs. 4, 7
    renormalise: bool = spec(Bool(), False)  # code reading: E(u) on head scores renormalised to sum to 1
    log2: bool = spec(Bool(), False)  # code reading: log2 (the paper writes log)
    # code: steps 2-3 as train_ADS.py runs them (alignment terms x 1/128, a fresh SGD every iteration); same order
    epoch_steps: str = spec(Choice(("paper", "code")), "paper")
    # detection (repro/al/strategies/ads_detection.py): the anchors per image that enter, and in how many of the
    # recipe's epochs the agreement / discrepancy passes run ("trained for 30 epochs"; None: every epoch)
    top_k: int = spec(Int(1), 1000)
    adversarial_epochs: int | None = spec(Optional(Int(1)), None)


class DualSigmoidHead(nn.Module):
    """Two (or one) sigmoid classifiers f1, f2 on the feature; forward gives the mean of their scores."""

    def __init__(self, in_features: int, num_classes: int, classifiers: int = 2):
        super().__init__()
        self.f = nn.ModuleList(nn.Linear(in_features, num_classes) for _ in range(classifiers))

    def logits(self, features: torch.Tensor) -> list[torch.Tensor]:
        return [f(features) for f in self.f]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sigmoid(z.float()) for z in self.logits(features)]).mean(0)


def _trunk_params(model: Backbone):
    head = {id(p) for p in model.head.parameters()}
    return [p for p in model.parameters() if id(p) not in head]


PHASE_DRIVERS = {"labeled": "labeled", "agreement": "unlabeled", "discrepancy": "unlabeled+labeled"}

# `epoch_steps: code`: train_ADS.py divides the calibration weight by 128 (its batch size, cfg.TRAIN.BATCH, written
# as a constant: it stays 128 for a smaller batch) before the batch mean: (w / 128) / n per example, w / n^2 at
# batch 128, where Eqs. 5 / 8 with Eqs. 4 / 7 give w / n.
CODE_WEIGHT_DIVISOR = 128


def selection_entropy(opts: ADSOptions, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """E(u) of Eq. 3 (the mean over the two heads) for sample selection."""
    return ads_losses.ads_entropy(s1, s2, "mean", 2.0 if opts.log2 else None, opts.renormalise)


class ADSHook(TrainingHook):
    uses_unlabeled = True

    def __init__(self, opts: ADSOptions):
        self.o = opts
        self.uses_unlabeled = opts.classifiers == 2

    def epoch_phases(self, epoch: int) -> tuple[str, ...]:
        """Alg. 1: L once before the first epoch, then agreement -> discrepancy (+ L) -> L every epoch (the
        official code's order too: train_init in epoch 0 only, then train_conv, train_f, train_init)."""
        if self.o.classifiers == 1:
            return ("labeled",)
        if epoch == 0:
            return ("labeled", "agreement", "discrepancy", "labeled")
        return ("agreement", "discrepancy", "labeled")

    def phase_driver(self, phase: str) -> str:
        return PHASE_DRIVERS[phase]

    def setup(self, ctx: TrainContext) -> None:
        fresh = {}
        if self.o.epoch_steps == "code":
            # the code builds a new SGD(lr=cfg.TRAIN.LR, momentum=0.9, weight_decay=5e-4) on the step's trainable
            # parameters at every iteration: its momentum buffer starts as the first gradient, so each update is
            # -lr (g + wd p), and the fresh MultiStepLR never reaches its milestone: plain SGD at the base rate
            fresh = {"kind": "sgd", "lr": ctx.recipe.lr, "schedule": "constant", "momentum": 0.0, "nesterov": False}
        self.feat_opt = ctx.make_optimizer(_trunk_params(ctx.model), **fresh)
        self.cls_opt = ctx.make_optimizer(ctx.model.head.parameters(), **fresh)

    def alignment_loss(self, w: torch.Tensor, per_example: torch.Tensor) -> torch.Tensor:
        """The weighted agreement / discrepancy term: sum_u w L' (Eqs. 5, 8; w carries the 1/n), or, with
        `epoch_steps: code`, torch.mean((n w / 128).detach() * L'), 1/128 of it at any batch size."""
        if self.o.epoch_steps == "code":
            return torch.mean((w * per_example.shape[0] / CODE_WEIGHT_DIVISOR).detach() * per_example)
        return (w * per_example).sum()

    def weight_entropy(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """E(u) inside the calibration weights (Eqs. 4, 7): mean (Eq. 3), max or min over heads (Table 2)."""
        return ads_losses.ads_entropy(s1, s2, self.o.entropy_from, 2.0 if self.o.log2 else None, self.o.renormalise)

    def selection_entropy(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return selection_entropy(self.o, s1, s2)

    def _bce(self, model, features, y) -> torch.Tensor:
        return sum(ads_losses.ads_bce(z, y) for z in model.head.logits(features)).mean()  # Eq. 1

    def training_step(self, ctx: TrainContext, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        model, o = ctx.model, self.o
        if ctx.phase == "labeled":  # train g, f1, f2 on L with Eq. 1
            with ctx.autocast():
                loss = self._bce(model, model.embed(x).float(), y)
            opt = ctx.task_optimizer
        elif ctx.phase == "agreement":  # fix f1, f2; update g to agree on U (Eqs. 2, 4, 5)
            with ctx.autocast():
                z1, z2 = model.head.logits(model.embed(ctx.next_unlabeled()).float())
            s1, s2 = torch.sigmoid(z1.float()), torch.sigmoid(z2.float())
            n = s1.shape[0]
            if o.weighting == "none":
                w = torch.full((n,), 1.0 / n, device=s1.device)
            else:
                w = ads_losses.ads_weights(self.weight_entropy(s1.detach(), s2.detach()), n, o.tau)[0]
            loss = self.alignment_loss(w, ads_losses.ads_agreement_loss(s1, s2))
            opt = self.feat_opt
        else:  # discrepancy: fix g; update f1, f2 to disagree on U while fitting L (Eqs. 6-8 + Eq. 1)
            with torch.no_grad(), ctx.autocast():
                fu = model.embed(ctx.next_unlabeled()).float()
                fl = model.embed(x).float()
            z1, z2 = model.head.logits(fu)
            s1, s2 = torch.sigmoid(z1), torch.sigmoid(z2)
            n = s1.shape[0]
            if o.weighting == "calibration":
                w = ads_losses.ads_weights(self.weight_entropy(s1.detach(), s2.detach()), n, o.tau)[1]
            else:
                w = torch.full((n,), 1.0 / n, device=s1.device)
            loss = self.alignment_loss(w, ads_losses.ads_discrepancy_loss(s1, s2)) + self._bce(model, fl, y)
            opt = self.cls_opt
        return ctx.step(opt, loss)


class ADSTaskHook(TrainingHook):
    """The ADS hook of the data's task: classification (`ADSHook`) or detection (`ADSDetectionHook`), chosen
    from the dataset spec in `build_modules` or the context in `setup` (whichever `fit` calls first)."""

    uses_unlabeled = True

    def __init__(self, opts: ADSOptions):
        self.o, self.active = opts, None

    def _choose(self, task: str) -> TrainingHook:
        if self.active is None:
            self.active = ADSDetectionHook(self.o) if task == "detection" else ADSHook(self.o)
            self.uses_unlabeled = self.active.uses_unlabeled
        return self.active

    def build_modules(self, model, spec):
        return self._choose(getattr(spec, "task", "classification")).build_modules(model, spec)

    def setup(self, ctx: TrainContext) -> None:
        self._choose(ctx.task.name).setup(ctx)

    def epoch_phases(self, epoch: int):
        return self.active.epoch_phases(epoch)

    def phase_driver(self, phase: str) -> str:
        return self.active.phase_driver(phase)

    def training_step(self, ctx, x, y):
        return self.active.training_step(ctx, x, y)


@register("ads")
class ADSStrategy(ScoreStrategy):
    """Top-k of E(u) (ADS Eq. 3, `ads_losses.ads_entropy`) among a seeded random subset; or random (Table 1).
    Detection: `repro.al.strategies.ads_detection` (SSD, the top-1,000 anchors per image)."""

    Options = ADSOptions
    quick_options = {"subset": None}
    tasks = ("classification", "detection")

    def adapt_model(self, model: Backbone) -> Backbone:
        if hasattr(model, "ssd"):  # detection: f1, f2 are separate heads (the hook's modules)
            return model
        linear = final_linear(model)
        model.head = DualSigmoidHead(linear.in_features, linear.out_features, self.options.classifiers)
        return model

    def training_hook(self) -> TrainingHook:
        return ADSTaskHook(self.options)

    def training_unlabeled(self, pool, seed: int, stage: int) -> np.ndarray:
        return self.random_subset(pool, seed, stage)  # the agreement/discrepancy passes read the query's subset

    def prediction_maps(self, ctx: QueryContext, indices: np.ndarray) -> dict[str, np.ndarray]:
        """ADS Fig. 7 (detection): the images and the two adversarial classifiers' detections on them."""
        if ctx.task.name != "detection" or "ads_heads" not in ctx.state:
            raise NotImplementedError("ads draws its two classifiers' predictions on detection only (ADS Fig. 7)")
        idx = torch.as_tensor(np.asarray(indices), device=ctx.data.train_x.device)
        raw = ctx.data.train_x[idx]
        with eval_mode(ctx.model, ctx.state["ads_heads"]):
            arrays = classifier_detections(ctx.model, ctx.state["ads_heads"], ctx.augmenter.eval(raw))
        return {"images": raw.cpu().numpy(), **{k: v.numpy() for k, v in arrays.items()}}

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        if self.options.selection == "random":
            return torch.rand(len(candidates), generator=ctx.generator("ads-random"), device=ctx.data.train_x.device)
        if ctx.task.name == "detection":
            if "ads_heads" not in ctx.state:
                raise RuntimeError("ads: query without trained adversarial heads (ctx.state comes from fit)")
            heads = ctx.state["ads_heads"]

            def chunk(out):
                z = heads.logits(out.feature_maps)
                return image_scores(self.options, torch.sigmoid(z[0].float()), torch.sigmoid(z[-1].float()))

            with eval_mode(heads):
                return ctx.map(candidates, chunk)
        _, features = ctx.predict(candidates)
        with torch.no_grad():
            s = [torch.sigmoid(z.float()) for z in ctx.model.head.logits(features)]
        return selection_entropy(self.options, s[0], s[-1])
