"""Property tests of the Methods-I math in repro.al.losses (each docstring cites the equation it implements)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from repro.al import scores, selection
from repro.al.losses import ads as ads_losses
from repro.al.losses import mcdal as mcdal_losses

from .test_losses import prob_matrices


@st.composite
def prob_pairs(draw):
    p = draw(prob_matrices())
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.softmax(torch.randn(p.shape, generator=g) * draw(st.sampled_from([0.1, 1.0, 4.0])), 1)
    return p, q


@st.composite
def mc_probs(draw):
    t, n, c = draw(st.integers(1, 8)), draw(st.integers(1, 10)), draw(st.integers(2, 8))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.softmax(torch.randn(t, n, c, generator=g) * draw(st.sampled_from([0.1, 1.0, 5.0])), -1)


@given(prob_pairs(), st.sampled_from(mcdal_losses.DISCREPANCIES))
def test_discrepancy_zero_on_identical(pq, kind):
    p, _ = pq
    assert torch.allclose(mcdal_losses.discrepancy(p, p, kind), torch.zeros(p.shape[0]), atol=1e-6)


@given(prob_pairs(), st.sampled_from(["l1", "l2"]))
def test_l1_l2_symmetric(pq, kind):
    p, q = pq
    assert torch.allclose(mcdal_losses.discrepancy(p, q, kind), mcdal_losses.discrepancy(q, p, kind), atol=1e-7)


@given(prob_pairs())
def test_l1_range_is_0_to_2_over_c(pq):
    p, q = pq
    d = mcdal_losses.discrepancy(p, q, "l1")
    assert (d >= 0).all() and (d <= 2.0 / p.shape[1] + 1e-6).all()


@given(prob_pairs())
def test_kl_nonnegative(pq):
    p, q = pq
    assert (mcdal_losses.discrepancy(p, q, "kl") >= 0).all()


@given(st.lists(prob_matrices(max_n=8, max_c=6), min_size=1, max_size=1), st.integers(1, 7))
def test_mcdal_acquisition_nonnegative_and_zero_when_heads_agree(ps, k):
    p = ps[0]
    same = torch.stack([p] * (k + 1))  # main + k heads, all identical everywhere
    d = mcdal_losses.pairwise_discrepancy(same)
    assert torch.allclose(d, torch.zeros_like(d), atol=1e-6)
    s = mcdal_losses.mcdal_acquisition(d[: max(1, len(d) // 2)], d)
    assert torch.allclose(s, torch.zeros_like(s), atol=1e-6)
    g = torch.Generator().manual_seed(k)
    other = torch.softmax(torch.randn(k + 1, *p.shape, generator=g), -1)
    d2 = mcdal_losses.pairwise_discrepancy(other)
    assert (mcdal_losses.mcdal_acquisition(d2, d2.flip(0)) >= 0).all()


def test_pairwise_discrepancy_counts_all_pairs():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(3, 5, 4, generator=g), -1)
    d = mcdal_losses.pairwise_discrepancy(p)
    ref = mcdal_losses.discrepancy(p[1], p[2]) + mcdal_losses.discrepancy(p[0], p[1]) + mcdal_losses.discrepancy(p[0], p[2])
    assert torch.allclose(d, ref)  # D(x) = d(p1, p2) + d(p, p1) + d(p, p2) (MCDAL Eq. 5 text)


@given(st.lists(st.floats(0, 5), min_size=2, max_size=30), st.integers(1, 256), st.floats(0, 1))
def test_ads_weights(es, n, tau):
    e = torch.tensor(sorted(es))
    wa, wd = ads_losses.ads_weights(e, n, tau)
    assert torch.allclose(wa + wd, torch.full_like(e, 1.0 / n), atol=1e-7)
    assert (wa > 0).all() and (wd > 0).all() and (wa < 1.0 / n).all() and (wd < 1.0 / n).all()
    assert (wa[1:] <= wa[:-1] + 1e-9).all() and (wd[1:] >= wd[:-1] - 1e-9).all()  # monotone in E(u)


@st.composite
def sigmoid_pairs(draw):
    n, c = draw(st.integers(1, 10)), draw(st.integers(2, 12))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.sigmoid(torch.randn(n, c, generator=g) * 3), torch.sigmoid(torch.randn(n, c, generator=g) * 3)


@given(sigmoid_pairs(), st.sampled_from(["mean", "max", "min"]))
def test_ads_entropy_range_and_symmetry(pair, reduce):
    s1, s2 = pair
    e = ads_losses.ads_entropy(s1, s2, reduce)
    c = s1.shape[1]
    assert (e >= 0).all() and (e <= c / math.e + 1e-5).all()  # raw sigmoid scores: each -s log s <= 1/e
    assert torch.allclose(e, ads_losses.ads_entropy(s2, s1, reduce), atol=1e-6)
    r = ads_losses.ads_entropy(s1, s2, reduce, renormalise=True)  # the code's reading: a distribution's entropy
    assert (r >= 0).all() and (r <= math.log(c) + 1e-5).all()
    e2 = ads_losses.ads_entropy(s1, s2, reduce, log_base=2.0)
    assert torch.allclose(e2, e / math.log(2.0), atol=1e-5)
    lo, mid, hi = (ads_losses.ads_entropy(s1, s2, r) for r in ("min", "mean", "max"))
    assert (lo <= mid + 1e-6).all() and (mid <= hi + 1e-6).all()


def test_ads_entropy_is_eq3_on_raw_sigmoid_scores():
    """Eq. 3 as written: -1/2 (sum s1 log s1 + sum s2 log s2) on the sigmoid outputs, natural log, no
    renormalisation; a head at 0.5 everywhere contributes C/2 * log 2."""
    s1 = torch.full((1, 4), 0.5)
    s2 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    e = ads_losses.ads_entropy(s1, s2)
    assert e.item() == pytest.approx(0.5 * 4 * 0.5 * math.log(2.0))
    assert ads_losses.ads_entropy(s1, s2, renormalise=True).item() == pytest.approx(0.5 * math.log(4.0))


@given(sigmoid_pairs())
def test_ads_agreement_and_discrepancy_losses(pair):
    s1, s2 = pair
    la, ld = ads_losses.ads_agreement_loss(s1, s2), ads_losses.ads_discrepancy_loss(s1, s2)
    assert torch.allclose(la + ld, torch.ones_like(la)) and (la >= 0).all() and (la <= 1).all()
    assert torch.allclose(ads_losses.ads_agreement_loss(s1, s1), torch.zeros_like(la))


@given(prob_matrices())
def test_least_confidence_and_margin_ranges(p):
    c = p.shape[1]
    lc, m = scores.least_confidence(p), scores.margin(p)
    assert (lc >= -1e-7).all() and (lc <= 1 - 1.0 / c + 1e-6).all()
    assert (m >= -1 - 1e-7).all() and (m <= 1e-7).all()
    u = torch.full((1, c), 1.0 / c)
    assert torch.isclose(scores.margin(u), torch.zeros(1), atol=1e-7).all()


@given(mc_probs())
def test_variation_ratio_range(mc):
    t, _, c = mc.shape
    vr = scores.variation_ratio(mc)
    assert (vr >= 0).all() and (vr <= 1 - 1.0 / min(t, c) + 1e-6).all()
    assert torch.allclose(scores.variation_ratio(mc[:1].repeat(t, 1, 1)), torch.zeros_like(vr))


@given(mc_probs())
def test_bald_between_zero_and_predictive_entropy(mc):
    b, h = scores.bald(mc), scores.mc_entropy(mc)
    assert (b >= 0).all() and (b <= h + 1e-5).all()
    same = mc[:1].repeat(mc.shape[0], 1, 1)
    assert torch.allclose(scores.bald(same), torch.zeros_like(b), atol=1e-5)


def _kcenter_float64(x: np.ndarray, labeled: np.ndarray, budget: int):
    """Brute-force float64 reference: picks and, per step, the gap between the best and second-best distance."""
    x = x.astype(np.float64)
    d = np.full(len(x), np.inf)
    for i in np.flatnonzero(labeled):
        d = np.minimum(d, ((x - x[i]) ** 2).sum(1))
    d[labeled] = -np.inf
    picks, gaps = [], []
    for _ in range(budget):
        order = np.argsort(-d, kind="stable")
        j = order[0]
        second = d[order[1]] if len(order) > 1 and np.isfinite(d[order[1]]) else -np.inf
        if np.isinf(d[j]):  # no center yet: all tie at infinity, lowest index (both implementations)
            gaps.append(np.inf)
        else:
            gaps.append((d[j] - second) / max(d[j], 1e-30))
        picks.append(j)
        d = np.minimum(d, ((x - x[j]) ** 2).sum(1))
        d[j] = -np.inf
    return np.array(picks), np.array(gaps)


@given(st.integers(20, 200), st.integers(2, 24), st.integers(0, 10), st.integers(1, 15), st.integers(0, 2**31 - 1),
       st.booleans())
def test_kcenter_matches_float64_reference(n, d, n_lab, budget, seed, clustered):
    assume(budget <= n - n_lab)
    rng = np.random.default_rng(seed)
    if clustered:  # tight clusters far from the origin: where the expansion formula cancels
        x = rng.normal(size=(5, d))[rng.integers(0, 5, n)] * 100 + rng.normal(size=(n, d)) * 1e-2
    else:
        x = rng.normal(size=(n, d))
    labeled = np.zeros(n, dtype=bool)
    labeled[rng.choice(n, n_lab, replace=False)] = True
    picks = selection.kcenter_greedy(torch.tensor(x, dtype=torch.float32), torch.tensor(labeled), budget).numpy()
    ref, gaps = _kcenter_float64(x.astype(np.float32), labeled, budget)
    # identical wherever float64's top-two gap exceeds fp32 resolution; after the first near-tie, stop comparing
    for step in range(budget):
        if gaps[step] <= 1e-5:
            break
        assert picks[step] == ref[step], (step, picks[: step + 1], ref[: step + 1])
    # every pick is the farthest remaining point at its step (checked in float64 on the fp32 picks)
    xd = x.astype(np.float32).astype(np.float64)
    dist = np.full(n, np.inf)
    for i in np.flatnonzero(labeled):
        dist = np.minimum(dist, ((xd - xd[i]) ** 2).sum(1))
    dist[labeled] = -np.inf
    for j in picks:
        assert dist[j] >= dist.max() * (1 - 1e-5) - 1e-6
        dist = np.minimum(dist, ((xd - xd[j]) ** 2).sum(1))
        dist[j] = -np.inf
    assert len(set(picks.tolist())) == budget and not labeled[picks].any()


def test_kcenter_ties_go_to_lowest_index():
    x = torch.tensor([[0.0], [1.0], [-1.0], [1.0], [-1.0]])
    labeled = torch.tensor([True, False, False, False, False])
    assert selection.kcenter_greedy(x, labeled, 2).tolist() == [1, 2]


@given(st.integers(1, 5000), st.integers(1, 50))
def test_split_budget(budget, parts):
    sizes = selection.split_budget(budget, parts)
    assert sum(sizes) == budget and len(sizes) == min(parts, budget)
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@given(prob_matrices())
def test_egl_is_probability_weighted_norm(p):
    g = torch.rand(p.shape, generator=torch.Generator().manual_seed(0))
    e = scores.expected_gradient_length(g, p)
    assert (e >= 0).all() and (e <= g.max(1).values + 1e-6).all()


def test_select_topk_with_minus_inf_excluded_candidates():
    s = torch.tensor([float("-inf"), 1.0, 2.0])
    assert selection.select_topk(s, 2, torch.tensor([1, 2])).tolist() == [2, 1]
    with pytest.raises(ValueError):
        selection.select_topk(s, 4)


def test_kcenter_without_labeled_points_and_with_ties():
    """No center yet (every distance +inf): the first pick is index 0, then the farthest; duplicates tie to the
    lowest index (the lookahead's candidates keep index order among ties)."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    none = torch.zeros(5, dtype=torch.bool)
    assert selection.kcenter_greedy(x, none, 3).tolist() == [0, 3, 1]
    assert selection.kcenter_greedy(x, none, 3, lookahead=1).tolist() == [0, 3, 1]
