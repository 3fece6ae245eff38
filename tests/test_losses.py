"""Property tests of the pure-math core (repro.al.losses)."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from repro.al import scores, selection


@st.composite
def prob_matrices(draw, max_n=20, max_c=12):
    n, c = draw(st.integers(1, max_n)), draw(st.integers(2, max_c))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    temp = draw(st.sampled_from([0.01, 0.3, 1.0, 5.0]))
    logits = torch.randn(n, c, generator=g) / temp
    probs = torch.softmax(logits, 1)
    if draw(st.booleans()):  # exact zeros and one-hots
        probs[0] = 0
        probs[0, 0] = 1
    return probs


@given(prob_matrices())
def test_entropy_range(p):
    h = scores.entropy(p)
    assert h.shape == (p.shape[0],)
    assert (h >= 0).all() and (h <= math.log(p.shape[1]) + 1e-5).all()


@given(st.integers(2, 50))
def test_entropy_maximal_at_uniform_zero_at_onehot(c):
    u = torch.full((1, c), 1.0 / c)
    assert torch.isclose(scores.entropy(u), torch.tensor([math.log(c)]), atol=1e-5).all()
    onehot = torch.zeros(1, c)
    onehot[0, c - 1] = 1
    assert scores.entropy(onehot).item() == 0.0


@given(prob_matrices(), st.integers(0, 2**31 - 1))
def test_entropy_invariant_to_class_permutation(p, seed):
    perm = torch.randperm(p.shape[1], generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(scores.entropy(p), scores.entropy(p[:, perm]), atol=1e-6)


@given(prob_matrices(), st.integers(0, 2**31 - 1))
def test_entropy_below_uniform_mixture(p, seed):
    """Mixing toward uniform never lowers entropy (concavity)."""
    u = torch.full_like(p, 1.0 / p.shape[1])
    assert (scores.entropy(0.5 * p + 0.5 * u) >= scores.entropy(p) - 1e-5).all()


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=60), st.data())
def test_select_topk_exact_distinct_deterministic_ties_low_index(values, data):
    scores = torch.tensor(values, dtype=torch.float32)  # small integers: many exact ties
    n = len(values)
    cand = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)))
    k = data.draw(st.integers(0, len(cand)))
    picked = selection.select_topk(scores, k, torch.tensor(cand))
    assert picked.dtype == torch.int64 and len(picked) == k
    assert len(set(picked.tolist())) == k and set(picked.tolist()) <= set(cand)
    assert torch.equal(picked, selection.select_topk(scores, k, torch.tensor(cand[::-1])))  # order-free
    # reference: sort by (-score, index)
    ref = sorted(cand, key=lambda i: (-values[i], i))[:k]
    assert picked.tolist() == ref


def test_select_topk_rejects_nan_and_bad_k():
    import pytest

    with pytest.raises(ValueError, match="NaN"):
        selection.select_topk(torch.tensor([0.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="cannot select"):
        selection.select_topk(torch.tensor([0.0, 1.0]), 3)
