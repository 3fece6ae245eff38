"""Robust (outlier-tolerant) k-center by mixed-integer programming: Core-set's exact solver.

Sener & Savarese 2018 (ICLR), Sec. 4.2 and Alg. 2: the greedy k-center solution (Alg. 1) bounds the optimal
covering radius, a binary search on the radius delta asks a feasibility MIP at each probe, and the last
feasible solution's new centers are the query. DAL (Gissin & Shalev-Shwartz 2019) ran this as "CoreSetMIP"
with Gurobi, the greedy solution as the MIP start, at most N / 10000 outliers and 180 s per solve; here HiGHS
solves it through `scipy.optimize.milp` (an open solver; it takes no MIP start, so the greedy solution serves
as the search's upper bound and as the fallback instead).

Distances are Euclidean. Every decision "d(i, j) <= delta" is made on float64 direct differences of the
float32 features (`_pair_sq`); an fp32 GEMM |x|^2 + |c|^2 - 2 x.c with a conservative rounding bound only
screens which pairs are surely inside, surely outside or undecided (checked exactly), in row blocks: no N x N
matrix is ever held and no pair is misclassified by rounding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from repro.al.selection import kcenter_greedy

BLOCK = 1 << 22  # screened pairs per row block (fp32 entries)
PAIR_CHUNK = 1 << 16  # exact pairs per gather


def default_outliers(n: int) -> int:
    """DAL's CoreSetMIP outlier budget: int(N / 10000) for N points in the program."""
    return n // 10_000


