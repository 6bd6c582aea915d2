"""NC metrics against an independent NumPy computation and on inputs with known values."""

import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import metrics as M


def _numpy_reference(H, y, W, b, K):
    N = len(y)
    mu = np.stack([H[y == k].mean(0) for k in range(K)])
    g = H.mean(0)
    dev = H - mu[y]
    sw = dev.T @ dev / N
    c = mu - g
    sb = c.T @ c / K
    nc1 = np.trace(sw @ np.linalg.pinv(sb)) / K

    def etf_dist(V):
        G = V @ V.T
        E = np.eye(K) - np.ones((K, K)) / K
        return np.linalg.norm(G / np.linalg.norm(G) - E / np.linalg.norm(E))

    nc3 = np.sum((W / np.linalg.norm(W) - c / np.linalg.norm(c)) ** 2)
    logits = H @ W.T + b
    near = np.argmin(((H[:, None] - mu[None]) ** 2).sum(-1), 1)
    nc4 = np.mean(np.argmax(logits, 1) != near)
    var = np.array([((H[y == k] - mu[k]) ** 2).sum(1).mean() for k in range(K)])
    pairs = [
        (var[k] + var[l]) / (2 * np.sum((mu[k] - mu[l]) ** 2))
        for k in range(K)
        for l in range(K)
        if k != l
    ]
    norms = np.linalg.norm(c, axis=1)
    unit = c / norms[:, None]
    cos = (unit @ unit.T)[~np.eye(K, dtype=bool)]
    return {
        "nc1": nc1,
        "nc2": etf_dist(c),
        "nc2_w": etf_dist(W),
        "nc3": nc3,
        "nc4": nc4,
        "cdnv": np.mean(pairs),
        "equinorm": norms.std() / norms.mean(),
        "equiangular": cos.std(),
        "maxangle": np.mean(np.abs(cos + 1 / (K - 1))),
    }


@pytest.mark.parametrize("per_class", [(7, 7, 7, 7, 7), (9, 3, 5, 2, 6)])
def test_metrics_match_numpy_reference(per_class):
    rng = np.random.default_rng(0)
    K, d = len(per_class), 6
    y = np.repeat(np.arange(K), per_class)
    H = rng.normal(size=(len(y), d)) + 2 * rng.normal(size=(K, d))[y]
    W, b = rng.normal(size=(K, d)), rng.normal(size=K)
    ref = _numpy_reference(H, y, W, b, K)
    Hj, yj = jnp.asarray(H), jnp.asarray(y)
    centred = M.class_means(Hj, yj, K)[0] - Hj.mean(0)[None, :]
    got = {
        "nc1": M.nc1(Hj, yj, K),
        "nc2": M.nc2_etf_distance(centred),
        "nc2_w": M.nc2_etf_distance(jnp.asarray(W)),
        "nc3": M.nc3_self_duality(jnp.asarray(W), Hj, yj, K),
        "nc4": M.nc4_ncc_mismatch(jnp.asarray(W), Hj, yj, K, jnp.asarray(b)),
        "cdnv": M.cdnv(Hj, yj, K),
        "equinorm": M.equinorm(centred),
        "equiangular": M.equiangularity(centred),
        "maxangle": M.max_angle_deviation(centred),
    }
    for name, value in got.items():
        # float64 on both sides: agreement to rounding of a few matrix products.
        np.testing.assert_allclose(float(value), ref[name], rtol=1e-10, err_msg=name)


def _etf(K, d, scale=1.0):
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.normal(size=(d, K)))
    gram_root = np.eye(K) - np.ones((K, K)) / K
    return jnp.asarray(scale * gram_root @ basis.T)  # rows: a simplex ETF


def test_collapsed_etf_features_give_zero_nc_metrics():
    K, d, n = 5, 8, 4
    means = _etf(K, d, scale=3.0)
    y = jnp.repeat(jnp.arange(K), n)
    H = means[y] + 1.5  # a common offset must not matter (metrics centre by μ_G)
    W = 0.7 * means
    assert float(M.nc1(H, y, K)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.nc2_etf_distance(means)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.equinorm(means)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.equiangularity(means)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.max_angle_deviation(means)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.nc3_self_duality(W, H, y, K)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.nc4_ncc_mismatch(W, H, y, K)) == 0.0
    assert float(M.cdnv(H, y, K)) == 0.0


def test_etf_gram_and_orthogonal_frame_distances():
    K = 4
    E = M.etf_gram(K, jnp.float64)
    np.testing.assert_allclose(np.diag(E), 1.0)
    np.testing.assert_allclose(E[0, 1], -1 / (K - 1))
    I = jnp.eye(K)
    assert float(M.nc2_orthogonal_distance(I)) == pytest.approx(0.0, abs=1e-12)
    # ‖I/√K − (I − 11ᵀ/K)/√(K−1)‖_F by hand, for an orthogonal frame seen as an ETF.
    expected = np.linalg.norm(np.eye(K) / 2 - (np.eye(K) - 0.25) / np.sqrt(3))
    assert float(M.nc2_etf_distance(I)) == pytest.approx(expected, rel=1e-12)


def test_known_nc1_for_two_point_classes():
    # Two classes at ±e1 with within-class spread ±s along e1: Σ_B = diag(1,0),
    # Σ_W = diag(s², 0), so tr(Σ_W Σ_B^†)/K = s²/2.
    s = 0.3
    H = jnp.array([[1 - s, 0.0], [1 + s, 0.0], [-1 - s, 0.0], [-1 + s, 0.0]])
    y = jnp.array([0, 0, 1, 1])
    assert float(M.nc1(H, y, 2)) == pytest.approx(s**2 / 2, rel=1e-12)


def test_nc4_counts_disagreements():
    H = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    y = jnp.array([0, 1, 0, 1])
    W_flipped = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # always picks the other class
    assert float(M.nc4_ncc_mismatch(W_flipped, H, y, 2)) == 1.0
