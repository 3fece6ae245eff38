"""MCDAL's discrepancy between its auxiliary heads (Sec. 3, Eqs. 1-5): L1 / L2 / KL between class distributions,
the mean pairwise discrepancy of several heads, and the acquisition. Imports only torch."""

from __future__ import annotations

import torch

DISCREPANCIES = ("l1", "l2", "kl")


def discrepancy(p: torch.Tensor, q: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Per-sample distance d(p, q) between probability vectors, (N, C) x (N, C) -> (N,).

    `l1`: (1/C) sum_c |p_c - q_c| (MCDAL Eq. 4), in [0, 2/C]. `l2`: the Euclidean norm ||p - q||_2 (MCDAL
    Fig. 7 names "L2 distance" without a formula: we read it as the plain L2 distance). `kl`: KL(p || q) =
    sum_c p_c log(p_c / q_c) with 0 log 0 = 0 (q clamped at the float's tiny value).
    """
    p, q = p.float(), q.float()
    if kind == "l1":
        return (p - q).abs().mean(dim=-1)
    if kind == "l2":
        return (p - q).pow(2).sum(dim=-1).sqrt()
    if kind == "kl":
        tiny = torch.finfo(p.dtype).tiny
        terms = torch.where(p > 0, p * (torch.log(p.clamp_min(tiny)) - torch.log(q.clamp_min(tiny))), torch.zeros_like(p))
        return terms.sum(dim=-1).clamp_min(0.0)
    raise ValueError(f"unknown discrepancy {kind!r}; allowed: {list(DISCREPANCIES)}")


def pairwise_discrepancy(probs: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """D(x) = sum over all unordered pairs (i < j) of classifiers of d(p_i, p_j); probs is (K, N, C), main
    classifier first (MCDAL Eq. 3 and the text of Eq. 5: d(p1, p2) + d(p, p1) + d(p, p2) for two heads).
    For `kl` the pair is taken in the order (earlier, later): d(p, p_i) and d(p_i, p_j) for i < j."""
    k = probs.shape[0]
    total = torch.zeros(probs.shape[1], device=probs.device)
    for i in range(k):
        for j in range(i + 1, k):
            total = total + discrepancy(probs[i], probs[j], kind)
    return total


def mcdal_acquisition(d_unlabeled: torch.Tensor, d_labeled: torch.Tensor) -> torch.Tensor:
    """S(x_u) = |D(x_u) - mean_{x_l in L} D(x_l)| (MCDAL Eq. 5); >= 0."""
    return (d_unlabeled.float() - d_labeled.float().mean()).abs()
