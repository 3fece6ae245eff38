"""ADS's losses and acquisition (Fu et al., AAAI 2021, Eqs. 1-8): the two classifiers' entropy, the sample
weights, the agreement and discrepancy losses, the labeled BCE. Imports only torch."""

from __future__ import annotations

import torch

from repro.al.scores import entropy


def ads_entropy(s1: torch.Tensor, s2: torch.Tensor, reduce: str = "mean", log_base: float | None = None,
                renormalise: bool = False) -> torch.Tensor:
    """E(u) of ADS Eq. 3 on two classifiers' sigmoid outputs (N, C): reduce='mean' gives
    -1/2 (sum_c s1_c log s1_c + sum_c s2_c log s2_c) on the raw sigmoid scores, as the equation is written
    (natural log; each term -s log s is in [0, 1/e], so E(u) is in [0, C/e]); 'max' / 'min' take one head's
    entropy (ADS Table 2). `renormalise=True` is the reference code's reading (each head's scores divided by
    their sum first, E(u) in [0, log C]); `log_base=2` its log2."""
    p1, p2 = s1.float(), s2.float()
    if renormalise:
        p1 = p1 / p1.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        p2 = p2 / p2.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    h = torch.stack((entropy(p1), entropy(p2)))
    if log_base is not None:
        h = h / torch.log(torch.tensor(float(log_base)))
    if reduce == "mean":
        return h.mean(dim=0)
    if reduce == "max":
        return h.max(dim=0).values
    if reduce == "min":
        return h.min(dim=0).values
    raise ValueError(f"unknown reduce {reduce!r}; allowed: ['max', 'mean', 'min']")


def ads_weights(e: torch.Tensor, n: int, tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration weights (w_a, w_d) = ((1 - sigmoid(E - tau)) / n, sigmoid(E - tau) / n) (ADS Eqs. 4, 7);
    w_a + w_d = 1/n, w_a decreasing and w_d increasing in E(u)."""
    s = torch.sigmoid(e.float() - tau)
    return (1.0 - s) / n, s / n


def ads_agreement_loss(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """L_a'(y1, y2) = (1/C) sum_c |y1_c - y2_c| per sample (ADS Eq. 2)."""
    return (s1.float() - s2.float()).abs().mean(dim=-1)


def ads_discrepancy_loss(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """L_d'(y1, y2) = 1 - (1/C) sum_c |y1_c - y2_c| per sample (ADS Eq. 6)."""
    return 1.0 - ads_agreement_loss(s1, s2)


def ads_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample one-vs-all binary cross-entropy summed over classes for one sigmoid classifier (ADS Eq. 1
    is the sum of this over the two classifiers); logits (N, C), integer targets (N,)."""
    onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).float()
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none").sum(-1)
