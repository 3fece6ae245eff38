"""VAAL (Sinha, Ebrahimi & Darrell, ICCV 2019): a beta-VAE embeds labeled and unlabeled images in one latent
space while a discriminator learns to tell the two pools apart there; the VAE plays against it (L^adv_VAE:
everything should look labeled). The query takes the unlabeled examples the discriminator finds least
likely to be labeled: top-k of -D(mu(x)).

Per labeled batch, as the official code (sinhasam/vaal@67263f3): one task step (CE, the recipe's optimizer
and schedule), `vae_steps` = 2 VAE steps (the second on a fresh labeled and unlabeled batch), `adv_steps` = 1
discriminator step on mu computed without gradient; VAE and discriminator each Adam 5e-4, constant rate.
Inputs of any size are resized to the VAE's 32x32 (VAAL issues #5, #21).

DAAL's variants (DAAL Sec. 4.5, Fig. 4): `features: task` ("VAAL + TF": the VAE encodes the task model's
penultimate features instead of images, an MLP VAE of ours, see nets/vae.py `FeatureVAE`) and `subset:
10000` ("VAAL + RSS": LL4AL's random subset of 10,000 unlabeled examples scored at each query).

Scoring: the default scores in eval mode (BatchNorm's running statistics, each score depends on its example
only). The official sampler never calls `.eval()` (sinhasam/vaal@67263f3:solver.py:50 sets train mode,
sampler.py:18-20 scores), so its BatchNorm normalises by each shuffled unlabeled batch of 128
(main.py:98-100, arguments.py:8): `scoring: batch` (the variant `vaal-code`) does that, leaving the running
statistics untouched (the official updates them, but main.py:94 builds a new VAE every split, so they are
never read).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro.al.losses import vae as vae_losses
from repro.al.strategies.base import QueryContext, ScoreOptions, ScoreStrategy, register
from repro.core.train import TrainContext, TrainingHook, eval_mode
from repro.models.nets.vae import ConvVAE, FeatureVAE, LatentDiscriminator
from repro.spec.schema import Choice, Float, Int, spec

ADAM_LR = 5e-4  # VAE and discriminator (VAAL and SRAAL codes)
FEATURES = ("image", "task")
SCORING = ("eval", "batch")


@dataclass(frozen=True, kw_only=True)
class VAALOptions(ScoreOptions):
    latent_dim: int = spec(Int(1, 4096), 32)  # VAAL code's z_dim for CIFAR (MCDAL Table 1's 34.29M uses it)
    beta: float = spec(Float(0.0, 1e6), 1.0)  # KL weight of the beta-VAE
    adversary_weight: float = spec(Float(0.0, 1e6), 1.0)  # lambda_2 (`adversary_param`) on L^adv_VAE
    vae_steps: int = spec(Int(1, 16), 2)  # `num_vae_steps`
    adv_steps: int = spec(Int(1, 16), 1)  # `num_adv_steps`
    # VAAL's code sums the KL over batch and latent dims (beside a per-element mean MSE); "mean": batch mean
    kl_reduction: str = spec(Choice(vae_losses.KL_REDUCTIONS), "sum")
    features: str = spec(Choice(FEATURES), "image")  # "task": DAAL's VAAL + TF
    vae_width: float = spec(Float(0.0, 16.0, lo_open=True), 1.0)  # VAE widths x this (1 = the paper's)
    # "batch": the official sampler's train-mode BatchNorm, statistics of seeded random batches of
    # `score_batch_size` (VAAL's 128), running statistics untouched; "eval": running statistics (pointwise)
    scoring: str = spec(Choice(SCORING), "eval")
    score_batch_size: int = spec(Int(1, 1 << 20), 128)


@contextlib.contextmanager
def batch_statistics(*modules: nn.Module):
    """Modules in train mode inside, every BatchNorm normalising by the batch's own statistics without
    updating its running statistics (track_running_stats off); modes and flags restored after."""
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    norms = [m for m, _ in saved if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    for mod in modules:
        mod.train()
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(norms, tracked):
            m.track_running_stats = flag
        for m, mode in saved:
            m.training = mode


def task_outputs(ctx: TrainContext, x: torch.Tensor):
    """The task model's output for x in eval mode without gradient (fp32): what the query sees, for the
    labeled and the unlabeled batch alike (train-mode passes would differ between the pools by BN
    statistics)."""
    with torch.no_grad(), eval_mode(ctx.model), ctx.autocast():
        out = ctx.model(x)
    return out.logits.float(), out.features.float()


class VAALHook(TrainingHook):
    """One task step, `vae_steps` VAE steps, `adv_steps` discriminator steps per labeled batch. Keeps
    per-epoch means of the VAE's reconstruction MSE and of the discriminator's loss (device scalars)."""

    uses_unlabeled = True
    hidden_layers = 1  # discriminator: VAAL's Linear(z,512)-ReLU-Linear(512,512)-ReLU-Linear(512,1)

    def __init__(self, opts):
        self.o = opts
        self.recon_trace: list[torch.Tensor] = []
        self.discriminator_trace: list[torch.Tensor] = []

    def build_vae(self, model: nn.Module, spec) -> nn.Module:
        if getattr(self.o, "features", "image") == "task":
            return FeatureVAE(model.feature_dim, self.o.latent_dim, self.o.vae_width)
        if spec is None:
            raise ValueError(f"{type(self).__name__}: the image VAE needs image data (a DatasetSpec); "
                             "use features: task on feature data")
        return ConvVAE(spec.channels, self.o.latent_dim, self.o.vae_width)

    def build_modules(self, model: nn.Module, spec) -> dict[str, nn.Module]:
        return {"vae": self.build_vae(model, spec),
                "discriminator": LatentDiscriminator(self.o.latent_dim, self.hidden_layers)}

    def schedule(self, ctx: TrainContext):
        return "constant"

    def setup(self, ctx: TrainContext) -> None:
        self.vae, self.disc = ctx.state["vae"].train(), ctx.state["discriminator"].train()
        self.vae_opt, self.disc_opt = (
            ctx.make_optimizer(m.parameters(), "adam", ADAM_LR, self.schedule(ctx), weight_decay=0.0)
            for m in (self.vae, self.disc)
        )
        self._zero(ctx.device)

    def _zero(self, device) -> None:
        self._recon = torch.zeros((), device=device)
        self._disc = torch.zeros((), device=device)
        self._n_vae = self._n_disc = 0

    def vae_input(self, ctx: TrainContext, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.o, "features", "image") == "task":
            return ctx.task.pool(task_outputs(ctx, x)[1])
        return x

    def generator_loss(self, out_l, out_u, d_l, d_u, y) -> torch.Tensor:
        """VAAL's total VAE loss: L^trd_VAE on L and on U (MSE + beta KL each) + lambda_2 L^adv_VAE, the
        discriminator's BCE toward "labeled" (1) for both pools."""
        o = self.o
        trd = sum(vae_losses.vae_objective(out.recon, out.target, out.mu, out.logvar, o.beta, 1.0,
                                           o.kl_reduction) for out in (out_l, out_u))
        adv = vae_losses.adversarial_bce(d_l, 1.0) + vae_losses.adversarial_bce(d_u, 1.0)
        return trd + o.adversary_weight * adv

    def discriminator_targets(self, ctx: TrainContext, xu: torch.Tensor):
        """VAAL's L_D: labeled -> 1, unlabeled -> 0."""
        return 1.0, 0.0

    def training_step(self, ctx: TrainContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        task_loss = ctx.default_step(x, y)
        xu = ctx.next_unlabeled()
        for i in range(self.o.vae_steps):
            if i:  # a fresh labeled and unlabeled batch for every extra step (the reference)
                (x, y), xu = ctx.next_labeled(), ctx.next_unlabeled()
            in_l, in_u = self.vae_input(ctx, x), self.vae_input(ctx, xu)
            with ctx.autocast():
                out_l, out_u = self.vae(in_l), self.vae(in_u)
                d_l, d_u = self.disc.logits(out_l.mu), self.disc.logits(out_u.mu)
            ctx.step(self.vae_opt, self.generator_loss(out_l, out_u, d_l, d_u, y))
            with torch.no_grad():
                self._recon += 0.5 * (vae_losses.reconstruction_mse(out_l.recon, out_l.target)
                                      + vae_losses.reconstruction_mse(out_u.recon, out_u.target))
            self._n_vae += 1
        for i in range(self.o.adv_steps):
            if i:
                (x, y), xu = ctx.next_labeled(), ctx.next_unlabeled()
            with torch.no_grad(), ctx.autocast():
                mu_l = self.vae.encode(self.vae_input(ctx, x))[0]
                mu_u = self.vae.encode(self.vae_input(ctx, xu))[0]
            t_l, t_u = self.discriminator_targets(ctx, xu)
            with ctx.autocast():
                d_l, d_u = self.disc.logits(mu_l), self.disc.logits(mu_u)
            d_loss = vae_losses.adversarial_bce(d_l, t_l) + vae_losses.adversarial_bce(d_u, t_u)
            self._disc += ctx.step(self.disc_opt, d_loss)
            self._n_disc += 1
        return task_loss

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if self._n_vae:
            self.recon_trace.append(self._recon / self._n_vae)
        if self._n_disc:
            self.discriminator_trace.append(self._disc / self._n_disc)
        self._zero(ctx.device)


@torch.no_grad()
def latent_means(ctx: QueryContext, vae: nn.Module, indices: np.ndarray, features: str = "image"
                 ) -> torch.Tensor:
    """(N, z) VAE latent means mu(x) of train_x[indices], eval mode, fp32, in eval-sized batches."""
    idx = torch.as_tensor(indices, device=ctx.data.train_x.device)
    if features == "task":
        inputs = ctx.embeddings(indices)
        chunks = inputs.split(ctx.recipe.eval_batch_size)
    else:
        chunks = (ctx.augmenter.eval(ctx.data.train_x[c]) for c in idx.split(ctx.recipe.eval_batch_size))
    with eval_mode(vae):
        mus = [vae.encode(x)[0].float() for x in chunks]
    return torch.cat(mus) if mus else torch.zeros(0, vae.latent_dim, device=idx.device)


@torch.no_grad()
def batch_mode_probability(ctx: QueryContext, vae: nn.Module, disc: nn.Module, indices: np.ndarray,
                           features: str, batch_size: int) -> torch.Tensor:
    """D(mu(x)) as the official samplers compute it: VAE and D in train mode (BatchNorm on batch statistics,
    running statistics untouched), over batches of `batch_size` in a seeded random order (their
    SubsetRandomSampler), returned in the order of `indices`."""
    n = len(indices)
    device = ctx.data.train_x.device
    order = torch.randperm(n, generator=ctx.generator("vaal-score-batches"), device=device)
    inputs = ctx.embeddings(indices) if features == "task" else None
    idx = torch.as_tensor(indices, device=device)
    out = torch.zeros(n, device=device)
    with batch_statistics(vae, disc):
        for b in order.split(batch_size):
            x = inputs[b] if inputs is not None else ctx.augmenter.eval(ctx.data.train_x[idx[b]])
            out[b] = disc(vae.encode(x)[0].float()).float()
    return out


@torch.no_grad()
def discriminator_probability(ctx: QueryContext, name: str, indices: np.ndarray, features: str = "image",
                              scoring: str = "eval", batch_size: int = 128):
    """D(mu(x)) in (0, 1) for each index, from the trained modules in ctx.state (`scoring`: eval mode, or
    "batch": the official samplers' train-mode batch statistics)."""
    if "vae" not in ctx.state or "discriminator" not in ctx.state:
        raise RuntimeError(f"{name}: query without a trained VAE and discriminator (ctx.state comes from fit "
                           "with the strategy's training hook)")
    disc = ctx.state["discriminator"]
    if scoring == "batch":
        return batch_mode_probability(ctx, ctx.state["vae"], disc, indices, features, batch_size)
    with eval_mode(disc):
        return disc(latent_means(ctx, ctx.state["vae"], indices, features))


@register("vaal")
class VAALStrategy(ScoreStrategy):
    """Top-k of -D(mu(x)): the unlabeled examples with the lowest probability of being labeled (VAAL's
    sampler, `topk(-pred)`)."""

    tasks = ("classification", "segmentation")
    Options = VAALOptions
    pointwise = True  # the default (eval-mode) scoring; `scoring: batch` (vaal-code) depends on the batch
    quick_options = {"vae_width": 0.0625}

    def training_hook(self) -> TrainingHook:
        return VAALHook(self.options)

    def score(self, ctx: QueryContext, candidates: np.ndarray) -> torch.Tensor:
        o = self.options
        return -discriminator_probability(ctx, self.name, candidates, o.features, o.scoring, o.score_batch_size)
