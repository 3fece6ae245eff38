"""LL + RD (DAAL Sec. 4.5, Fig. 5): "our representativeness discriminator is added to LL without RSS, which
forms an one-stage framework". Learning Loss's loss-prediction module is the selector: besides LL's ranking
loss it plays DAAL's representativeness game (Alg. 1 with rDis only): its scores weight the unlabeled
features the VAE summarises (s_u * x_u -> x_tilde_u), rDis tells the summary from the original, and the
selector with the encoder minimises reconstruction + prior + sparsity (Eqs. 1, 3, 5-7).

Reading choices: the selector's score is s_u = sigmoid(predicted loss) (DAAL's scores live in (0, 1); LL's
prediction is unbounded); the DAAL step runs beside every LL step (one-stage, DAAL's `schedule: joint`), on
the task model's detached penultimate features standardised with running statistics (as `daal`), the LL
module reading the detached stage outputs of the same unlabeled batch; the query takes the top-K predicted
loss over the whole unlabeled pool (LL without RSS).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.al.losses.daal_alg1 import alg1_losses, alg1_optimizers, alg1_update
from repro.al.strategies.base import register
from repro.al.strategies.ll import LearningLossStrategy, LLHook, LLOptions, stage_inputs
from repro.core.train import TrainContext, TrainingHook, frozen_batchnorm_stats
from repro.models.nets.daal import Discriminator, FeatureStandardiser, FeatureVAE
from repro.spec.schema import Float, Int, Optional, spec


@dataclass(frozen=True, kw_only=True)
class LLRDOptions(LLOptions):
    subset: int | None = spec(Optional(Int(1)), None)  # LL *without* RSS: the discriminator brings diversity
    sigma: float = spec(Float(0.0, 1.0, lo_open=True), 0.2)  # DAAL Eq. 6
    lr: float = spec(Float(0.0, 1.0, lo_open=True), 5e-4)  # DAAL Sec. 4.2: Adam
    hidden: int = spec(Int(1), 512)  # DAAL's MLP width (as `daal`)
    latent: int = spec(Int(1), 32)
    dropout: float = spec(Float(0.0, 1.0, hi_open=True), 0.4)


class LLRDHook(LLHook):
    """LL's step, then one DAAL Alg. 1 step (rDis only) with the LL module as the selector."""

    uses_unlabeled = True

    def build_modules(self, model, spec) -> dict[str, torch.nn.Module]:
        d, o = model.feature_dim, self.o
        return {**super().build_modules(model, spec), "vae": FeatureVAE(d, o.hidden, o.latent, o.dropout),
                "rdis": Discriminator(d, o.hidden), "standardiser": FeatureStandardiser(d)}

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        s = ctx.state  # the LL module is Alg. 1's selector
        self.rater_opt, self.decoder_opt, self.dis_opt = alg1_optimizers(ctx, self.o.lr, s["loss_module"], s["vae"],
                                                                         [s["rdis"]])
        self.rdis_trace: list[torch.Tensor] = []  # per epoch: rDis balanced accuracy, summary vs original
        self._acc_sum, self._acc_n = torch.zeros((), device=ctx.device), 0

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = super().training_step(ctx, x, y)
        if ctx.unlabeled_stream is None:
            return loss
        s = ctx.state
        with torch.no_grad(), ctx.autocast(), frozen_batchnorm_stats(ctx.model):
            out_l, out_u = ctx.model(x), ctx.model(ctx.next_unlabeled())
        stages_u = tuple(t.detach() for t in stage_inputs(out_u))
        fl, fu = ctx.task.pool(out_l.features.float()), ctx.task.pool(out_u.features.float())
        s["standardiser"].update(torch.cat([fl, fu]), momentum=0.1)
        fl, fu = s["standardiser"](fl), s["standardiser"](fu)
        with ctx.autocast():
            scores = torch.sigmoid(s["loss_module"](stages_u).float())
            out = alg1_losses(scores, fl, fu, s["vae"], None, s["rdis"], self.o.sigma)
        alg1_update(out, self.rater_opt, self.decoder_opt, self.dis_opt)
        self._acc_sum += out.rdis_accuracy.float()
        self._acc_n += 1
        return loss

    def on_epoch_end(self, ctx: TrainContext) -> None:
        super().on_epoch_end(ctx)
        if self._acc_n:
            self.rdis_trace.append(self._acc_sum / self._acc_n)
        self._acc_sum, self._acc_n = torch.zeros_like(self._acc_sum), 0


@register("ll+rd")
class LLRDStrategy(LearningLossStrategy):
    """Top-K predicted loss of the LL module trained with LL's ranking loss and DAAL's rDis game."""

    tasks = ("classification", "segmentation")
    Options = LLRDOptions

    def training_hook(self) -> TrainingHook:
        return LLRDHook(self.options)
