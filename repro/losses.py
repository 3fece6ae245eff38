"""The pure-math core: every loss and acquisition score as a batched tensor function.

Imports only torch. No state, no device moves, no Python loop over samples.
Convention: an acquisition score is "higher = query first", so `select_topk` serves every
score-based strategy. `probs` is (N, C); Monte-Carlo probabilities are (T, N, C), passes first.
"""

from __future__ import annotations

import torch


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy H(p) = -sum_c p_c log p_c with 0 log 0 = 0, natural log; (N, C) -> (N,).

    The "max-entropy" uncertainty score (DAL Sec. 2; MCDAL and ADS baselines). Range [0, log C].
    """
    p = probs.float()
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    return (-plogp.sum(dim=-1)).clamp_min(0.0)


def select_topk(scores: torch.Tensor, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """The k pool indices with the highest scores, highest first, exact ties to the lowest index.

    `scores` is (N,) over the whole pool. `candidates` (pool indices) restricts the choice; with it, the
    result is the same as scoring only the candidates. Deterministic: a stable sort on (-score, index).
    NaN scores are rejected (they have no order).
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D, got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; an acquisition score must be a number for every candidate")
    pool = (
        torch.arange(scores.numel(), device=scores.device)
        if candidates is None
        else torch.as_tensor(candidates, device=scores.device, dtype=torch.long)
    )
    if k < 0 or k > pool.numel():
        raise ValueError(f"cannot select k={k} from {pool.numel()} candidates")
    # Sort candidates by index first, then a stable descending sort on score keeps lower indices first on ties.
    pool = torch.sort(pool).values
    order = torch.sort(scores[pool], descending=True, stable=True).indices
    return pool[order[:k]]
