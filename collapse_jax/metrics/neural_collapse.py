"""Neural-collapse metrics (Papyan, Han, Donoho 2020, arXiv 2008.08186; Galanti et al.
2022, arXiv 2112.15121 for CDNV).

Pure functions of penultimate features ``H [N, d]``, integer ``labels [N]`` and a
classifier ``W [K, d]`` (bias ``b [K]``), so they apply to any network. Class means are
per-class averages; the global mean is the average over samples. A class with no
sample gets a zero mean and is left out of the between-class statistics.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def class_means(H: Array, labels: Array, num_classes: int) -> tuple[Array, Array]:
    """Returns class means ``[K, d]`` and class counts ``[K]``."""
    onehot = (labels[:, None] == jnp.arange(num_classes)[None, :]).astype(H.dtype)
    counts = onehot.sum(axis=0)
    sums = onehot.T @ H
    means = sums / jnp.maximum(counts, 1)[:, None]
    return means, counts


def _centred(H, labels, num_classes):
    means, counts = class_means(H, labels, num_classes)
    global_mean = H.mean(axis=0)
    present = (counts > 0).astype(H.dtype)
    return means - global_mean[None, :] * present[:, None], means, counts


def within_class_covariance(H: Array, labels: Array, num_classes: int) -> Array:
    """Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, ``[d, d]``."""
    means, _ = class_means(H, labels, num_classes)
    dev = H - means[labels]
    return dev.T @ dev / H.shape[0]


def between_class_covariance(H: Array, labels: Array, num_classes: int) -> Array:
    """Σ_B = (1/K') Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ over the K' present classes, ``[d, d]``."""
    centred, _, counts = _centred(H, labels, num_classes)
    k_present = jnp.maximum(jnp.sum(counts > 0), 1)
    return centred.T @ centred / k_present


def nc1(H: Array, labels: Array, num_classes: int) -> Array:
    """NC1 = tr(Σ_W Σ_B^†) / K: within-class variability relative to between-class."""
    sigma_w = within_class_covariance(H, labels, num_classes)
    sigma_b = between_class_covariance(H, labels, num_classes)
    return jnp.trace(sigma_w @ jnp.linalg.pinv(sigma_b, hermitian=True)) / num_classes


def etf_gram(num_classes: int, dtype=jnp.float32) -> Array:
    """Gram matrix of a unit-norm simplex ETF: (K/(K−1)) (I − 11ᵀ/K), ``[K, K]``."""
    K = num_classes
    return (K / (K - 1)) * (jnp.eye(K, dtype=dtype) - jnp.full((K, K), 1.0 / K, dtype))


def _normalised_gram_distance(G: Array, target: Array) -> Array:
    scale = jnp.linalg.norm(G)
    G = G / jnp.where(scale > 0, scale, 1.0)
    return jnp.linalg.norm(G - target / jnp.linalg.norm(target))


def nc2_etf_distance(V: Array) -> Array:
    """‖VVᵀ/‖VVᵀ‖_F − E/‖E‖_F‖_F for rows ``V [K, d]`` and the simplex-ETF Gram E.

    Zero iff the rows form a simplex ETF up to a common scale (Zhu et al. 2021,
    arXiv 2105.02375, NC2 metric). Pass centred class means or the classifier.
    """
    return _normalised_gram_distance(V @ V.T, etf_gram(V.shape[0], V.dtype))


def nc2_orthogonal_distance(V: Array) -> Array:
    """Same as ``nc2_etf_distance`` with the target Gram I (an orthogonal frame)."""
    return _normalised_gram_distance(V @ V.T, jnp.eye(V.shape[0], dtype=V.dtype))


def _norms(V):
    return jnp.linalg.norm(V, axis=1)


def equinorm(V: Array) -> Array:
    """Coefficient of variation std/mean of the row norms of ``V [K, d]``."""
    norms = _norms(V)
    return jnp.std(norms) / jnp.maximum(jnp.mean(norms), jnp.finfo(V.dtype).tiny)


def _pairwise_cosines(V):
    unit = V / jnp.maximum(_norms(V), jnp.finfo(V.dtype).tiny)[:, None]
    cos = unit @ unit.T
    K = V.shape[0]
    off = ~jnp.eye(K, dtype=bool)
    return cos, off


def equiangularity(V: Array) -> Array:
    """Std of the pairwise cosines between distinct rows of ``V [K, d]``."""
    cos, off = _pairwise_cosines(V)
    n = off.sum()
    mean = jnp.sum(jnp.where(off, cos, 0.0)) / n
    return jnp.sqrt(jnp.sum(jnp.where(off, (cos - mean) ** 2, 0.0)) / n)


def max_angle_deviation(V: Array) -> Array:
    """Mean over pairs of |cos(v_k, v_l) + 1/(K−1)|: zero for a simplex ETF."""
    cos, off = _pairwise_cosines(V)
    K = V.shape[0]
    return jnp.sum(jnp.where(off, jnp.abs(cos + 1.0 / (K - 1)), 0.0)) / off.sum()


def nc3_self_duality(W: Array, H: Array, labels: Array, num_classes: int) -> Array:
    """‖W/‖W‖_F − M̃/‖M̃‖_F‖²_F with centred class means M̃ ``[K, d]``."""
    centred, _, _ = _centred(H, labels, num_classes)
    w = W / jnp.maximum(jnp.linalg.norm(W), jnp.finfo(W.dtype).tiny)
    m = centred / jnp.maximum(jnp.linalg.norm(centred), jnp.finfo(W.dtype).tiny)
    return jnp.sum((w - m) ** 2)


def nc4_ncc_mismatch(
    W: Array, H: Array, labels: Array, num_classes: int, b: Array | None = None
) -> Array:
    """Fraction of samples where argmax(W h + b) differs from the nearest class mean."""
    means, _ = class_means(H, labels, num_classes)
    logits = H @ W.T
    if b is not None:
        logits = logits + b[None, :]
    nearest = jnp.argmin(
        jnp.sum((H[:, None, :] - means[None, :, :]) ** 2, axis=-1), axis=1
    )
    return jnp.mean((jnp.argmax(logits, axis=1) != nearest).astype(H.dtype))


def cdnv(H: Array, labels: Array, num_classes: int) -> Array:
    """Class-distance normalised variance, averaged over class pairs k ≠ l:
    (Var_k + Var_l) / (2‖μ_k − μ_l‖²), Var_k = mean ‖h − μ_k‖² over class k."""
    means, counts = class_means(H, labels, num_classes)
    sq = jnp.sum((H - means[labels]) ** 2, axis=1)
    var = jnp.zeros(num_classes, H.dtype).at[labels].add(sq) / jnp.maximum(counts, 1)
    dist2 = jnp.sum((means[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    off = ~jnp.eye(num_classes, dtype=bool)
    ratio = (var[:, None] + var[None, :]) / (2 * jnp.where(off, dist2, 1.0))
    return jnp.sum(jnp.where(off, ratio, 0.0)) / off.sum()
