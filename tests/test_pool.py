"""ActivePool: disjoint, covering, seeded initial sets shared by every method, strict `label`."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from repro.data.pool import ActivePool, dataset_permutation, indices_sha256


@given(size=st.integers(2, 500), frac=st.floats(0.01, 0.5), seed=st.integers(0, 2**31 - 1))
def test_initial_pool_is_prefix_of_seeded_permutation(size, frac, seed):
    n0 = max(1, int(size * frac))
    pool = ActivePool.initial("cifar10", size, n0, seed)
    perm = dataset_permutation("cifar10", size, seed)
    assert set(pool.labeled) == set(perm[:n0])
    # identical for every method: depends only on (dataset, size, seed)
    assert ActivePool.initial("cifar10", size, n0, seed).sha256() == pool.sha256()
    # a larger initial size extends the same prefix
    if n0 < size:
        assert set(pool.labeled) <= set(ActivePool.initial("cifar10", size, n0 + 1, seed).labeled)


@given(size=st.integers(10, 300), seed=st.integers(0, 1000), data=st.data())
def test_labeled_unlabeled_disjoint_and_cover(size, seed, data):
    pool = ActivePool.initial("mnist", size, 2, seed)
    budgets = data.draw(st.lists(st.integers(1, 5), max_size=4))
    expected = 2
    for k, b in enumerate(budgets):
        b = min(b, pool.n_unlabeled)
        if b == 0:
            break
        pick = np.random.default_rng(k).choice(pool.unlabeled, b, replace=False)
        pool.label(pick)
        expected += b
        assert pool.n_labeled == expected  # size after k stages
    lab, unl = set(pool.labeled), set(pool.unlabeled)
    assert not lab & unl
    assert lab | unl == set(range(size))


def test_different_seeds_and_datasets_give_different_pools():
    a = ActivePool.initial("cifar10", 1000, 100, 0).sha256()
    assert a != ActivePool.initial("cifar10", 1000, 100, 1).sha256()
    assert a != ActivePool.initial("cifar100", 1000, 100, 0).sha256()


@pytest.mark.parametrize("bad,match", [
    ([3, 3], "duplicate"), ([10], "out of range"), ([-1], "out of range"), ([0], "already labeled"),
    ([[1, 2]], "1-D"), ([1.5], "integers"),
])
def test_label_rejects_bad_indices(bad, match):
    pool = ActivePool(10, np.array([0]))
    before = pool.labeled.copy()
    with pytest.raises(ValueError, match=match):
        pool.label(np.array(bad))
    assert np.array_equal(pool.labeled, before)  # nothing half-applied


def test_hash_is_order_free():
    assert indices_sha256([3, 1, 2]) == indices_sha256(np.array([1, 2, 3]))
    assert indices_sha256([1, 2]) != indices_sha256([1, 3])
