"""MAL, "Minimax Active Learning" (Ebrahimi, Gan, Salahi, Darrell, arXiv 2012.10467): an encoder F and a cosine
classifier C learn the labeled data (Eq. 1) while playing a minimax entropy game on unlabeled data through a
gradient reversal layer (Eq. 2: C maximises the entropy, F minimises it); a discriminator D learns labeledness
on F's features (Eq. 3). Alg. 2 queries the unlabeled examples D most confidently calls unlabeled that also have
the highest entropy under C; Alg. 3 trains the task model M initialised from F.

How it maps onto one `fit` (one active-learning stage): the first `mal_share` of the recipe's epochs are Alg. 1
(phase "mal": per labeled batch one CE step on F and C, one minimax-entropy step on an unlabeled batch, one D
step, all with Adam); the remaining epochs are Alg. 3 (phase "task"): the task model's trunk is loaded from F,
its linear head stays fresh (supp. Sec. B: T = F + one linear layer), and M is fine-tuned with CE on the
labeled set by the task optimizer, its schedule restarting at the task phase (milestones and warm-up count
task-phase epochs). F lives in `state["encoder"]` beside C and D, so the query scores with the F that C and D
were trained with (Alg. 2: theta_D(F(x)), theta_C(F(x))), not with M's fine-tuned trunk.

Fig. 5's ablations are options: `minimax: false` (F and C learn the labeled data only; D still trained and
used), `discriminator: false` with `selection: uncertainty` (no D; highest entropy under C), `selection:
uncertainty` (D trained, not used), `selection: diversity` (D's ranking only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from repro.al import scores
from repro.al.losses import mal as mal_losses
from repro.al.parameters import MAL_SUPP_TABLE2, ParameterConfig
from repro.al.strategies.base import QueryContext, ScoreOptions, Strategy, register
from repro.core.infer import predict
from repro.core.train import TrainContext, TrainingHook, eval_mode, frozen_batchnorm_stats
from repro.models.base import final_linear
from repro.models.nets.mal import (
    CosineClassifier,
    DenseCosineClassifier,
    DenseDiscriminator,
    Discriminator,
    Encoder,
    load_trunk,
    paper_modules,
    positions_first,
)
from repro.spec.recipe import Recipe, learning_rate
from repro.spec.schema import Bool, Choice, ConfigError, Float, Int, Optional, spec


@dataclass(frozen=True, kw_only=True)
class MALOptions(ScoreOptions):
    minimax: bool = spec(Bool(), True)  # Fig. 5 "ablating the minimax entropy optimization": false
    discriminator: bool = spec(Bool(), True)  # Fig. 5 "ablating the discriminator": false (+ selection uncertainty)
    selection: str = spec(Choice(mal_losses.SELECTIONS), "both")  # Alg. 2; Fig. 5 uncertainty-/diversity-only
    # Not given by the paper: MME's defaults (Saito et al. 2019, whose modules MAL's counts reproduce).
    temperature: float = spec(Float(0.0, 10.0, lo_open=True), 0.05)  # T of Eq. 1
    lam: float = spec(Float(0.0, 100.0), 0.1)  # weight of Eq. 2 for both players (MME's lamda, GRL coefficient 1)
    # Sec. 4.1: "Adam is used as the optimizer for F, C, and D"; no rate given: VAAL's Adam 5e-4 (same group).
    lr: float = spec(Float(0.0, 1.0, lo_open=True), 5e-4)
    hidden: int | None = spec(Optional(Int(0, 1_000_000)), None)  # C's hidden width; None: min(512, d // 2); 0: Eq. 1's one W
    reverse_at: str = spec(Choice(("input", "hidden")), "input")  # GRL before C (paper) or after C's hidden layer (MME)
    mal_share: float = spec(Float(0.0, 1.0, lo_open=True, hi_open=True), 0.5)  # share of the epochs for Alg. 1

    def __post_init__(self):
        if not self.discriminator and self.selection != "uncertainty":
            raise ConfigError("selection", self.selection, "without a discriminator (discriminator: false) MAL "
                              "selects by C's entropy alone: use selection: uncertainty (Fig. 5, 'ablating D')")


class MALHook(TrainingHook):
    """Alg. 1 then Alg. 3 within one fit (see the module docstring). Per MAL-phase labeled batch: Alg. 1 lines
    4-6 (Eq. 1 step on F and C), 7-9 (Eq. 2 step on F and C through the GRL), 10-11 (Eq. 3 step on D)."""

    uses_unlabeled = True

    def __init__(self, options: MALOptions):
        self.o = options
        # per MAL epoch, device scalars: mean C-entropy of the unlabeled batches before their minimax step, D's loss
        self.entropy_trace: list[torch.Tensor] = []
        self.discriminator_trace: list[torch.Tensor] = []

    def build_modules(self, model, spec) -> dict[str, torch.nn.Module]:
        o, d = self.o, model.feature_dim
        if hasattr(model, "up"):  # segmentation (Sec. 3.2): prototype 1x1 filters, a CNN discriminator
            mods = {"encoder": Encoder(model),
                    "classifier": DenseCosineClassifier(d, model.num_classes, model.up, o.temperature)}
            if o.discriminator:
                mods["discriminator"] = DenseDiscriminator(d)
            return mods
        mods = {"encoder": Encoder(model),
                "classifier": CosineClassifier(d, final_linear(model).out_features, o.hidden, o.temperature, o.reverse_at)}
        if o.discriminator:
            mods["discriminator"] = Discriminator(d)
        return mods

    def setup(self, ctx: TrainContext) -> None:
        ctx.state.train()
        self.enc, self.cls = ctx.state["encoder"], ctx.state["classifier"]
        self.disc = ctx.state["discriminator"] if self.o.discriminator else None
        adam = dict(kind="adam", lr=self.o.lr, schedule="constant", weight_decay=0.0)
        self.fc_opt = ctx.make_optimizer([*self.enc.parameters(), *self.cls.parameters()], **adam)
        self.d_opt = ctx.make_optimizer(self.disc.parameters(), **adam) if self.disc is not None else None
        epochs = ctx.recipe.epochs
        self.mal_epochs = 1 if epochs == 1 else min(epochs - 1, max(1, round(self.o.mal_share * epochs)))
        self.task_start = 0 if epochs == 1 else self.mal_epochs
        self.trunk_loaded = False
        self._reset_sums(ctx.device)

    def _reset_sums(self, device) -> None:
        self._ent_sum, self._d_sum, self._n = torch.zeros((), device=device), torch.zeros((), device=device), 0

    def epoch_phases(self, epoch: int) -> tuple[str, ...]:
        if self.task_start == 0:  # a one-epoch recipe: both algorithms in it
            return ("mal", "task")
        return ("mal",) if epoch < self.mal_epochs else ("task",)

    def learning_rate(self, recipe: Recipe, epoch: int, step: int, steps_per_epoch: int, n_train: int) -> float:
        """The task optimizer's recipe schedule, counted from the start of the task phase (Alg. 3)."""
        return learning_rate(recipe, max(0, epoch - self.task_start), step, steps_per_epoch)

    def minimax_entropy(self, ctx: TrainContext, xu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_Ent of Eq. 2: C descends it, F through the GRL ascends it; F's features and C's mean entropy on
        the batch, both detached)."""
        with ctx.autocast():
            fu = self.enc.embed(xu)
        logits = positions_first(self.cls(fu.float(), reverse=1.0))  # dense: every pixel a row (pixel mean)
        loss = mal_losses.minimax_entropy_loss(logits, self.o.lam)
        return loss, fu.detach().float(), scores.entropy(F.softmax(logits.detach(), -1)).mean()

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if ctx.phase == "task":
            if not self.trunk_loaded:
                load_trunk(ctx.model, self.enc)  # Alg. 3 line 1
                self.trunk_loaded = True
            return ctx.default_step(x, y)  # Alg. 3 lines 3-4: CE of M = F + linear head
        with ctx.autocast():
            fl = self.enc.embed(x)
        ce = mal_losses.cosine_cross_entropy(*positions_first(self.cls(fl.float()), y))  # dense: pixel average
        ctx.step(self.fc_opt, ce)  # Alg. 1 lines 4-6
        xu = ctx.next_unlabeled()
        if self.o.minimax:
            ent_loss, fu, ent = self.minimax_entropy(ctx, xu)
            ctx.step(self.fc_opt, ent_loss)  # lines 7-9: C ascends the entropy, F (reversed) descends it
            self._ent_sum += ent
        else:  # F and C learn the labeled data only; F's BN statistics stay those of the labeled data
            with torch.no_grad(), ctx.autocast(), frozen_batchnorm_stats(self.enc):
                fu = self.enc.embed(xu).float()
            with torch.no_grad():
                self._ent_sum += scores.entropy(F.softmax(positions_first(self.cls(fu)), -1)).mean()
        if self.disc is not None:  # lines 10-11: L_D after F's updates (a fresh pass, BN statistics untouched)
            with torch.no_grad(), ctx.autocast(), frozen_batchnorm_stats(self.enc):
                fl, fu = self.enc.embed(x).float(), self.enc.embed(xu).float()
            d_loss = mal_losses.labeledness_loss(self.disc(fl), self.disc(fu))
            self._d_sum += ctx.step(self.d_opt, d_loss)
        self._n += 1
        return ce.detach()

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if self._n:
            self.entropy_trace.append(self._ent_sum / self._n)
            self.discriminator_trace.append(self._d_sum / self._n)
        self._reset_sums(ctx.device)


@register("mal")
class MALStrategy(Strategy):
    """Alg. 2: the budget candidates both most confidently unlabeled under D and of highest entropy under C
    (`repro.al.losses.mal.mal_selection`: the smallest max of the two ranks, then the smallest rank sum, then the
    lowest pool index), scored with the MAL-trained F, C, D from `ctx.state`."""

    Options = MALOptions
    tasks = ("classification", "segmentation")

    def adapt_model(self, model):
        """Sec. 4.1: "ResNet18 with Xavier initialization": Glorot-uniform weights, zero biases, for every
        convolution and linear layer of the task model (F is a copy of its trunk). The segmentation DRN keeps
        its own initialisation (Sec. 4.2 states none)."""
        if hasattr(model, "up"):
            return model
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
        return model

    def training_hook(self) -> TrainingHook:
        return MALHook(self.options)

    @classmethod
    def parameter_configs(cls) -> list:
        """MAL supp. Table 2's settings (CIFAR-100; torchvision ResNet-18 body and VGG-16-BN features), counted
        on the meta device, beside the default MCDAL Table 1 setting."""

        return super().parameter_configs() + [
            ParameterConfig(cls.name, f"CIFAR-100, {arch} (MAL supp. Sec. B)", paper_modules(arch, 100, "meta"),
                            MAL_SUPP_TABLE2[arch], "MAL supp. Table 2", total=False)
            for arch in ("resnet18", "vgg16")]

    def scores(self, ctx: QueryContext, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(C's entropy, D's labeledness logit or None) of train_x[indices], F in eval mode, fp32."""
        needed = ("encoder", "classifier") + (("discriminator",) if self.options.selection != "uncertainty" else ())
        missing = [k for k in needed if k not in ctx.state]
        if missing:
            raise RuntimeError(f"mal: query without trained {missing} (ctx.state comes from fit with its hook)")
        cls, disc = ctx.state["classifier"], ctx.state["discriminator"] if "discriminator" in needed else None
        if ctx.task.name != "classification":  # chunk by chunk: C's pixel-mean entropy and D's logit per image
            def chunk(out):
                f = out.features.float()
                ent = ctx.task.reduce(scores.entropy(F.softmax(cls(f), dim=1).movedim(1, -1)))
                return ent, (disc(f) if disc is not None else torch.zeros_like(ent))

            with eval_mode(cls, *([disc] if disc is not None else [])):
                ent, lab = ctx.map(indices, chunk, model=ctx.state["encoder"])
            return ent, lab if disc is not None else None
        _, feats = predict(ctx.state["encoder"], ctx.data.train_x, indices, ctx.augmenter,
                           ctx.recipe.eval_batch_size, bf16=False)
        with torch.no_grad():
            ent = scores.entropy(F.softmax(cls(feats), -1))
            lab = disc(feats) if disc is not None else None
        return ent, lab

    def query(self, ctx: QueryContext, budget: int) -> np.ndarray:
        self.check_budget(ctx, budget)
        cand = np.sort(np.asarray(self.candidates(ctx, budget), dtype=np.int64))
        ent, lab = self.scores(ctx, cand)
        pos = mal_losses.mal_selection(ent, lab, budget, self.options.selection)
        return cand[pos.cpu().numpy()]
