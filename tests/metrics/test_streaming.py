"""Streaming NC statistics equal the in-memory metrics for any batch split, merge
associatively, and give NC4 against fixed means in a second pass.

Every batch has the same padded shape [B, d] with a row mask, so one compiled
``update`` serves all splits; float64 throughout (rounding ≪ 1e-12).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import metrics as M
from collapse_jax.metrics import streaming as S

K, D, B = 5, 6, 8
update = jax.jit(S.update)
merge = jax.jit(S.merge)
from_stats = jax.jit(S.metrics_from_stats)


def _data(per_class, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), per_class)
    H = rng.normal(size=(len(y), D)) + 2 * rng.normal(size=(K, D))[y] + offset
    return H, y, rng.normal(size=(K, D)), rng.normal(size=K)


def _stream(H, y, order, sizes, dtype=jnp.float64):
    """Accumulates rows ``order`` in batches of the given sizes (each ≤ B, padded)."""
    stats = S.init(K, D, dtype)
    start = 0
    for n in sizes:
        rows = order[start : start + n]
        start += n
        Hb = np.zeros((B, D))
        yb = np.zeros(B, int)
        Hb[:n], yb[:n] = H[rows], y[rows]
        stats = update(stats, Hb, yb, np.arange(B) < n)
    assert start == len(order)
    return stats


@jax.jit
def _in_memory(H, y, W, b):
    c = M.centred_class_means(H, y, K)
    present = M.class_means(H, y, K)[1] > 0
    return {
        "nc1": M.nc1(H, y, K),
        "nc1_top_eigen": M.nc1_top_eigen(H, y, K),
        "nc1_trace_quotient": M.nc1_trace_quotient(H, y, K),
        "nc2_etf": M.nc2_etf_distance(c, present=present),
        "nc2_orth": M.nc2_orthogonal_distance(c, present=present),
        "equinorm": M.equinorm(c, present=present),
        "equiangularity": M.equiangularity(c, present=present),
        "max_angle_deviation": M.max_angle_deviation(c, present=present),
        "gnc2": M.gnc2_hyperspherical_energy(c, 1.0, present=present),
        "cdnv": M.cdnv(H, y, K),
        "cdnv_matrix": M.cdnv_matrix(H, y, K),
        "class_variances": M.class_variances(H, y, K),
        "nc2_w_etf": M.nc2_etf_distance(W, present=present),
        "nc3": M.nc3_self_duality(W, H, y, K),
        "self_duality_etf": M.self_duality_etf_distance(W, H, y, K),
    }


def _splits(y):
    n = len(y)
    rng = np.random.default_rng(1)
    by_class = np.argsort(y, kind="stable")  # batches that miss most classes
    uneven = [1, 8, 3, 8, 2, 7, 5, 8, 8, 1, 4, 8, 8]  # sizes, padded rows included
    return {
        "sorted_full": (by_class, [B] * (n // B) + [n % B] * (n % B > 0)),
        "shuffled_uneven": (rng.permutation(n), _fit(uneven, n)),
        "single_rows": (rng.permutation(n), [1] * n),
    }


def _fit(sizes, n):
    out, total = [], 0
    for s in sizes * n:
        s = min(s, n - total)
        if s == 0:
            break
        out.append(s)
        total += s
    return out


@pytest.mark.parametrize("per_class", [(9, 3, 5, 2, 16), (9, 8, 0, 10, 8)])
def test_streamed_metrics_equal_in_memory_metrics_for_every_batch_split(per_class):
    H, y, W, b = _data(per_class)
    expected = _in_memory(H, y, W, b)
    for name, (order, sizes) in _splits(y).items():
        got = from_stats(_stream(H, y, order, sizes), W, b)
        for key, value in expected.items():
            # float64, both sides a few matrix products of O(1) numbers.
            np.testing.assert_allclose(
                got[key], value, rtol=1e-12, atol=1e-14, err_msg=f"{name}: {key}"
            )
        np.testing.assert_array_equal(got["counts"], np.bincount(y, minlength=K))


def test_merge_is_associative_and_commutative_across_different_references():
    H, y, _, _ = _data((9, 3, 5, 2, 16), seed=2)
    parts = np.array_split(np.random.default_rng(3).permutation(len(y)), 3)
    # Each part is streamed alone, so each has its own class references.
    a, b, c = (_stream(H, y, p, _fit([B], len(p))) for p in parts)
    left, right = merge(merge(a, b), c), merge(a, merge(b, c))
    swapped = merge(c, merge(b, a))
    for other in (right, swapped):
        np.testing.assert_array_equal(left.counts, other.counts)
        np.testing.assert_allclose(
            S.class_means_from_stats(left), S.class_means_from_stats(other), rtol=1e-13
        )
        np.testing.assert_allclose(left.scatter, other.scatter, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(left.class_sq, other.class_sq, rtol=1e-12)
    whole = _stream(H, y, np.arange(len(y)), _fit([B], len(y)))
    np.testing.assert_allclose(left.scatter, whole.scatter, rtol=1e-12, atol=1e-12)


def test_merging_empty_statistics_changes_nothing():
    H, y, _, _ = _data((4, 4, 4, 4, 4), seed=4)
    s = _stream(H, y, np.arange(20), [8, 8, 4])
    for m in (merge(S.init(K, D, jnp.float64), s), merge(s, S.init(K, D, jnp.float64))):
        for x, z in zip(m, s, strict=True):
            np.testing.assert_allclose(x, z, rtol=1e-15)


def _second_pass(stats, H, y, W, b):
    """NC4 counts of ``H`` against ``stats``' means, in padded batches of B rows."""
    acc = S.ncc_init(K)
    for start in range(0, len(y), B):
        n = min(B, len(y) - start)
        Hb, yb = np.zeros((B, D)), np.zeros(B, int)
        Hb[:n], yb[:n] = H[start : start + n], y[start : start + n]
        acc = ncc_update(acc, stats, Hb, yb, W, b, np.arange(B) < n)
    return acc


