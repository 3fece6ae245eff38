"""The loss pieces of VAAL (Sinha et al., ICCV 2019) and SRAAL (Zhang et al., CVPR 2020) and SRAAL's online
uncertainty indicator (OUI) score, as batched tensor functions (torch only, no state).

Equations are cited by the papers' names for them (VAAL Sec. 3: the transductive VAE loss L^trd_VAE, the
VAE's adversarial loss L^adv_VAE, the discriminator's loss L_D); neither paper's text is in shared/papers,
so the numeric forms follow the reference codes (sinhasam/vaal@67263f3; Beichen1996/SRAAL@274539c)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

KL_REDUCTIONS = ("sum", "mean")


def reconstruction_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reconstruction term of the VAE objective, -E[log p(x|z)] up to constants for a Gaussian decoder
    (VAAL L^trd_VAE; DAAL Eq. 1 L_recon), as both reference codes compute it: the mean squared error over
    every element of the batch (nn.MSELoss)."""
    return F.mse_loss(recon.float(), target.float())


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mu, diag(exp(logvar))) || N(0, I)) = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))
    (Kingma & Welling 2014, App. B; the prior term of VAAL's L^trd_VAE and DAAL Eq. 1 L_prior);
    (N, d) -> (N,), >= 0 and 0 exactly at mu = 0, logvar = 0."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)).clamp_min(0.0)


def kl_term(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """The batch's KL term: "sum" over batch and latent dimensions (VAAL's code; VAAL issue #10 "KL loss is
    extremely large"), or "mean" over the batch of the per-sample KL (SRAAL's code)."""
    kl = gaussian_kl(mu, logvar)
    if reduction == "sum":
        return kl.sum()
    if reduction == "mean":
        return kl.mean()
    raise ValueError(f"unknown KL reduction {reduction!r}; allowed: {list(KL_REDUCTIONS)}")


def vae_objective(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float = 1.0, recon_weight: float = 1.0, reduction: str = "sum") -> torch.Tensor:
    """recon_weight * MSE + beta * KL on one batch: VAAL's L^trd_VAE per pool (the negated beta-VAE lower
    bound; beta = 1, weight 1, KL summed as its code) and SRAAL's unsupervised image reconstructor term
    (its code: 5 * MSE + mean-over-batch KL)."""
    return recon_weight * reconstruction_mse(recon, target) + beta * kl_term(mu, logvar, reduction)


def adversarial_bce(d_logits: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the discriminator's sigmoid output against a state target (a constant, or
    per-sample soft targets in [0, 1]); computed from the logits, equal to nn.BCELoss on the sigmoid.
    VAAL L^adv_VAE (the VAE pushes L and U toward "labeled", 1) and L_D (D: L -> 1, U -> 0); SRAAL's state
    discriminator (its code: L -> 0, U -> the relabeled state, the OUI score)."""
    z = d_logits.float()
    t = torch.full_like(z, float(target)) if isinstance(target, (int, float)) else target.to(z).expand_as(z)
    return F.binary_cross_entropy_with_logits(z, t)


def oui_score(probs: torch.Tensor) -> torch.Tensor:
    """SRAAL's online uncertainty indicator (Zhang et al. 2020, state relabeling), the formula of its
    official `uncertainty_score`: with m = max_c p_c over C classes, pp1 = (C-1)(1/C - (1-m)/(C-1))^2,
    pp2 = (1/C - m)^2, pp3 = (pp1 + pp2)/C and score = 1 - m * pp3 / var(p), var unbiased over the classes;
    (N, C) -> (N,).

    pp3 is the population variance of the flattest distribution with maximum m, so pp3 <= (C-1)/C var(p)
    (p's population variance) and the score lies in [1/C, 1]: 1/C for a one-hot p, 1 - m(C-1)/C for a p whose
    other classes share 1 - m equally. At the uniform p the formula is 0/0: we give it 1, the top of the range
    (the most uncertain prediction; the official code yields NaN there). Clamped to [0, 1] against rounding.
    """
    p = probs.float()
    c = p.shape[-1]
    m = p.max(dim=-1).values
    pp1 = (c - 1) * (1.0 / c - (1.0 - m) / (c - 1)).pow(2)
    pp2 = (1.0 / c - m).pow(2)
    pp3 = (pp1 + pp2) / c
    var = p.var(dim=-1, unbiased=True)
    score = 1.0 - m * pp3 / var.clamp_min(torch.finfo(p.dtype).tiny)
    return torch.where(var > 0, score, torch.ones_like(score)).clamp(0.0, 1.0)
