"""DAAL (Wang et al., "Dual Adversarial Network for Deep Active Learning"): a ScoreNet scores the task model's
penultimate features of unlabeled images; a VAE reconstructs the features weighted by 1 - s_u and by s_u;
an uncertainty discriminator (labeled vs reconstructed unlabeled) and a representativeness discriminator
(original vs summary) play against it (Alg. 1, Eqs. 1-7); the query takes the top-k ScoreNet scores.

Reading choices: Alg. 1 takes the task model's features X_L, X_U as its input and the segmentation setting
trains the task model and DAAL for different numbers of epochs, so by default (`schedule: after`) DAAL is
trained after the task model, on the final model's eval-mode features of the labeled and unlabeled pool (the
features the query scores); `schedule: joint` instead takes one DAAL step per task-model batch on the stepped task model's
detached features of that labeled batch and an unlabeled batch (`batch_size`, `epochs` and `epoch_over`
then follow the task model's batches). A DAAL epoch is one pass over the labeled features with unlabeled batches cycled (the
task model's epoch; `epoch_over: unlabeled` passes over the unlabeled features instead). `discriminators`
selects the Fig. 6 ablations (uDis only / rDis only). DAAL's networks see the features standardised per
dimension with the pool's statistics (`standardise`; the paper states no scale, raw features diverge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro.al.losses import daal as daal_losses
from repro.al.losses.daal_alg1 import alg1_losses, alg1_optimizers, alg1_update
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.core.train import FeatureData, TrainContext, TrainingHook, eval_mode, fit, frozen_batchnorm_stats
from repro.models.nets.daal import Discriminator, FeatureStandardiser, FeatureVAE, ScoreNet
from repro.spec.recipe import Recipe
from repro.spec.schema import Bool, Choice, Float, Int, Optional, spec

DISCRIMINATORS = ("both", "udis", "rdis")
TRACE_KEYS = ("recon", "prior", "length", "dpp", "discriminators", "udis_accuracy", "rdis_accuracy", "mean_score")


@dataclass(frozen=True, kw_only=True)
class DAALOptions(ScoreOptions):
    discriminators: str = spec(Choice(DISCRIMINATORS), "both")  # Fig. 6: both, uDis only, rDis only
    sigma: float = spec(Float(0.0, 1.0, lo_open=True), 0.2)  # Eq. 6 sigma (Sec. 4.2: 0.2)
    lr: float = spec(Float(0.0, 1.0, lo_open=True), 5e-4)  # Adam (Sec. 4.2)
    batch_size: int = spec(Int(1), 128)  # "batch size during adversarial learning" (Sec. 4.2)
    epochs: int | None = spec(Optional(Int(1)), None)  # None: as many as the task model (Sec. 4.2: both 150)
    epoch_over: str = spec(Choice(("labeled", "unlabeled")), "labeled")
    schedule: str = spec(Choice(("after", "joint")), "after")
    hidden: int = spec(Int(1), 512)  # width of every hidden MLP layer (not stated in the paper)
    latent: int = spec(Int(1), 32)  # VAE code size (not stated in the paper)
    dropout: float = spec(Float(0.0, 1.0, hi_open=True), 0.4)  # Sec. 3.1: ScoreNet and VAE layers
    gan_form: str = spec(Choice(daal_losses.GAN_FORMS), "minimax")  # Eqs. 2, 4: the decoder minimises log(1 - D)
    dpp_eps: float = spec(Float(0.0, 1.0, lo_open=True), 1e-6)  # jitter keeping Eq. 7's numerator positive
    standardise: bool = spec(Bool(), True)  # features standardised per dimension (not in the paper; see nets)


class DAALHook(TrainingHook):
    """The task model trains as usual; DAAL's networks train by Alg. 1 after it (or beside it: `joint`)."""

    uses_unlabeled = True

    def __init__(self, opts: DAALOptions):
        self.o = opts
        self.trace: list[dict[str, torch.Tensor]] = []  # per DAAL epoch: mean of TRACE_KEYS (device scalars)

    def build_modules(self, model: nn.Module, spec) -> dict[str, nn.Module]:
        d, o = model.feature_dim, self.o
        mods: dict[str, nn.Module] = {"scorenet": ScoreNet(d, o.hidden, o.dropout),
                                      "vae": FeatureVAE(d, o.hidden, o.latent, o.dropout)}
        if o.standardise:
            mods["standardiser"] = FeatureStandardiser(d)
        if o.discriminators in ("both", "udis"):
            mods["udis"] = Discriminator(d, o.hidden)
        if o.discriminators in ("both", "rdis"):
            mods["rdis"] = Discriminator(d, o.hidden)
        return mods

    def setup(self, ctx: TrainContext) -> None:
        if self.o.schedule == "after" and ctx.recipe.validation_fraction > 0:
            raise ValueError("daal (schedule: after) trains on the last epoch's features, but a validation split "
                             "reloads the best epoch's weights: use validation_fraction: 0 or schedule: joint")
        s = ctx.state
        self.rater_opt, self.decoder_opt, self.dis_opt = alg1_optimizers(
            ctx, self.o.lr, s["scorenet"], s["vae"], [s[k] for k in ("udis", "rdis") if k in s])
        self._reset_sums(ctx.device)

    def _reset_sums(self, device) -> None:
        self._sums = {k: torch.zeros((), device=device) for k in TRACE_KEYS}
        self._n = 0

    def daal_step(self, ctx: TrainContext, x_l: torch.Tensor, x_u: torch.Tensor) -> torch.Tensor:
        """One pass of Alg. 1's loop body (lines 10-16) on a batch of labeled and unlabeled features."""
        s, o = ctx.state, self.o
        with ctx.autocast():
            scores = s["scorenet"](x_u)  # line 10
            out = alg1_losses(scores, x_l, x_u, s["vae"], s["udis"] if "udis" in s else None,
                              s["rdis"] if "rdis" in s else None, o.sigma, o.gan_form, o.dpp_eps)  # lines 11-12
        alg1_update(out, self.rater_opt, self.decoder_opt, self.dis_opt)  # lines 14-16
        for k, v in (("recon", out.recon), ("prior", out.prior), ("length", out.length), ("dpp", out.dpp),
                     ("discriminators", out.discriminators.detach()), ("udis_accuracy", out.udis_accuracy),
                     ("rdis_accuracy", out.rdis_accuracy), ("mean_score", scores.detach().mean())):
            self._sums[k] += v.float()
        self._n += 1
        return out.rater.detach()

    def _close_epoch(self) -> None:
        if self._n:
            self.trace.append({k: v / self._n for k, v in self._sums.items()})
            self._reset_sums(next(iter(self._sums.values())).device)

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.o.schedule == "after":
            return ctx.default_step(x, y)
        with ctx.autocast():
            out = ctx.model(x)
            task_loss = ctx.task_loss(out, y)
        ctx.step(ctx.task_optimizer, task_loss)
        if ctx.unlabeled_stream is not None:
            xu = ctx.next_unlabeled()
            # both pools' features from the same (stepped) task model, so uDis cannot tell them apart by version
            with torch.no_grad(), ctx.autocast(), frozen_batchnorm_stats(ctx.model):
                fl, fu = (ctx.task.pool(ctx.model(b).features.float()) for b in (x, xu))
            if "standardiser" in ctx.state:  # running statistics of the features DAAL sees (momentum 0.1)
                norm = ctx.state["standardiser"]
                norm.update(torch.cat([fl, fu]), momentum=0.1)
                fl, fu = norm(fl), norm(fu)
            self.daal_step(ctx, fl, fu)
        return task_loss.detach()

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if self.o.schedule == "joint":
            self._close_epoch()
        elif ctx.epoch == ctx.recipe.epochs - 1:
            self.train_on_features(ctx)

    def train_on_features(self, ctx: TrainContext) -> None:
        """Alg. 1 on the trained task model's eval-mode features of the labeled and unlabeled pool, through the
        shared trainer (FeatureData: labeled features first, then unlabeled)."""
        if ctx.unlabeled_stream is None or ctx.labeled_stream is None:
            return
        with eval_mode(ctx.model):
            feats = [ctx.task.embeddings(ctx.model, ctx.data.train_x, stream.indices, ctx.augmenter,
                                         ctx.recipe.eval_batch_size, False)
                     for stream in (ctx.labeled_stream, ctx.unlabeled_stream)]
        if "standardiser" in ctx.state:
            norm = ctx.state["standardiser"]
            norm.update(torch.cat(feats))
            feats = [norm(f) for f in feats]
        n_l, n_u = len(feats[0]), len(feats[1])
        data = FeatureData(torch.cat(feats), torch.zeros(n_l + n_u, dtype=torch.long, device=feats[0].device))
        recipe = Recipe(optimizer="adam", lr=self.o.lr, batch_size=self.o.batch_size, bf16=ctx.recipe.bf16,
                        bf16_cpu=ctx.recipe.bf16_cpu, epochs=ctx.recipe.epochs if self.o.epochs is None else self.o.epochs)
        seed = int(torch.randint(2**31 - 1, (1,), generator=ctx.gen, device=ctx.gen.device))  # once per fit
        fit(ctx.state["scorenet"], data, np.arange(n_l), recipe, seed, hook=Alg1OnFeatures(self),
            unlabeled=np.arange(n_l, n_l + n_u), state=ctx.state)