def _pair_sq(x64: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact-enough squared distances of the pairs (a[k], b[k]): float64 direct differences, one fixed order."""
    out = torch.empty(a.numel(), dtype=torch.float64)
    for s in range(0, a.numel(), PAIR_CHUNK):
        diff = x64[a[s : s + PAIR_CHUNK]] - x64[b[s : s + PAIR_CHUNK]]
        out[s : s + PAIR_CHUNK] = (diff * diff).sum(dim=1)
    return out


class _Screen:
    """fp32 squared distances of a row block against columns by the GEMM expansion, with a per-row bound
    |approx - d^2| <= tol (rounding of the norms, the dot products and the sum; conservative)."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.sq = x.pow(2).sum(dim=1)
        self.scale = (4.0 * x.shape[1] + 8.0) * torch.finfo(torch.float32).eps

    def __call__(self, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        approx = self.x[rows] @ self.x[cols].T
        approx.mul_(-2.0).add_(self.sq[None, cols]).add_(self.sq[rows, None])
        tol = self.scale * (self.sq[rows] + self.sq[cols].max())
        return approx, tol[:, None]


def _up(v: float | torch.Tensor) -> torch.Tensor:
    """The float32 just above v (a threshold that never excludes a value <= v)."""
    t = torch.as_tensor(v, dtype=torch.float32)
    return torch.nextafter(t, torch.tensor(float("inf")))


def _min_sq_dist(screen: _Screen, x64: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """(N,) exact min squared distance of every point to `centers` (inf when there are none)."""
    n = screen.x.shape[0]
    best = torch.full((n,), float("inf"), dtype=torch.float64)
    if centers.numel() == 0:
        return best
    cblk = min(centers.numel(), 4096)
    rblk = max(1, BLOCK // cblk)
    for c0 in range(0, centers.numel(), cblk):
        c = centers[c0 : c0 + cblk]
        for r0 in range(0, n, rblk):
            rows = torch.arange(r0, min(n, r0 + rblk))
            approx, tol = screen(rows, c)
            thr = torch.minimum(approx.min(dim=1, keepdim=True).values + 2 * tol,
                                _up(best[rows])[:, None] + tol)
            ri, ci = torch.nonzero(approx <= thr, as_tuple=True)
            d2 = _pair_sq(x64, rows[ri], c[ci])
            cur = best[rows].clone()
            cur.scatter_reduce_(0, ri, d2, reduce="amin")
            best[rows] = cur
    return best


@dataclass
class _Graph:
    """Pairs within delta: CSR over the uncovered rows (columns = positions in the candidate centers)."""

    rows: torch.Tensor
    indptr: np.ndarray
    indices: np.ndarray
    next_above2: float  # smallest squared pair distance > delta^2 among these rows (inf if none)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])


def _cover_graph(screen: _Screen, x64: torch.Tensor, rows: torch.Tensor, cand: torch.Tensor, delta2: float,
                 max_pairs: int) -> _Graph | None:
    """Every pair (i in rows, j in cand) with exact d^2 <= delta2, built in row blocks; None past max_pairs.
    Pairs whose fp32 bounds straddle delta^2 are decided exactly, the others by their bounds; the next
    distance above delta is found exactly among the pairs whose bounds allow it."""
    thr_up = _up(delta2)
    thr_down = torch.tensor(delta2, dtype=torch.float32)
    if float(thr_down) > delta2:
        thr_down = torch.nextafter(thr_down, torch.tensor(float("-inf")))
    rblk = max(1, BLOCK // max(1, cand.numel()))
    counts, indices, nnz, above, least = [], [], 0, math.inf, torch.tensor(float("inf"))
    for r0 in range(0, rows.numel(), rblk):
        r = rows[r0 : r0 + rblk]
        approx, tol = screen(r, cand)
        inside = approx <= thr_down - tol  # surely within delta
        maybe = approx <= thr_up + tol
        bi, bj = torch.nonzero(maybe ^ inside, as_tuple=True)  # undecided by the bounds: exact check
        d2 = _pair_sq(x64, r[bi], cand[bj])
        keep = d2 <= delta2
        inside[bi[keep], bj[keep]] = True
        if not bool(keep.all()):
            above = min(above, float(d2[~keep].min()))
        # surely-outside pairs that may hold the least distance above delta: lower bound <= least upper so far
        approx.masked_fill_(maybe, float("inf"))
        least = torch.minimum(least, (approx.min(dim=1).values + tol[:, 0]).min())
        if torch.isfinite(least):
            ni, nj = torch.nonzero(approx <= _up(least) + tol, as_tuple=True)
            if ni.numel():
                above = min(above, float(_pair_sq(x64, r[ni], cand[nj]).min()))
        ri, ci = torch.nonzero(inside, as_tuple=True)
        nnz += ri.numel()
        if nnz > max_pairs:
            return None
        counts.append(torch.bincount(ri, minlength=r.numel()).numpy())
        indices.append(ci.numpy().astype(np.int32))
    indptr = np.zeros(rows.numel() + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    idx = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32)
    return _Graph(rows, indptr, idx, above)


def _feasibility_mip(g: _Graph, n_cand: int, budget: int, outliers: int, time_limit: float, presolve: bool):
    """Feasible(delta) as a covering MIP: u_j (new center j), o_i (outlier i); sum u = budget, sum o <= outliers,
    and for every uncovered row i: sum_{j: d(i,j) <= delta} u_j + o_i >= 1. Zero objective (feasibility)."""
    n_rows = g.rows.numel()
    use_o = outliers > 0 and n_rows > 0
    n_var = n_cand + (n_rows if use_o else 0)
    cons = []
    if n_rows:
        cover = sp.csr_matrix((np.ones(g.nnz), g.indices, g.indptr), shape=(n_rows, n_cand))
        if use_o:
            cover = sp.hstack([cover, sp.identity(n_rows, format="csr")], format="csr")
        cons.append(LinearConstraint(cover, 1, np.inf))
    pick = np.zeros((1, n_var))
    pick[0, :n_cand] = 1
    cons.append(LinearConstraint(sp.csr_matrix(pick), budget, budget))
    if use_o:
        out = np.zeros((1, n_var))
        out[0, n_cand:] = 1
        cons.append(LinearConstraint(sp.csr_matrix(out), 0, outliers))
    options = {"disp": False, "presolve": presolve}
    if math.isfinite(time_limit):
        options["time_limit"] = max(time_limit, 1e-3)
    return milp(np.zeros(n_var), integrality=np.ones(n_var), bounds=Bounds(0, 1), constraints=cons,
                options=options)


def _robust_radius2(dmin2: torch.Tensor, outliers: int) -> float:
    """Squared covering radius with the `outliers` farthest points dropped."""
    if outliers >= dmin2.numel():
        return 0.0
    return float(torch.sort(dmin2).values[dmin2.numel() - 1 - outliers])


def robust_kcenter(
    features: torch.Tensor,
    labeled: torch.Tensor,
    budget: int,
    outliers: int | None = None,
    time_limit: float | None = 60.0,
    total_time_limit: float | None = None,
    tolerance: float = 0.0,
    max_pairs: int = 30_000_000,
    max_solves: int = 100,
    presolve_pairs: int = 200_000,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Robust k-center (Sener & Savarese 2018, Sec. 4.2, Alg. 2): `budget` new centers among the unlabeled
    points that minimise the covering radius of all points when up to `outliers` (Xi) of them may stay
    uncovered; the labeled points are fixed centers. Returns (picks as int64 indices into `features`, info).

    The paper's Feasible(b, s0, delta, Xi) MIP assigns each point i to one center j (omega_ij <= u_j) and counts
    xi_ij = omega_ij for assignments farther than delta, sum xi <= Xi. Projected on (u, o) it is the covering
    program solved here: o_i = 1 iff i is assigned beyond delta, which a feasible omega can avoid exactly when
    some open center lies within delta of i, i.e. sum_{j: d(i,j) <= delta} u_j + o_i >= 1, sum o <= Xi,
    sum u = |s0| + b, u_j = 1 on s0 (the labeled centers are substituted out: their rows are dropped when a
    labeled point lies within delta, and the equality becomes sum over unlabeled u_j = b).

    Search. The greedy solution (`losses.kcenter_greedy`) gives delta_2OPT (its max min-distance) and is
    feasible at its own radius with Xi outliers dropped, the initial upper bound. The paper's lower bound
    delta_2OPT / 2 holds for the outlier-free optimum only; with Xi outliers this uses delta'/2, delta' the max
    min-distance after b + Xi greedy picks (b + Xi + 1 points pairwise >= delta' apart, at most Xi of them
    outliers), equal to the paper's for Xi = 0. Each probe is the midpoint; feasible: the upper bound drops
    to the radius the MIP's centers achieve; proved infeasible: the lower bound rises to the next pair distance
    above the probe; unresolved (time limit without a solution): treated as infeasible, as DAL's code does.
    The search ends when the bounds meet (the optimum, if every solve was resolved), when
    hi - lo <= tolerance * hi, or at total_time_limit / max_solves.

    Fallback: if no MIP solution was found, the greedy picks are returned; info says whether greedy was proved
    optimal (every probe below it infeasible) or the search fell back (`fallback`, `reason`).
    `outliers=None`: N // 10000 (DAL's code). Deterministic for the same input unless a time limit binds.

    Limits: `time_limit` seconds per MIP solve (HiGHS may overrun it by seconds), `total_time_limit` for the
    whole call; a probe whose graph holds more than `max_pairs` pairs ends the search (memory). HiGHS's MIP
    presolve (its dominated-columns pass) ignores the time limit on large covering matrices (minutes past a
    180 s limit on 30,000 MNIST points), so it is switched off above `presolve_pairs` pairs. Runs on the CPU.

    info: n, budget, outliers, delta_2opt, paper_lower (delta_2OPT / 2), delta_greedy (greedy radius with Xi
    outliers), lower_bound, delta_final, lower_final, mip_solves, solves (one record per probe), unresolved,
    optimal, seconds, source ("mip" | "greedy"), fallback, reason.
    """
    t0 = time.perf_counter()
    x = features.detach().to("cpu", torch.float32).contiguous()
    n = x.shape[0]
    mask = torch.as_tensor(labeled, dtype=torch.bool, device="cpu")
    if mask.shape != (n,):
        raise ValueError(f"labeled must be an ({n},) bool mask, got shape {tuple(mask.shape)}")
    cand = torch.nonzero(~mask).squeeze(1)
    if budget < 1 or budget > cand.numel():
        raise ValueError(f"budget {budget} must be in 1..{cand.numel()} (the unlabeled points)")
    xi = default_outliers(n) if outliers is None else int(outliers)
    if xi < 0:
        raise ValueError(f"outliers must be >= 0, got {xi}")
    total = math.inf if total_time_limit is None else float(total_time_limit)
    per_solve = math.inf if time_limit is None else float(time_limit)
    x64 = x.double()
    screen = _Screen(x)

    # greedy: b picks (upper bound) and b + Xi picks (lower bound); its first b picks are the b-pick run
    k = min(budget + xi, cand.numel())
    greedy_all = kcenter_greedy(x, mask, k)
    greedy = greedy_all[:budget]
    d_lab2 = _min_sq_dist(screen, x64, torch.nonzero(mask).squeeze(1))
    d_greedy2 = torch.minimum(d_lab2, _min_sq_dist(screen, x64, greedy))
    d_more2 = torch.minimum(d_greedy2, _min_sq_dist(screen, x64, greedy_all[budget:]))
    delta_2opt = math.sqrt(float(d_greedy2.max()))
    hi2 = _robust_radius2(d_greedy2, xi)
    lo2 = float(d_more2.max()) / 4.0 * (1.0 - 1e-6)  # margin: greedy ranked in fp32, this is float64
    info: dict = {
        "n": n, "budget": budget, "outliers": xi, "delta_2opt": delta_2opt, "paper_lower": delta_2opt / 2,
        "delta_greedy": math.sqrt(hi2), "lower_bound": math.sqrt(lo2), "solves": [],
    }
    best, found, unresolved, reason = greedy.numpy().astype(np.int64), False, 0, ""
    if log:
        log(f"greedy: delta_2OPT={delta_2opt:.6g}, radius with {xi} outliers={info['delta_greedy']:.6g}, "
            f"lower bound={info['lower_bound']:.6g} ({time.perf_counter() - t0:.1f} s)")

    while lo2 < hi2:
        lo, hi = math.sqrt(lo2), math.sqrt(hi2)
        if hi - lo <= tolerance * hi:
            reason = f"bounds within tolerance {tolerance}"
            break
        if time.perf_counter() - t0 >= total:
            reason = f"total time limit {total_time_limit} s reached"
            break
        if len(info["solves"]) >= max_solves:
            reason = f"max_solves {max_solves} reached"
            break
        mid2 = ((lo + hi) / 2.0) ** 2
        mid2 = min(max(mid2, lo2), np.nextafter(hi2, 0.0))
        rows = torch.nonzero(d_lab2 > mid2).squeeze(1)
        ts = time.perf_counter()
        g = _cover_graph(screen, x64, rows, cand, mid2, max_pairs)
        if g is None:
            reason = f"the graph at delta={math.sqrt(mid2):.6g} has more than max_pairs={max_pairs} pairs"
            info["solves"].append({"delta": math.sqrt(mid2), "pairs": None, "status": "too large",
                                   "seconds": time.perf_counter() - ts})
            unresolved += 1
            break
        tb = time.perf_counter()
        if log:
            log(f"probe delta={math.sqrt(mid2):.6g}: {g.nnz} pairs over {g.rows.numel()} rows "
                f"({tb - ts:.1f} s); MIP")
        res = _feasibility_mip(g, cand.numel(), budget, xi, min(per_solve, total - (tb - t0)),
                               g.nnz <= presolve_pairs)
        rec = {"delta": math.sqrt(mid2), "pairs": g.nnz, "rows": g.rows.numel(), "status": int(res.status),
               "message": str(res.message), "build_seconds": tb - ts, "seconds": time.perf_counter() - tb}
        info["solves"].append(rec)
        above = torch.where(d_lab2 > mid2, d_lab2, torch.tensor(math.inf, dtype=torch.float64)).min()
        next2 = min(g.next_above2, float(above))
        sol = None
        if res.x is not None and res.status in (0, 1):
            sol = cand[torch.as_tensor(res.x[: cand.numel()] > 0.5)]
            r2 = _robust_radius2(torch.minimum(d_lab2, _min_sq_dist(screen, x64, sol)), xi)
            if sol.numel() != budget or r2 > mid2:
                sol = None  # solver tolerance rounding: do not trust it
        if sol is not None:
            rec["result"] = "feasible"
            best, found, hi2 = sol.numpy().astype(np.int64), True, r2
        elif res.status == 2:
            rec["result"] = "infeasible"
            lo2 = next2
        else:
            rec["result"] = "unresolved (treated as infeasible)"
            unresolved += 1
            lo2 = next2
        if log:
            log(f"  {rec['result']}: {rec['message']} ({rec['seconds']:.1f} s); "
                f"bounds [{math.sqrt(min(lo2, hi2)):.6g}, {math.sqrt(hi2):.6g}]")
    else:
        reason = "bounds met"

    optimal = lo2 >= hi2 and unresolved == 0
    info.update({
        "delta_final": math.sqrt(hi2), "lower_final": math.sqrt(min(lo2, hi2)),
        "mip_solves": len(info["solves"]),
        "unresolved": unresolved, "optimal": optimal, "seconds": time.perf_counter() - t0,
        "source": "mip" if found else "greedy",
        "fallback": not found and not optimal,
        "reason": reason if found or not optimal else "greedy is optimal: every probe below it is infeasible",
    })
    if info["fallback"]:
        info["reason"] = f"no MIP solution below the greedy radius; greedy picks returned ({reason})"
    return best, info