ncc_update = jax.jit(S.ncc_update)


def test_second_pass_nc4_on_test_features_uses_the_training_means():
    H, y, W, b = _data((9, 8, 0, 10, 8), seed=5)
    stats = _stream(H, y, np.arange(len(y)), _fit([B], len(y)))
    ks = np.unique(y)
    mu = np.stack([H[y == k].mean(0) for k in ks])
    # The test set has class 2, absent from training; then the training set itself.
    for Ht, yt in (_data((3, 6, 4, 3, 8), seed=6)[:2], (H, y)):
        acc = _second_pass(stats, Ht, yt, W, b)
        overall, per = S.nc4_from_ncc(acc)
        near = ks[np.argmin(((Ht[:, None] - mu[None]) ** 2).sum(-1), 1)]
        miss = np.argmax(Ht @ W.T + b, 1) != near
        assert float(overall) == pytest.approx(miss.mean(), abs=1e-15)
        expected = [
            miss[yt == k].mean() if np.any(yt == k) else np.nan for k in range(K)
        ]
        np.testing.assert_allclose(per, expected)
        np.testing.assert_array_equal(
            acc.ncc_errors, [np.sum((near != yt)[yt == k]) for k in range(K)]
        )


def test_streamed_nc5_equals_in_memory_nc5():
    H, y, _, _ = _data((9, 3, 5, 2, 16), seed=7)
    H_ood = np.random.default_rng(8).normal(size=(11, D)) + 0.5
    stats = _stream(H, y, np.arange(len(y)), _fit([B], len(y)))
    # OOD features accumulated as class 0 of an accumulator of the same shape.
    ood = _stream(H_ood, np.zeros(11, int), np.arange(11), [8, 3])
    assert float(S.nc5_from_stats(stats, ood)) == pytest.approx(
        float(M.nc5_ood_orthogonality(H, y, K, H_ood)), rel=1e-12
    )


def test_float32_stream_far_from_the_origin_matches_float64():
    H, y, _, _ = _data((9, 3, 5, 2, 16), seed=9, offset=1e4)
    H = H.astype(np.float32).astype(np.float64)  # both see the float32 inputs
    order, sizes = np.arange(len(y)), _fit([B], len(y))
    got, exact = (_stream(H, y, order, sizes, t) for t in (jnp.float32, jnp.float64))

    def centred(s):  # reference + mean exactly in float64, then centred
        means = np.asarray(s.ref, np.float64) + np.asarray(s.means, np.float64)
        n = np.asarray(s.counts, np.float64)
        return means - n @ means / n.sum()

    # Means are kept relative to per-class references near them, so only O(1)
    # numbers are summed: relative error ~ (terms)·eps ≈ 35·6e-8 ≈ 2e-6 at worst.
    scale = np.abs(centred(exact)).max()
    np.testing.assert_allclose(centred(got), centred(exact), atol=1e-5 * scale)
    np.testing.assert_allclose(
        got.scatter, exact.scatter, atol=1e-5 * np.abs(exact.scatter).max()
    )
    np.testing.assert_allclose(got.class_sq, exact.class_sq, rtol=1e-5)


def test_bad_batches_raise_value_errors_naming_the_argument():
    stats = S.init(K, D)
    with pytest.raises(ValueError, match="labels must lie"):
        S.update(stats, np.zeros((3, D)), np.array([0, 1, K]))
    with pytest.raises(ValueError, match="columns"):
        S.update(stats, np.zeros((3, D + 1)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="mask"):
        S.update(stats, np.zeros((3, D)), np.array([0, 1, 2]), np.ones(2))
    with pytest.raises(ValueError, match="dim"):
        S.init(K, 0)