class Alg1OnFeatures(TrainingHook):
    """One Alg. 1 step per batch of fixed features (`DAALHook.train_on_features`): a DAAL epoch is one pass over
    the labeled features with unlabeled batches cycled, or (`epoch_over: unlabeled`) the other way round. The
    steps use the outer hook's optimizers (constant Adam rates), so the inner task optimizer never steps."""

    uses_unlabeled = True

    def __init__(self, outer: DAALHook):
        self.outer = outer

    def phase_driver(self, phase: str) -> str:
        return "labeled" if self.outer.o.epoch_over == "labeled" else "unlabeled+labeled"

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.outer.daal_step(ctx, x, ctx.next_unlabeled())

    def on_epoch_end(self, ctx: TrainContext) -> None:
        self.outer._close_epoch()


@register("daal")
class DAALStrategy(ScoreStrategy):
    """Top-k of the ScoreNet's scores (DAAL Sec. 3.1), ranked by its logit (same order as s_u, no ties from
    a saturated sigmoid). Segmentation (Sec. 4.4): DAAL's networks see the DRN's final feature map average-pooled
    per image (our reading: the paper names no dense input)."""

    tasks = ("classification", "segmentation")
    Options = DAALOptions
    pointwise = True

    def training_hook(self) -> TrainingHook:
        return DAALHook(self.options)

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        if "scorenet" not in ctx.state:
            raise RuntimeError("daal: query without a trained ScoreNet (ctx.state comes from fit with its hook)")
        features = ctx.embeddings(candidates)  # dense: feature maps pooled per image (our reading)
        if "standardiser" in ctx.state:
            features = ctx.state["standardiser"](features)
        with torch.no_grad(), eval_mode(ctx.state["scorenet"]):
            return ctx.state["scorenet"].logit(features).float()
