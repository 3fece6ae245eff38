"""DAAL's losses (Wang et al., "Dual Adversarial Network for Deep Active Learning", Sec. 3.2, Eqs. 1-7).

Pure tensor math, imports only torch. `scores` are the ScoreNet's s_u in (0, 1), shape (N,); discriminator
outputs enter as logits z with D = sigmoid(z), so log D = logsigmoid(z) and log(1 - D) = logsigmoid(-z).
The paper weights the VAE's *inputs* by 1 - s_u (uncertainty branch) and s_u (representativeness branch), so
the GAN terms below take no per-sample weights: the weighting is already inside the reconstructions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_FORMS = ("minimax", "nonsaturating")


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """L_prior of DAAL Eq. 1: D_KL(q(e|x) || N(0, I)) for a diagonal Gaussian q = N(mu, exp(logvar)), per
    sample, summed over latent dimensions; (N, Z) -> (N,). >= 0, and 0 exactly at mu = 0, logvar = 0."""
    mu, logvar = mu.float(), logvar.float()
    # exp(l) - 1 - l >= 0 with equality only at l = 0; expm1 keeps it exact near 0
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(dim=-1).clamp_min(0.0)


def feature_matching_recon(target_hidden: torch.Tensor, recon_hidden: torch.Tensor) -> torch.Tensor:
    """One term of L_recon, DAAL Eq. 3: -log p(phi(x_u) | e) with a unit-variance Gaussian over the
    discriminator's last hidden layer (Larsen et al. 2016), up to its constant: 0.5 ||phi(x_u) - phi(x_rec)||^2
    per sample; (N, H) -> (N,). The expectation of Eq. 3 is the caller's mean over samples."""
    return 0.5 * (target_hidden.float() - recon_hidden.float()).pow(2).sum(dim=-1)


def gan_value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """One discriminator's half of L_GAN, DAAL Eq. 4 (the GAN objective of Eq. 2): E[log D(real)] +
    E[log(1 - D(fake))]; a scalar <= 0 that the discriminator maximises. uDis: real = x_l, fake = x_hat_u;
    rDis: real = x_u, fake = x_tilde_u."""
    return F.logsigmoid(real_logits.float()).mean() + F.logsigmoid(-fake_logits.float()).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-L_GAN for one discriminator (Alg. 1 line 16, the "maximization update" written as a minimisation):
    the binary cross-entropy of real -> 1, fake -> 0; >= 0."""
    return -gan_value(real_logits, fake_logits)


def generator_loss(fake_logits: torch.Tensor, form: str = "minimax") -> torch.Tensor:
    """The decoder's part of L_GAN (Alg. 1 line 15; only the fake term depends on it). "minimax": the paper's
    E[log(1 - D(fake))] (Eqs. 2, 4), minimised; "nonsaturating": -E[log D(fake)] (Goodfellow et al.'s
    practical variant, same fixed point, stronger early gradients)."""
    z = fake_logits.float()
    if form == "minimax":
        return F.logsigmoid(-z).mean()
    if form == "nonsaturating":
        return -F.logsigmoid(z).mean()
    raise ValueError(f"GAN form {form!r}: expected one of {GAN_FORMS}")


def length_regulariser(scores: torch.Tensor, sigma: float = 0.2) -> torch.Tensor:
    """L_LR of DAAL Eq. 6: || sigma - (1/n) sum_t s_t ||_2, the distance of the mean score from the selected
    fraction sigma (a scalar, so the 2-norm is the absolute value). >= 0, and 0 iff mean(s) == sigma."""
    s = scores if scores.dtype == torch.float64 else scores.float()
    return (sigma - s.mean()).abs()


def dpp_subset(scores: torch.Tensor, sigma: float = 0.2) -> torch.Tensor:
    """The subset x' of Eqs. 6-7: its size is sigma * n (rounded, at least 1); the paper does not say which
    samples, so these are the top-scored ones, the samples the selector picks. (k,) indices, no gradient."""
    k = min(scores.numel(), max(1, round(sigma * scores.numel())))
    return torch.topk(scores.detach(), k).indices


def dpp_log_probability(scores: torch.Tensor, features: torch.Tensor, subset: torch.Tensor,
                        eps: float = 1e-6) -> torch.Tensor:
    """log P(s_x'; D) of DAAL Eq. 7: P = det(D_x') / det(D + I) with D_ij = s_i s_j x_i^T x_j (an L-ensemble
    DPP, Kulesza & Taskar 2012), computed in float64 by Cholesky. A scalar <= 0, i.e. P in (0, 1].

    `eps` * I is added to the subset's block D_x' so P stays > 0 (finite log) when the subset's features are
    linearly dependent; P <= 1 still holds for eps <= 1 since det(D_x' + eps I) <= det(D_x' + I) <= det(D + I).
    """
    s = scores.to(torch.float64)
    x = features.to(torch.float64)
    d = (s[:, None] * s[None, :]) * (x @ x.T)
    eye = torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
    d_sub = d[subset][:, subset] + eps * eye[: subset.numel(), : subset.numel()]
    log_num = _logdet_pd(d_sub)
    log_den = _logdet_pd(d + eye)
    return (log_num - log_den).clamp_max(0.0).to(scores.dtype if scores.is_floating_point() else torch.float32)


def dpp_loss(scores: torch.Tensor, features: torch.Tensor, sigma: float = 0.2, eps: float = 1e-6) -> torch.Tensor:
    """L_DPP of DAAL Eq. 6: -log P(s_x') (Eq. 7) with x' the sigma * n top-scored samples; >= 0."""
    return -dpp_log_probability(scores, features, dpp_subset(scores, sigma), eps)


def _logdet_pd(a: torch.Tensor) -> torch.Tensor:
    """log det of a symmetric positive-definite matrix via Cholesky (no host sync: cholesky_ex)."""
    chol = torch.linalg.cholesky_ex(a).L
    return 2.0 * torch.log(torch.diagonal(chol)).sum()
