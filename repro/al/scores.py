"""Acquisition scores as batched tensor functions, "higher = query first": entropy, least confidence, margin,
Monte-Carlo dropout scores (variation ratio, MC entropy, BALD), committee disagreement (Jensen-Shannon, variance)
and the expected gradient length. `probs` is (N, C); Monte-Carlo probabilities are (T, N, C), passes first.
Imports only torch; no state, no device moves, no Python loop over samples."""

from __future__ import annotations

import torch


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy H(p) = -sum_c p_c log p_c with 0 log 0 = 0, natural log; (N, C) -> (N,).

    The "max-entropy" uncertainty score (DAL Sec. 2; MCDAL and ADS baselines). Range [0, log C].
    """
    p = probs.float()
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    return (-plogp.sum(dim=-1)).clamp_min(0.0)


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 - max_c p_c; range [0, 1 - 1/C]. On one deterministic pass this is also the "variation ratio"
    DAL's text names and what its reference code's "Uncertainty" computes (DAL Sec. 2)."""
    return 1.0 - probs.float().max(dim=-1).values


def margin(probs: torch.Tensor) -> torch.Tensor:
    """-(p_(1) - p_(2)), the negated gap between the two largest probabilities (margin sampling, Scheffer
    et al. 2001); range [-1, 0], the smallest gap scores highest."""
    top2 = probs.float().topk(2, dim=-1).values
    return -(top2[..., 0] - top2[..., 1])


def variation_ratio(mc_probs: torch.Tensor) -> torch.Tensor:
    """1 - (count of the modal argmax over the T passes) / T; range [0, 1 - 1/min(T, C)] (DBAL Sec. 3,
    Freeman 1965). Its values are multiples of 1/T, so ties are common: break them at random, not by index."""
    t, c = mc_probs.shape[0], mc_probs.shape[-1]  # (T, N, C) or per position (T, N, *S, C)
    votes = torch.nn.functional.one_hot(mc_probs.argmax(dim=-1), c).sum(dim=0)  # (N, C)
    return 1.0 - votes.max(dim=-1).values.float() / t


def mean_probability_variation_ratio(mc_probs: torch.Tensor) -> torch.Tensor:
    """1 - max_c of the mean over T passes of p_c: least confidence of the MC-dropout mean, what DAL's
    reference code computes as its "Bayesian" variation ratio; range [0, 1 - 1/C]."""
    return least_confidence(mc_probs.float().mean(dim=0))


def mc_entropy(mc_probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean prediction over T stochastic passes (DBAL "Max Entropy")."""
    return entropy(mc_probs.float().mean(dim=0))


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """Mutual information I[y; w] = H[mean_t p_t] - mean_t H[p_t] (BALD, Houlsby et al. 2011; DBAL Eq. 4);
    in [0, H(mean)], 0 when all passes agree."""
    mean_entropy = entropy(mc_probs.float()).mean(dim=0)
    return (mc_entropy(mc_probs) - mean_entropy).clamp_min(0.0)


def committee_js_divergence(probs: torch.Tensor) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence of K equally weighted members, H[mean_k p_k] - mean_k H[p_k]
    (Kuo et al. 2018's ensemble disagreement, per pixel); the same quantity as `bald` over members."""
    return bald(probs)


def committee_variance(probs: torch.Tensor) -> torch.Tensor:
    """Suggestive Annotation's uncertainty (Yang et al. 2017 Sec. 2.2: "the variance among these models"):
    the variance over members of each class probability, averaged over classes."""
    return probs.float().var(dim=0, unbiased=False).mean(dim=-1)


def expected_gradient_length(grad_norms: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """EGL(x) = sum_c p(c|x) * ||grad_theta l(x, c)||, the expected gradient norm, from the (N, C) gradient
    norms for every possible label and the (N, C) predictions (Settles, Craven & Ray 2008, Eq. 1; Huang et
    al. 2016). DAL's code squares the norm (`egl-code`, or pass squared norms here)."""
    return (grad_norms.float() * probs.float()).sum(dim=-1)
