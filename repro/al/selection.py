"""Choosing the picks from scores or features: top-k (seeded tie-breaks), greedy max set cover, greedy k-center
(Sener & Savarese 2018) and a budget split. Imports only torch."""

from __future__ import annotations

import torch


def select_topk(scores: torch.Tensor, k: int, candidates: torch.Tensor | None = None,
                tiebreak: torch.Tensor | None = None) -> torch.Tensor:
    """The k pool indices with the highest scores, highest first, exact ties to the lowest index.

    `scores` is (N,) over the whole pool. `candidates` (pool indices) restricts the choice; with it, the
    result is the same as scoring only the candidates. Deterministic: a stable sort on (-score, index).
    `tiebreak` (N,) distinct priorities (e.g. a seeded random permutation) replaces the index as the
    tie-breaker: exact ties go to the lowest priority. NaN scores are rejected (they have no order).
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
    # Sort candidates by index (or priority) first; a stable descending sort on score keeps them first on ties.
    pool = torch.sort(pool).values
    if tiebreak is not None:
        pool = pool[torch.argsort(tiebreak.to(pool.device)[pool], stable=True)]
    order = torch.sort(scores[pool], descending=True, stable=True).indices
    return pool[order[:k]]


def max_cover_greedy(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """Suggestive Annotation's representativeness (Yang et al. 2017 Eq. 1-2): greedily pick k of the candidate
    columns maximising F(S_a) = sum_u max_{x in S_a} sim(u, x) over the rows u (the whole unlabeled set);
    `similarity` is (U, N_candidates). Ties go to the lowest index. Returns candidate positions in pick order."""
    u, n = similarity.shape
    if not 1 <= k <= n:
        raise ValueError(f"max_cover_greedy: k={k} must be in 1..{n}")
    best = torch.zeros(u, dtype=similarity.dtype, device=similarity.device)
    taken = torch.zeros(n, dtype=torch.bool, device=similarity.device)
    picks = []
    for _ in range(k):
        gain = (similarity - best[:, None]).clamp_min(0).sum(0)
        gain[taken] = -1.0
        j = int(torch.argmax(gain))
        picks.append(j)
        taken[j] = True
        best = torch.maximum(best, similarity[:, j])
    return torch.tensor(picks, dtype=torch.long, device=similarity.device)


def _sq_dist_exact(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """sum_d (x - c)^2 row-wise with direct differences (no cancellation), fp32."""
    return (x - c).pow(2).sum(dim=-1)


def kcenter_greedy(features: torch.Tensor, labeled: torch.Tensor, budget: int, chunk: int = 2048,
                   lookahead: int = 128) -> torch.Tensor:
    """Exact greedy k-center (Core-set, Sener & Savarese 2018, Alg. 1): `budget` picks, each the point whose
    Euclidean distance to its nearest center (labeled or already picked) is largest; exact ties go to the
    lowest index. Returns the picks in order as int64 pool indices.

    fp32, no N x N matrix. Distances that decide are computed with direct differences sum (x - c)^2; on CPU
    the expansion |x|^2 + |c|^2 - 2 x.c (a fast GEMM) only screens which points can change, with a
    conservative rounding bound, so the result equals the direct-difference algorithm's. The picks' columns are
    computed `lookahead` at a time for the currently farthest points (`_greedy_speculative`).
    """
    x = features.float()
    n, d = x.shape
    labeled = torch.as_tensor(labeled, dtype=torch.bool, device=x.device)
    if labeled.shape != (n,):
        raise ValueError(f"labeled must be an ({n},) bool mask, got shape {tuple(labeled.shape)}")
    if budget < 0 or budget > int((~labeled).sum()):
        raise ValueError(f"budget {budget} must be in 0..{int((~labeled).sum())} (the unlabeled points)")
    screen = x.device.type == "cpu"
    sq = x.pow(2).sum(dim=1)
    tol_scale = 4.0 * d * torch.finfo(torch.float32).eps  # rounding bound of the expansion, relative
    min_d = torch.full((n,), float("inf"), device=x.device)
    centers = torch.nonzero(labeled).squeeze(1)
    for start in range(0, centers.numel(), chunk):  # initial distances to the labeled set
        c_idx = centers[start : start + chunk]
        c, sq_c = x[c_idx], sq[c_idx]
        for r0 in range(0, n, chunk):
            rows = slice(r0, min(n, r0 + chunk))
            # a = |c|^2 - 2 x.c (the row's |x|^2 is a per-row constant), built in place: 2 passes over the block
            a = (x[rows] @ c.T).mul_(-2.0).add_(sq_c[None, :])
            tol = tol_scale * (sq[rows] + sq_c.max())  # per row, >= every element's rounding bound
            best = torch.minimum(min_d[rows], sq[rows] + a.min(dim=1).values + tol)  # an upper bound of the row min
            ri, ci = torch.nonzero(a <= (best - sq[rows] + tol)[:, None], as_tuple=True)  # lower bound <= best
            exact = _sq_dist_exact(x[rows][ri], c[ci])
            cur = min_d[rows].clone()
            cur.scatter_reduce_(0, ri, exact, reduce="amin")
            min_d[rows] = cur
    min_d[labeled] = float("-inf")  # never pick a center again
    if screen:
        return _greedy_speculative(x, sq, min_d, budget, tol_scale, lookahead)
    picks = torch.empty(budget, dtype=torch.long, device=x.device)
    for step in range(budget):
        j = torch.argmax(min_d)  # first maximal index: ties to the lowest index
        picks[step] = j
        min_d = torch.minimum(min_d, _sq_dist_exact(x, x[j]))
        min_d[j] = float("-inf")
    return picks


def _greedy_speculative(x: torch.Tensor, sq: torch.Tensor, min_d: torch.Tensor, budget: int, tol_scale: float,
                        lookahead: int) -> torch.Tensor:
    """The greedy picks with the distance columns of the `lookahead` currently farthest points computed in one
    GEMM (compute-bound) instead of one memory-bound GEMV per pick: the picks follow exactly the sequential
    rule (argmax of min_d, ties to the lowest index); while the next pick is among the precomputed columns its
    column screens the points it may move (conservative rounding bound) and their exact distances update
    min_d; a pick outside them starts a new block. Same picks as one column per pick."""
    picks = torch.empty(budget, dtype=torch.long, device=x.device)
    step = 0
    while step < budget:
        m = min(lookahead, int((min_d > float("-inf")).sum()))  # the points not picked (+inf: no center yet)
        # the m farthest, ties in index order (as argmax breaks them): the next pick is always the first
        cand = torch.sort(min_d, descending=True, stable=True).indices[:m]
        approx = (sq[:, None] + sq[cand][None, :] - 2.0 * (x @ x[cand].T)).clamp_min_(0.0)
        approx -= tol_scale * (sq[:, None] + sq[cand][None, :])  # lower bounds of the squared distances
        column = {int(c): i for i, c in enumerate(cand.tolist())}
        while step < budget:
            j = int(torch.argmax(min_d))  # first maximal index: ties to the lowest index
            i = column.get(j)
            if i is None:
                break
            picks[step] = j
            step += 1
            moved = torch.nonzero(approx[:, i] < min_d).squeeze(1)
            min_d[moved] = torch.minimum(min_d[moved], _sq_dist_exact(x[moved], x[j]))
            min_d[j] = float("-inf")
    return picks


def split_budget(budget: int, parts: int) -> list[int]:
    """min(parts, budget) mini-query sizes summing to budget; the remainder goes to the first ones (DAL Sec. 3)."""
    k = max(1, min(parts, budget))
    base, rem = divmod(budget, k)
    return [base + (1 if i < rem else 0) for i in range(k)]
