"""One step of DAAL's Alg. 1 (Wang et al., Sec. 3.2) on its networks (repro/models/nets/daal.py).

`adversarial_branch` is one VAE -> discriminator game for inputs weighted per sample; `representativeness_terms`
(rDis on s_u * x_u) is what another selector needs to be trained "with DAAL's representativeness
discriminator" (LL + RD, DAAL Fig. 5): give it that selector's scores in (0, 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from repro.al.losses import daal as L
from repro.models.nets.daal import Discriminator, FeatureVAE


class BranchTerms(NamedTuple):
    """One adversarial branch's per-sample terms and the discriminator's logits."""

    recon: torch.Tensor  # (N,) Eq. 3 term: 0.5 ||phi(x_u) - phi(x_rec)||^2
    prior: torch.Tensor  # (N,) Eq. 1 L_prior of the branch's code
    real_logits: torch.Tensor  # discriminator on the real side (uDis: x_l; rDis: x_u)
    fake_logits: torch.Tensor  # discriminator on the reconstructions (uDis: x_hat_u; rDis: x_tilde_u)


def adversarial_branch(x_u: torch.Tensor, weight: torch.Tensor, real: torch.Tensor | None, vae: FeatureVAE,
                       dis: Discriminator) -> BranchTerms:
    """Alg. 1 lines 11-12 for one discriminator: encode weight * x_u, decode, and score the reconstruction
    against `real` (None: x_u itself, the rDis case); the reconstruction target is phi(x_u) (Eq. 3)."""
    x_rec, mu, logvar = vae(weight[:, None].to(x_u.dtype) * x_u)
    h_rec, fake = dis.hidden_and_logit(x_rec)
    h_u, logit_u = dis.hidden_and_logit(x_u)
    real_logits = logit_u if real is None else dis.hidden_and_logit(real)[1]
    return BranchTerms(L.feature_matching_recon(h_u, h_rec), L.kl_to_prior(mu, logvar), real_logits, fake)


def uncertainty_terms(scores: torch.Tensor, x_l: torch.Tensor, x_u: torch.Tensor, vae: FeatureVAE,
                      udis: Discriminator) -> BranchTerms:
    """uDis branch: (1 - s_u) * x_u -> x_hat_u, judged against labeled features x_l."""
    return adversarial_branch(x_u, 1.0 - scores, x_l, vae, udis)


def representativeness_terms(scores: torch.Tensor, x_u: torch.Tensor, vae: FeatureVAE,
                             rdis: Discriminator) -> BranchTerms:
    """rDis branch: s_u * x_u -> x_tilde_u ("summary"), judged against the original x_u. With any selector's
    per-sample scores in (0, 1) this is the representativeness discriminator another method can adopt (LL +
    RD): its selector minimises `recon + prior` (+ sparsity), the decoder `recon` + the generator GAN term,
    rDis `discriminator_loss(real_logits, fake_logits)`; `alg1_losses(..., udis=None)` assembles exactly that."""
    return adversarial_branch(x_u, scores, None, vae, rdis)


class Alg1Losses(NamedTuple):
    rater: torch.Tensor  # line 14, for {w_s, w_e}: L_recon + L_prior + L_sparsity
    decoder: torch.Tensor  # line 15, for {w_d}: L_recon + the decoder's L_GAN term
    discriminators: torch.Tensor  # line 16, for {w_u, w_r}: -L_GAN (maximisation as minimisation)
    recon: torch.Tensor
    prior: torch.Tensor
    length: torch.Tensor
    dpp: torch.Tensor
    udis_accuracy: torch.Tensor  # balanced accuracy of uDis on x_l vs x_hat_u (0 without uDis)
    rdis_accuracy: torch.Tensor


def _accuracy(t: BranchTerms | None, like: torch.Tensor) -> torch.Tensor:
    if t is None:
        return torch.zeros((), device=like.device)
    return 0.5 * ((t.real_logits.detach() > 0).float().mean() + (t.fake_logits.detach() <= 0).float().mean())


def alg1_losses(scores: torch.Tensor, x_l: torch.Tensor, x_u: torch.Tensor, vae: FeatureVAE,
                udis: Discriminator | None, rdis: Discriminator | None, sigma: float = 0.2,
                gan_form: str = "minimax", dpp_eps: float = 1e-6) -> Alg1Losses:
    """The three losses of DAAL Alg. 1 (lines 14-16) from one forward pass (lines 10-12); a missing
    discriminator drops its branch (the uDis-only / rDis-only ablations, Fig. 6)."""
    if udis is None and rdis is None:
        raise ValueError("DAAL needs at least one discriminator (uDis, rDis or both)")
    branches = [uncertainty_terms(scores, x_l, x_u, vae, udis) if udis is not None else None,
                representativeness_terms(scores, x_u, vae, rdis) if rdis is not None else None]
    used = [b for b in branches if b is not None]
    recon = sum(b.recon.mean() for b in used)  # Eq. 3 (empirical mean over the batch)
    prior = sum(b.prior.mean() for b in used)  # Eq. 1's L_prior for each code (e_hat, e_tilde)
    length = L.length_regulariser(scores, sigma)
    dpp = L.dpp_loss(scores, x_u.detach(), sigma, dpp_eps)
    gen = sum(L.generator_loss(b.fake_logits, gan_form) for b in used)
    dis = sum(L.discriminator_loss(b.real_logits, b.fake_logits) for b in used)
    return Alg1Losses(recon + prior + length + dpp, recon + gen, dis, recon.detach(), prior.detach(),
                      length.detach(), dpp.detach(), _accuracy(branches[0], x_u), _accuracy(branches[1], x_u))


def alg1_optimizers(ctx, lr: float, selector: nn.Module, vae: FeatureVAE, discriminators: list[nn.Module]):
    """Alg. 1's three Adam optimizers (constant rate, DAAL Sec. 4.2): {w_s, w_e} the selector with the VAE's
    encoder, {w_d} its decoder, {w_u, w_r} the discriminators. `ctx` is the trainer's TrainContext."""
    def adam(params):
        return ctx.make_optimizer(list(params), "adam", lr, "constant", weight_decay=0.0)

    return (adam([*selector.parameters(), *vae.encoder.parameters()]), adam(vae.decoder.parameters()),
            adam([p for d in discriminators for p in d.parameters()]))


def alg1_update(losses: Alg1Losses, rater: torch.optim.Optimizer, decoder: torch.optim.Optimizer,
                discriminators: torch.optim.Optimizer) -> None:
    """Alg. 1 lines 14-16 in the paper's order: {w_s, w_e} on the rater loss, then {w_d} on the decoder loss,
    then {w_u, w_r} on the GAN loss. Every gradient is taken at the one forward pass of lines 10-12 (the
    algorithm does not forward again between the updates), so all are computed before the three steps."""
    pairs = [(rater, losses.rater), (decoder, losses.decoder), (discriminators, losses.discriminators)]
    grads = []
    for i, (opt, loss) in enumerate(pairs):
        params = [p for g in opt.param_groups for p in g["params"]]
        grads.append((opt, params, torch.autograd.grad(loss, params, retain_graph=i < len(pairs) - 1,
                                                       allow_unused=True)))
    for opt, params, gs in grads:
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
