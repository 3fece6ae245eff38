"""The math of MAL, "Minimax Active Learning" (Ebrahimi, Gan, Salahi, Darrell, arXiv 2012.10467), as batched
tensor functions (torch only, no state): the cosine classifier's cross-entropy (Eq. 1), the minimax entropy loss
(Eq. 2), the discriminator's labeledness loss (Eq. 3) and the sampling rule (Alg. 2, Sec. 3.3). The cosine logits
and the gradient reversal layer are network operations: repro/models/nets/mal.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SELECTIONS = ("both", "uncertainty", "diversity")


def cosine_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_CE of MAL Eq. 1: the mean cross-entropy of the cosine classifier's softmax on labeled data."""
    return F.cross_entropy(logits.float(), labels)


def minimax_entropy_loss(logits_u: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """L_Ent of MAL Eq. 2 in Alg. 1's sign: weight * mean_x sum_k p_k log p_k = -weight * mean entropy on
    unlabeled data (MME's adentropy). Descending it maximises C's entropy (Alg. 1 line 9); the logits must
    come from C applied to grad_reverse(F(x_u)), so the same step descends the entropy for F (line 8)."""
    logp = F.log_softmax(logits_u.float(), dim=-1)
    return weight * (logp.exp() * logp).sum(dim=-1).mean()


def labeledness_loss(d_logits_l: torch.Tensor, d_logits_u: torch.Tensor) -> torch.Tensor:
    """L_BCE of MAL Eq. 3: -E_L log D(x_L) - E_U log(1 - D(x_U)), D = sigmoid of the discriminator's logit
    (labeled = 1); each expectation is a batch mean, on the logits for numerical stability."""
    ll, lu = d_logits_l.float().reshape(-1), d_logits_u.float().reshape(-1)
    return (F.binary_cross_entropy_with_logits(ll, torch.ones_like(ll))
            + F.binary_cross_entropy_with_logits(lu, torch.zeros_like(lu)))


def _ranks(order: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    return ranks


def mal_selection(entropy: torch.Tensor, labeledness: torch.Tensor | None, budget: int,
                  selection: str = "both") -> torch.Tensor:
    """MAL's sampling rule (Alg. 2; Sec. 3.3 "We take the top b samples that meet both conditions"): the
    positions of the `budget` candidates chosen, in the order chosen; (N,), (N,) -> (budget,) int64.

    Rank the N candidates twice (0-based, exact ties to the lower position): by the discriminator's
    labeledness ascending (most confidently unlabeled first; any score monotone in D's probability, e.g. its
    logit) and by C's entropy descending. "both" grows m until the top-m of the two rankings share `budget`
    candidates: as top_m(D) ∩ top_m(H) = {i : max(r_D(i), r_H(i)) < m}, that is the `budget` smallest
    max-ranks; at the last m at most one candidate too many enters, and the one with the smaller rank sum
    (then the lower position) goes first. The result is ordered by (max rank, rank sum, position).
    "uncertainty" (Fig. 5, entropy only) and "diversity" (Fig. 5, discriminator only) take the top `budget`
    of one ranking. `labeledness` may be None for "uncertainty".
    """
    n = entropy.numel()
    if not 0 <= budget <= n:
        raise ValueError(f"cannot select {budget} of {n} candidates")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; allowed: {list(SELECTIONS)}")
    if selection != "uncertainty" and labeledness is None:
        raise ValueError(f"selection {selection!r} needs the discriminator's labeledness scores")
    r_h = _ranks(torch.sort(entropy.float(), descending=True, stable=True).indices)
    if selection == "uncertainty":
        key = r_h
    else:
        r_d = _ranks(torch.sort(labeledness.float(), stable=True).indices)
        key = r_d if selection == "diversity" else torch.maximum(r_d, r_h) * (2 * n) + r_d + r_h  # exact in int64
    return torch.sort(key, stable=True).indices[:budget]
