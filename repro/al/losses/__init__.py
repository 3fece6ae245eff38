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


# --- Uncertainty on one deterministic pass -------------------------------------------------------------


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 - max_c p_c; range [0, 1 - 1/C]. On one deterministic pass this is also the "variation ratio"
    DAL's text names and what its reference code's "Uncertainty" computes (DAL Sec. 2)."""
    return 1.0 - probs.float().max(dim=-1).values


def margin(probs: torch.Tensor) -> torch.Tensor:
    """-(p_(1) - p_(2)), the negated gap between the two largest probabilities (margin sampling, Scheffer
    et al. 2001); range [-1, 0], the smallest gap scores highest."""
    top2 = probs.float().topk(2, dim=-1).values
    return -(top2[..., 0] - top2[..., 1])


# --- Monte-Carlo dropout (DBAL, Gal et al. 2017); mc_probs is (T, N, C) -------------------------------


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


# --- committees (QBC, Suggestive Annotation); probs is (K, N, ..., C) over K members ----------------------


def committee_js_divergence(probs: torch.Tensor) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence of K equally weighted members, H[mean_k p_k] - mean_k H[p_k]
    (Kuo et al. 2018's ensemble disagreement, per pixel); the same quantity as `bald` over members."""
    return bald(probs)


def committee_variance(probs: torch.Tensor) -> torch.Tensor:
    """Suggestive Annotation's uncertainty (Yang et al. 2017 Sec. 2.2: "the variance among these models"):
    the variance over members of each class probability, averaged over classes."""
    return probs.float().var(dim=0, unbiased=False).mean(dim=-1)


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


# --- MCDAL -----------------------------------------------------------------------------------------------

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


# --- ADS -------------------------------------------------------------------------------------------------


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


# --- Core-set (Sener & Savarese 2018) ---------------------------------------------------------------------


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


# --- EGL (Settles et al. 2008; DAL's baseline) ------------------------------------------------------------


def expected_gradient_length(grad_norms: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """EGL(x) = sum_c p(c|x) * ||grad_theta l(x, c)||, the expected gradient norm, from the (N, C) gradient
    norms for every possible label and the (N, C) predictions (Settles, Craven & Ray 2008, Eq. 1; Huang et
    al. 2016). DAL's code squares the norm (`egl-code`, or pass squared norms here)."""
    return (grad_norms.float() * probs.float()).sum(dim=-1)


# --- DAL (Gissin & Shalev-Shwartz 2019) -------------------------------------------------------------------


def split_budget(budget: int, parts: int) -> list[int]:
    """min(parts, budget) mini-query sizes summing to budget; the remainder goes to the first ones (DAL Sec. 3)."""
    k = max(1, min(parts, budget))
    base, rem = divmod(budget, k)
    return [base + (1 if i < rem else 0) for i in range(k)]
