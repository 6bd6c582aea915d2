"""NC metrics against an independent NumPy computation and on inputs with known values.

Most checks go through one jitted function of every metric (``_all``), compiled once
per input shape, so the file stays fast; float64 throughout unless a test is about
float32.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import metrics as M

K, D = 5, 6
_nc1 = jax.jit(M.nc1, static_argnums=2)


@functools.partial(jax.jit, static_argnums=0)
def _all(num_classes, H, y, W, b, H_ood):
    """Every array metric of one dataset, one compiled program."""
    c = M.centred_class_means(H, y, num_classes)
    means, counts = M.class_means(H, y, num_classes)
    present = counts > 0
    return {
        "nc1": M.nc1(H, y, num_classes),
        "nc1_top": M.nc1_top_eigen(H, y, num_classes),
        "nc1_trace": M.nc1_trace_quotient(H, y, num_classes),
        "nc2": M.nc2_etf_distance(c, present=present),
        "nc2_w": M.nc2_etf_distance(W, present=present),
        "nc2_orth": M.nc2_orthogonal_distance(c, present=present),
        "nc3": M.nc3_self_duality(W, H, y, num_classes),
        "duality": M.self_duality_etf_distance(W, H, y, num_classes),
        "nc4": M.nc4_ncc_mismatch(W, H, y, num_classes, b),
        "nc4_class": M.nc4_per_class(W, H, y, num_classes, b),
        "cdnv": M.cdnv(H, y, num_classes),
        "cdnv_matrix": M.cdnv_matrix(H, y, num_classes),
        "variances": M.class_variances(H, y, num_classes),
        "equinorm": M.equinorm(c, present=present),
        "equiangular": M.equiangularity(c, present=present),
        "maxangle": M.max_angle_deviation(c, present=present),
        "gnc2": M.gnc2_hyperspherical_energy(c, 1.0, present=present),
        "gnc2_log": M.gnc2_hyperspherical_energy(c, 0.0, present=present),
        "nc5": M.nc5_ood_orthogonality(H, y, num_classes, H_ood),
        "centred": c,
        "means": means,
    }


def _numpy_reference(H, y, W, b, H_ood):
    """Plain NumPy over the present classes only (absent ones are dropped)."""
    ks = np.unique(y)
    Kp, N = len(ks), len(y)
    mu = np.stack([H[y == k].mean(0) for k in ks])
    g = H.mean(0)
    idx = np.searchsorted(ks, y)
    dev = H - mu[idx]
    sw = dev.T @ dev / N
    c = mu - g
    sb = c.T @ c / Kp
    w, V = np.linalg.eigh(sb)
    top = V[:, -(Kp - 1) :] @ np.diag(1 / w[-(Kp - 1) :]) @ V[:, -(Kp - 1) :].T
    Wp = W[ks]
    E = np.eye(Kp) - np.ones((Kp, Kp)) / Kp

    def gram_dist(G, T):
        return np.linalg.norm(G / np.linalg.norm(G) - T / np.linalg.norm(T))

    logits = H @ W.T + b
    near = ks[np.argmin(((H[:, None] - mu[None]) ** 2).sum(-1), 1)]
    miss = np.argmax(logits, 1) != near
    var = np.array([((H[y == k] - mu[i]) ** 2).sum(1).mean() for i, k in enumerate(ks)])
    cd = np.full((Kp, Kp), np.nan)
    for i in range(Kp):
        for j in range(Kp):
            if i != j:
                cd[i, j] = (var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2))
    norms = np.linalg.norm(c, axis=1)
    unit = c / norms[:, None]
    off = ~np.eye(Kp, dtype=bool)
    cos = (unit @ unit.T)[off]
    dist = np.linalg.norm(unit[:, None] - unit[None], axis=-1)[off]
    ood = H_ood.mean(0)
    return {
        "nc1": np.trace(sw @ np.linalg.pinv(sb)) / Kp,
        "nc1_top": np.trace(sw @ top) / Kp,
        "nc1_trace": np.trace(sw) / np.trace(sb),
        "nc2": gram_dist(c @ c.T, E),
        "nc2_w": gram_dist(Wp @ Wp.T, E),
        "nc2_orth": gram_dist(c @ c.T, np.eye(Kp)),
        "nc3": np.sum((Wp / np.linalg.norm(Wp) - c / np.linalg.norm(c)) ** 2),
        "duality": gram_dist(Wp @ c.T, E),
        "nc4": np.mean(miss),
        "nc4_class": np.array([miss[y == k].mean() for k in ks]),
        "cdnv": np.nanmean(cd),
        "cdnv_matrix": cd,
        "variances": var,
        "equinorm": norms.std() / norms.mean(),
        "equiangular": cos.std(),
        "maxangle": np.mean(np.abs(cos + 1 / (Kp - 1))),
        "gnc2": np.mean(1 / dist),
        "gnc2_log": np.mean(-np.log(dist)),
        "nc5": np.mean(
            np.abs(mu @ ood) / (np.linalg.norm(mu, axis=1) * np.linalg.norm(ood))
        ),
        "centred": c,
        "means": mu,
    }


def _data(per_class, seed=0, d=D):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(per_class)), per_class)
    H = rng.normal(size=(len(y), d)) + 2 * rng.normal(size=(len(per_class), d))[y]
    W, b = rng.normal(size=(len(per_class), d)), rng.normal(size=len(per_class))
    H_ood = rng.normal(size=(9, d)) + 1.0
    return H, y, W, b, H_ood


PER_CLASS = {"nc4_class", "variances", "centred", "means"}  # one row per class


def _assert_matches(got, ref, present, rtol=1e-10):
    for name, expected in ref.items():
        value = np.asarray(got[name])
        if name in PER_CLASS:
            value = value[present]
        elif name == "cdnv_matrix":
            value = value[present][:, present]
        # float64 on both sides: agreement to the rounding of a few matrix products.
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("per_class", [(7, 7, 7, 7, 7), (9, 3, 5, 2, 16)])
def test_metrics_match_numpy_reference(per_class):
    H, y, W, b, H_ood = _data(per_class)
    got = _all(K, *map(jnp.asarray, (H, y, W, b, H_ood)))
    _assert_matches(got, _numpy_reference(H, y, W, b, H_ood), np.ones(K, bool))


def test_absent_class_is_ignored_by_every_metric():
    # Class 2 has no sample: every metric must equal NumPy over the four others.
    H, y, W, b, H_ood = _data((9, 8, 0, 10, 8), seed=3)
    b[2] = -1e6  # keeps the classifier off the absent class so NC4 is comparable
    got = _all(K, *map(jnp.asarray, (H, y, W, b, H_ood)))
    present = np.arange(K) != 2
    _assert_matches(got, _numpy_reference(H, y, W, b, H_ood), present)
    assert np.isnan(got["variances"][2]) and np.isnan(got["nc4_class"][2])
    assert np.all(np.isnan(got["cdnv_matrix"][2])) and np.all(got["means"][2] == 0)


def _etf(num_classes, d, scale=1.0):
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.normal(size=(d, num_classes)))
    gram_root = np.eye(num_classes) - np.ones((num_classes, num_classes)) / num_classes
    return scale * gram_root @ basis.T  # rows: a simplex ETF


def test_collapsed_etf_features_give_zero_nc_metrics_and_the_etf_energy():
    means = _etf(K, D, scale=3.0)
    y = np.repeat(np.arange(K), 7)
    H = means[y] + 1.5  # a common offset must not matter (metrics centre by μ_G)
    W = 0.7 * means
    got = _all(K, *map(jnp.asarray, (H, y, W, np.zeros(K), np.ones((9, D)))))
    for name in (
        "nc1", "nc1_top", "nc1_trace", "nc2", "nc2_w", "equinorm", "equiangular",
        "maxangle", "nc3", "duality", "cdnv",
    ):  # fmt: skip
        assert float(got[name]) == pytest.approx(0.0, abs=1e-12), name
    assert float(got["nc4"]) == 0.0 and np.all(np.asarray(got["nc4_class"]) == 0)
    np.testing.assert_allclose(got["variances"], 0.0, atol=1e-24)
    # ‖û_k − û_l‖² = 2K/(K−1) on the simplex.
    assert float(got["gnc2"]) == pytest.approx((2 * K / (K - 1)) ** -0.5, rel=1e-12)
    assert float(got["gnc2"]) == pytest.approx(
        float(M.etf_hyperspherical_energy(K, 1.0)), rel=1e-12
    )
    assert float(got["gnc2_log"]) == pytest.approx(
        float(M.etf_hyperspherical_energy(K, 0.0)), rel=1e-12
    )


_batched_energy = jax.jit(jax.vmap(M.gnc2_hyperspherical_energy, in_axes=(0, None)))


@pytest.mark.parametrize("s", [0.0, 1.0, 2.0])
def test_no_configuration_has_riesz_energy_below_the_simplex(s):
    # Σ_{k≠l} ‖û_k − û_l‖² = 2K² − 2‖Σû_k‖² ≤ 2K², so the mean squared distance is at
    # most 2K/(K−1); the kernel is convex and decreasing in it, so by Jensen the
    # mean energy is at least its value at 2K/(K−1), the simplex's.
    V = jnp.asarray(np.random.default_rng(4).normal(size=(20, K, 3)))
    energies = _batched_energy(V, s)
    assert np.all(np.asarray(energies) >= float(M.etf_hyperspherical_energy(K, s)))


def test_nc5_is_zero_for_orthogonal_ood_mean_and_one_over_k_along_one_class():
    d = K + 1
    eye = np.eye(d)
    y = np.repeat(np.arange(K), 2)
    H = 3 * eye[:K][y]  # class means 3e_k, orthogonal
    H_ood = np.stack([eye[K] * 2, eye[K] * 4])
    assert float(M.nc5_ood_orthogonality(H, y, K, H_ood)) == pytest.approx(0, abs=1e-15)
    assert float(M.nc5_ood_orthogonality(H, y, K, eye[:1])) == pytest.approx(1 / K)


def test_self_duality_of_the_means_themselves_is_their_nc2_distance():
    # W = M̃ makes WM̃ᵀ the Gram of the centred means: the two metrics coincide.
    H, y, W, b, H_ood = _data((7, 7, 7, 7, 7), seed=5)
    c = M.centred_class_means(H, y, K)
    got = _all(K, *map(jnp.asarray, (H, y, c, b, H_ood)))
    assert float(got["duality"]) == pytest.approx(float(got["nc2"]), rel=1e-12)


def test_etf_gram_and_orthogonal_frame_distances():
    E = M.etf_gram(4, jnp.float64)
    np.testing.assert_allclose(np.diag(E), 1.0)
    np.testing.assert_allclose(E[0, 1], -1 / 3)
    assert float(M.nc2_orthogonal_distance(jnp.eye(4))) == pytest.approx(0, abs=1e-12)
    # ‖I/√K − (I − 11ᵀ/K)/√(K−1)‖_F by hand, for an orthogonal frame seen as an ETF.
    expected = np.linalg.norm(np.eye(4) / 2 - (np.eye(4) - 0.25) / np.sqrt(3))
    assert float(M.nc2_etf_distance(jnp.eye(4))) == pytest.approx(expected, rel=1e-12)


def test_known_nc1_for_two_point_classes():
    # Two classes at ±e1 with within-class spread ±s along e1: Σ_B = diag(1,0),
    # Σ_W = diag(s², 0), so tr(Σ_W Σ_B^†)/K = s²/2.
    s = 0.3
    H = jnp.array([[1 - s, 0.0], [1 + s, 0.0], [-1 - s, 0.0], [-1 + s, 0.0]])
    y = jnp.array([0, 0, 1, 1])
    assert float(_nc1(H, y, 2)) == pytest.approx(s**2 / 2, rel=1e-12)


def test_nc1_of_means_spanning_fewer_directions_drops_them_top_form_does_not():
    # K = 5 class means confined to a plane of R^6 (noise made zero-mean per class):
    # Σ_B has rank 2, not K−1 = 4. The span pseudo-inverse matches NumPy's pinv;
    # the top-(K−1) form inverts two rounding-level eigenvalues and blows up.
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(K), 6)
    plane = np.linalg.qr(rng.normal(size=(D, 2)))[0]
    noise = rng.normal(size=(30, D))
    noise -= np.stack([noise[y == k].mean(0) for k in range(K)])[y]
    H = jnp.asarray(rng.normal(size=(K, 2))[y] @ plane.T + noise)
    sw = np.asarray(M.within_class_covariance(H, y, K))
    sb = np.asarray(M.between_class_covariance(H, y, K))
    # Genuine eigenvalues are O(1), rounding ones O(1e-16): any rcond between works.
    expected = np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10, hermitian=True)) / K
    assert float(_nc1(H, y, K)) == pytest.approx(expected, rel=1e-10)
    assert not float(M.nc1_top_eigen(H, y, K)) < 1e8


def test_float32_nc1_keeps_a_between_class_direction_2e4_below_the_largest():
    # d = 512, Σ_B eigenvalues ∝ (1, 1, 2e-4): jnp.linalg.pinv's default cutoff,
    # 10·512·eps ≈ 6e-4 of the largest eigenvalue in float32, drops the weak one.
    rng = np.random.default_rng(7)
    k, d, n = 4, 512, 16
    basis = np.linalg.qr(rng.normal(size=(d, k - 1)))[0]
    simplex = np.linalg.svd(np.eye(k) - 1 / k)[0][:, : k - 1]
    means = 2 * simplex @ np.diag([1, 1, np.sqrt(2e-4)]) @ basis.T
    y = np.repeat(np.arange(k), n)
    H = (means[y] + 1e-3 * rng.normal(size=(k * n, d))).astype(np.float32)
    exact = float(_nc1(H.astype(np.float64), y, k))
    got = float(_nc1(H, y, k))
    # Weyl: SVD error |δs_j| ≲ c·eps·s_max, so 1/s_j² moves by ≈ 2c·eps·s_max/s_j ≈
    # 2c·8.5e-6 relative for s_j/s_max = √2e-4; 1e-3 allows c up to ~60.
    assert got == pytest.approx(exact, rel=1e-3)
    # The former d×d form in float32, with jnp.linalg.pinv's default cutoff.
    mu = np.stack([H[y == j].mean(0) for j in range(k)])
    dev, c = H - mu[y], mu - H.mean(0)
    sw, sb = dev.T @ dev / len(y), c.T @ c / k
    old = np.trace(sw @ np.linalg.pinv(sb, rcond=10 * d * np.finfo(np.float32).eps)) / k
    assert old < 1e-2 * exact  # the default cutoff loses the weak direction


def test_float32_statistics_far_from_the_origin_match_float64():
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(K), 15)
    H = rng.normal(size=(75, D)) + 3 * rng.normal(size=(K, D))[y] + 1e4
    H = H.astype(np.float32)  # both sides see the same float32-rounded inputs
    got, exact = _offset_metrics(H, y), _offset_metrics(H.astype(np.float64), y)
    for name in got:
        # After centring only O(1) numbers meet: error ~ (terms summed)·eps ≈
        # 75·6e-8 ≈ 4.5e-6 at worst; uncentred float32 sums at 1e4 err ~1e-3·scale.
        np.testing.assert_allclose(got[name], exact[name], rtol=1e-5, atol=1e-5)


@jax.jit
def _offset_metrics(H, y):
    return {
        f.__name__: f(H, y, K)
        for f in (M.nc1, M.cdnv, M.nc1_trace_quotient, M.centred_class_means)
    }


def test_nc4_in_nk_memory_equals_the_direct_nkd_form():
    N, d, k = 2048, 128, 32
    rng = np.random.default_rng(9)
    y = rng.integers(0, k, N)
    H = rng.normal(size=(N, d)) + rng.normal(size=(k, d))[y]
    W, b = rng.normal(size=(k, d)), rng.normal(size=k)
    args = (W, H, y, b)
    f = jax.jit(lambda W, H, y, b: M.nc4_per_class(W, H, y, k, b))
    compiled = f.lower(*args).compile()
    mu = np.stack([H[y == j].mean(0) for j in range(k)])
    near = np.argmin(((H[:, None] - mu[None]) ** 2).sum(-1), 1)
    miss = np.argmax(H @ W.T + b, 1) != near
    expected = np.array([miss[y == j].mean() for j in range(k)])
    np.testing.assert_array_equal(compiled(*args), expected)
    stats = compiled.memory_analysis()
    # A handful of [N, K] and [N, d] buffers (2.6 MB each set), far below the
    # 67 MB of one [N, K, d] difference array.
    assert stats.temp_size_in_bytes < 8 * N * (k + d) * 8 < N * k * d * 8 / 3


def test_nc4_counts_disagreements():
    H = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    y = jnp.array([0, 1, 0, 1])
    W_flipped = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # always picks the other class
    assert float(M.nc4_ncc_mismatch(W_flipped, H, y, 2)) == 1.0


H_SMALL = np.arange(12.0).reshape(6, 2)


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([1, 2, 3, 1, 2, 3]), r"labels must lie in \[0, 2\]"),
        (np.array([0.0, 1, 2, 0, 1, 2]), "labels must hold integers"),
        (np.array([0, 1, 2]), "labels must be a 1-D array"),
        (np.array([[0, 1, 2, 0, 1, 2]]), "labels must be a 1-D array"),
    ],
)
def test_bad_labels_raise_value_error_naming_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        M.nc1(H_SMALL, labels, 3)


def test_features_as_columns_raise_value_error_suggesting_transpose():
    with pytest.raises(ValueError, match="transposed"):
        M.cdnv(H_SMALL.T, np.array([0, 1, 2, 0, 1, 2]), 3)
    with pytest.raises(ValueError, match="H must be a 2-D"):
        M.cdnv(H_SMALL[:, 0], np.array([0, 1, 2, 0, 1, 2]), 3)


def test_list_labels_equal_array_labels_and_traced_labels_skip_value_checks():
    labels = [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(
        M.class_means(H_SMALL, labels, 3)[0],
        M.class_means(H_SMALL, np.array(labels), 3)[0],
    )
    traced = jax.jit(lambda y: M.class_means(H_SMALL, y, 3)[1])
    np.testing.assert_array_equal(traced(np.array(labels)), [2, 2, 2])
    with pytest.raises(ValueError, match="labels must be a 1-D array"):
        traced(np.array([0, 1]))  # shapes are checked under jit too
