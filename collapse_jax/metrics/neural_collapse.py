"""Neural-collapse metrics: pure functions of features, labels and a classifier.

Inputs: penultimate features ``H [N, d]`` (one sample per row), integer
``labels [N]`` in ``0..K−1``, a classifier ``W [K, d]`` and bias ``b [K]``. Outside
``jit`` the labels' values are checked (integers in range); shapes are always checked,
and a bad input raises ``ValueError`` naming the argument.

Notation. ``n_k`` samples in class ``k``; the ``K′`` classes with ``n_k > 0`` are
*present*. Class means ``μ_k``; the global mean ``μ_G`` is the sample average.
Centred means ``μ̃_k = μ_k − μ_G`` form ``M̃ [K, d]`` (zero rows for absent classes).
``Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ``,
``Σ_B = (1/K′) Σ_{k present} μ̃_k μ̃_kᵀ`` (rank ≤ K′−1, since Σ_k n_k μ̃_k = 0).
An absent class is ignored by every metric: it takes no part in ``Σ_B``, the pairs of
CDNV, the rows compared by NC3, or the nearest-class-mean rule of NC4; the averages
divide by ``K′``, not ``K``.

Metrics (Papyan, Han, Donoho 2020, arXiv 2008.08186, unless stated):

- ``nc1``: ``tr(Σ_W Σ_B^†)/K′``, the pseudo-inverse taken in the span of the centred
  class means (at most ``K′−1`` directions, singular values of ``M̃`` below
  ``K·eps·s_max`` dropped). ``nc1_top_eigen``: the same with ``Σ_B`` inverted on its
  top ``K′−1`` eigenvectors without a cutoff (the form of Papyan et al.'s code; it
  diverges when the means span fewer directions). ``nc1_trace_quotient``:
  ``tr(Σ_W)/tr(Σ_B)``.
- ``nc2_etf_distance`` / ``nc2_orthogonal_distance``: distance of the normalised Gram of
  rows ``V`` from the simplex-ETF / identity Gram (Zhu et al. 2021, arXiv 2105.02375);
  ``equinorm``, ``equiangularity``, ``max_angle_deviation``: Papyan et al. Fig. 2–4.
- ``gnc2_hyperspherical_energy``: Riesz ``s``-energy of the normalised rows, the
  inter-class separability of generalised neural collapse (Liu et al. 2023, arXiv
  2303.06484); ``etf_hyperspherical_energy`` is its value on a simplex ETF.
- ``nc3_self_duality``: ``‖W/‖W‖_F − M̃/‖M̃‖_F‖²_F``. ``self_duality_etf_distance``:
  ``‖WM̃ᵀ/‖WM̃ᵀ‖_F − (I − 11ᵀ/K′)/√(K′−1)‖_F``, classifier–mean duality and the ETF in
  one number (Kothapalli 2022, "Neural collapse: a review", arXiv 2206.04041).
- ``nc4_ncc_mismatch`` / ``nc4_per_class``: fraction of samples where
  ``argmax_k(Wh + b)`` differs from ``argmin_k ‖h − μ_k‖`` over present classes.
- ``cdnv`` / ``cdnv_matrix``: class-distance normalised variance
  ``(σ²_k + σ²_l)/(2‖μ_k − μ_l‖²)``, ``σ²_k = tr Σ_k`` (``class_variances``), Galanti
  et al. 2022, arXiv 2112.15121.
- ``nc5_ood_orthogonality``: ``mean_k |cos(μ_k, μ_G^OOD)|`` between in-distribution
  class means and the mean of out-of-distribution features (NC5 of Ben Ammar et al.
  2024, NECO, arXiv 2310.06823, Eq. 5).

Numerics: each class is summed relative to its own first-pass mean (two passes), and
centred and pairwise quantities are formed from those small corrections, so float32
keeps its precision far from the origin and for classes collapsing onto one point;
nearest-mean distances use ``‖μ‖² − 2hᵀμ`` (``[N, K]`` memory, not ``[N, K, d]``).

Sources. Of Kothapalli 2022, Liu et al. 2023 and Ben Ammar et al. 2024 only the
abstracts and introductions were available to us: the self-duality-with-ETF form, the
Riesz kernel ``‖û − v̂‖^(−s)`` (log kernel at ``s = 0``) and NC5 with uncentred class
means follow those texts and implementations that cite the papers' equations; the ETF
values and the Jensen lower bound of the energy are our own derivations. Haas et al.
2023 (arXiv 2209.08378) relate NC to OOD detection with L2-normalised features; no
separate metric of theirs is implemented.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

# ---------------------------------------------------------------------------------
# Validation


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_num_classes(num_classes) -> None:
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int | np.integer)
        or num_classes < 1
    ):
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")


def check_features_labels(H, labels, num_classes: int) -> tuple[Array, Array]:
    """Validates features ``H [N, d]`` and ``labels [N]``; returns them as arrays.

    Shapes are always checked; label values (integers in ``[0, K−1]``) only when
    concrete, since a tracer has none.
    """
    _check_num_classes(num_classes)
    if not _is_tracer(labels):
        arr = np.asarray(labels)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"labels must hold integers in [0, {num_classes - 1}]; "
                f"got dtype {arr.dtype}"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(
                f"labels must lie in [0, {num_classes - 1}] (num_classes="
                f"{num_classes}); got values in [{arr.min()}, {arr.max()}]"
            )
    labels = jnp.asarray(labels)
    H = jnp.asarray(H)
    if not jnp.issubdtype(H.dtype, jnp.floating):
        H = H.astype(jnp.result_type(float))
    if H.ndim != 2:
        raise ValueError(
            f"H must be a 2-D array [N, d] with one sample per row; got shape {H.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != H.shape[0]:
        hint = ""
        if labels.ndim == 1 and labels.shape[0] == H.shape[1]:
            hint = " (H looks transposed: pass samples as rows, H.T)"
        raise ValueError(
            f"labels must be a 1-D array [N] with N = {H.shape[0]}, the number of "
            f"rows of H; got shape {labels.shape}{hint}"
        )
    return H, labels


def _check_classifier(W, b, num_classes: int, dim: int) -> tuple[Array, Array | None]:
    W = jnp.asarray(W)
    if W.shape != (num_classes, dim):
        raise ValueError(
            f"W must have shape [K, d] = {(num_classes, dim)}; got {W.shape}"
        )
    if b is not None:
        b = jnp.asarray(b)
        if b.shape != (num_classes,):
            raise ValueError(f"b must have shape [K] = ({num_classes},); got {b.shape}")
    return W, b


def _check_rows(V, name: str = "V") -> Array:
    V = jnp.asarray(V)
    if V.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [K, d]; got shape {V.shape}")
    return V


# ---------------------------------------------------------------------------------
# Per-class moments (shared with the streaming accumulator)


class Moments(NamedTuple):
    """First moments of labelled features, each class relative to its own reference.

    ``ref [K, d]``: a point near each class (a first-pass class mean); ``counts [K]``:
    samples per class; ``means [K, d]``: class means minus ``ref``. Class k's mean
    is ``ref_k + means_k`` to about twice the working precision, whether the class
    sits far from the origin or has collapsed onto it.
    """

    ref: Array
    counts: Array
    means: Array


def _onehot(labels, num_classes, dtype):
    return (labels[:, None] == jnp.arange(num_classes)[None, :]).astype(dtype)


def _global_mean(H: Array) -> Array:
    """Two-pass mean of the rows of ``H [N, d]``, ``[d]``."""
    m0 = H.mean(axis=0)
    return m0 + (H - m0[None, :]).mean(axis=0)


def _class_frame(H, labels, onehot, counts, ref):
    """Deviations from the class references and their class means (second pass)."""
    X = H - ref[labels]
    return X, onehot.T @ X / jnp.maximum(counts, 1)[:, None]


def _moments(H: Array, labels: Array, num_classes: int) -> tuple[Moments, Array]:
    """Moments of ``H`` and each sample's deviation from its class mean ``[N, d]``."""
    onehot = _onehot(labels, num_classes, H.dtype)
    counts = onehot.sum(axis=0)
    ref = onehot.T @ H / jnp.maximum(counts, 1)[:, None]
    X, means = _class_frame(H, labels, onehot, counts, ref)
    return Moments(ref, counts, means), X - means[labels]


def _centred(mom: Moments) -> tuple[Array, Array, Array]:
    """Centred class means ``[K, d]`` (zero rows if absent), presence ``[K]``, K′.

    ``(ref_k − g) + means_k`` for a rough global mean g, then re-centred with the
    counts: g's own rounding cancels and no large numbers are summed.
    """
    counts = mom.counts.astype(mom.means.dtype)
    present = counts > 0
    w = counts / jnp.maximum(jnp.sum(counts), 1)
    g = w @ mom.ref
    D = jnp.where(present[:, None], (mom.ref - g[None, :]) + mom.means, 0.0)
    centred = jnp.where(present[:, None], D - (w @ D)[None, :], 0.0)
    k_present = jnp.maximum(jnp.sum(present), 1).astype(mom.means.dtype)
    return centred, present, k_present


def _absolute_means(mom: Moments) -> Array:
    present = mom.counts > 0
    return jnp.where(present[:, None], mom.ref + mom.means, 0.0)


def _mean_differences_sq(mom: Moments) -> Array:
    """``‖μ_k − μ_l‖²`` ``[K, K]`` as ``(ref_k − ref_l) + (means_k − means_l)``, so
    nearby class means (collapsing classes) keep their relative precision; rows in
    blocks of 64, memory ``O(64·K·d)``."""

    def row(rm):
        r, m = rm
        return jnp.sum(((r[None, :] - mom.ref) + (m[None, :] - mom.means)) ** 2, 1)

    return jax.lax.map(row, (mom.ref, mom.means), batch_size=min(mom.ref.shape[0], 64))


def _class_sq(dev, labels, num_classes):
    """``Σ_{i∈k} ‖h_i − μ_k‖²`` ``[K]`` from the deviations ``dev [N, d]``."""
    return _onehot(labels, num_classes, dev.dtype).T @ jnp.sum(dev**2, axis=1)


# ---------------------------------------------------------------------------------
# Cores on moments: one implementation for arrays in memory and for streamed stats


def _between_inverse(centred, k_present, *, rcond=None, top=False):
    """``Σ_B^† = Vᵀ diag(inv) V`` from the SVD of the centred means.

    Returns ``V [r, d]`` (right singular vectors, r = min(K, d)) and ``inv [r]``.
    At most K′−1 directions are kept (the rank bound of Σ_B); without ``top`` also
    those with singular value ≤ rcond·s_max (default K·eps), a cutoff on ``M̃``
    rather than on the d×d ``Σ_B``.
    """
    K = centred.shape[0]
    _, s, V = jnp.linalg.svd(centred, full_matrices=False)
    keep = jnp.arange(s.shape[0]) < k_present - 1
    if not top:
        if rcond is None:
            rcond = K * jnp.finfo(centred.dtype).eps
        keep = keep & (s > rcond * s[0])
    inv = jnp.where(keep, k_present / jnp.where(keep, s, 1.0) ** 2, 0.0)
    return V, inv


def _nc1_core(centred, k_present, within_diag, *, rcond=None, top=False):
    """``tr(Σ_W Σ_B^†)/K′`` with ``within_diag(V) = diag(V Σ_W Vᵀ)``."""
    V, inv = _between_inverse(centred, k_present, rcond=rcond, top=top)
    return jnp.sum(inv * within_diag(V)) / k_present


def _pair_mask(present):
    K = present.shape[0]
    return present[:, None] & present[None, :] & ~jnp.eye(K, dtype=bool)


def _sq_distances(V):
    """Squared distances between rows of ``V [K, d]``, ``[K, K]``."""
    return _mean_differences_sq(Moments(V, jnp.ones(V.shape[0]), jnp.zeros_like(V)))


def _cdnv_matrix_core(mom, class_sq):
    var = class_sq / jnp.maximum(mom.counts.astype(class_sq.dtype), 1)
    present = mom.counts > 0
    pairs = _pair_mask(present)
    dist2 = _mean_differences_sq(mom)
    ratio = (var[:, None] + var[None, :]) / (2 * jnp.where(pairs, dist2, 1.0))
    return jnp.where(pairs, ratio, jnp.nan)


def _masked_mean(values, mask):
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def _unit_frobenius(A):
    scale = jnp.linalg.norm(A)
    return A / jnp.maximum(scale, jnp.finfo(A.dtype).tiny)


def _nc3_core(W, centred, present):
    w = _unit_frobenius(jnp.where(present[:, None], W, 0.0))
    return jnp.sum((w - _unit_frobenius(centred)) ** 2)


def _masked_etf(present, dtype):
    """ETF Gram direction on the present classes: ``(I − 11ᵀ/K′)`` masked, ``[K, K]``."""
    p = present.astype(dtype)
    k = jnp.maximum(jnp.sum(p), 1)
    return p[:, None] * p[None, :] * (jnp.eye(present.shape[0], dtype=dtype) - 1 / k)


def _normalised_gram_distance(G: Array, target: Array) -> Array:
    return jnp.linalg.norm(_unit_frobenius(G) - _unit_frobenius(target))


def _self_duality_core(W, centred, present):
    Wp = jnp.where(present[:, None], W, 0.0)
    return _normalised_gram_distance(
        Wp @ centred.T, _masked_etf(present, centred.dtype)
    )


def _ncc_scores(H, mom):
    """``‖μ̃_k‖² − 2x̃ᵀμ̃_k`` ``[N, K]`` in coordinates centred on the class-mean
    average (the nearest-mean order, ``[N, K]`` memory); +inf for absent classes."""
    centred, present, _ = _centred(mom)
    counts = mom.counts.astype(centred.dtype)
    w = counts / jnp.maximum(jnp.sum(counts), 1)
    g = w @ mom.ref
    g = g + w @ ((mom.ref - g[None, :]) + mom.means)  # the centre of ``centred``
    X = H - g[None, :]
    scores = jnp.sum(centred**2, axis=1)[None, :] - 2 * X @ centred.T
    return jnp.where(present[None, :], scores, jnp.inf)


def _logits(W, H, b):
    logits = H @ W.T
    return logits if b is None else logits + b[None, :]


def _nc5_core(class_means, present, ood_mean):
    unit = (
        class_means
        / jnp.maximum(
            jnp.linalg.norm(class_means, axis=1), jnp.finfo(class_means.dtype).tiny
        )[:, None]
    )
    o = ood_mean / jnp.maximum(
        jnp.linalg.norm(ood_mean), jnp.finfo(ood_mean.dtype).tiny
    )
    return _masked_mean(jnp.abs(unit @ o), present)


# ---------------------------------------------------------------------------------
# Public metrics on arrays in memory


def class_means(H: Array, labels: Array, num_classes: int) -> tuple[Array, Array]:
    """Class means ``[K, d]`` (zero rows for absent classes) and counts ``[K]``."""
    H, labels = check_features_labels(H, labels, num_classes)
    mom, _ = _moments(H, labels, num_classes)
    return _absolute_means(mom), mom.counts


def centred_class_means(H: Array, labels: Array, num_classes: int) -> Array:
    """``μ_k − μ_G`` ``[K, d]``, computed without cancellation; zero rows if absent."""
    H, labels = check_features_labels(H, labels, num_classes)
    return _centred(_moments(H, labels, num_classes)[0])[0]


def within_class_covariance(H: Array, labels: Array, num_classes: int) -> Array:
    """Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, ``[d, d]``."""
    H, labels = check_features_labels(H, labels, num_classes)
    dev = _moments(H, labels, num_classes)[1]
    return dev.T @ dev / H.shape[0]


def between_class_covariance(H: Array, labels: Array, num_classes: int) -> Array:
    """Σ_B = (1/K') Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ over the K' present classes, ``[d, d]``."""
    H, labels = check_features_labels(H, labels, num_classes)
    centred, _, k_present = _centred(_moments(H, labels, num_classes)[0])
    return centred.T @ centred / k_present


def _nc1_in_memory(H, labels, num_classes, **kw):
    H, labels = check_features_labels(H, labels, num_classes)
    mom, dev = _moments(H, labels, num_classes)
    centred, _, k_present = _centred(mom)
    N = H.shape[0]
    # diag(V Σ_W Vᵀ) from the [N, r] projections: Σ_W [d, d] is never formed.
    return _nc1_core(
        centred, k_present, lambda V: jnp.sum((dev @ V.T) ** 2, axis=0) / N, **kw
    )


def nc1(H: Array, labels: Array, num_classes: int, *, rcond=None) -> Array:
    """NC1 = tr(Σ_W Σ_B^†)/K′: within-class variability relative to between-class.

    Σ_B^† is taken in the span of the centred class means: at most K′−1 directions,
    dropping singular values of ``M̃`` at or below ``rcond·s_max`` (default
    ``K·eps``), so between-class directions far weaker than the largest are kept
    (the default cutoff of a d×d pseudo-inverse, ``d·eps`` on eigenvalues, drops them).
    """
    return _nc1_in_memory(H, labels, num_classes, rcond=rcond)


def nc1_top_eigen(H: Array, labels: Array, num_classes: int) -> Array:
    """NC1 with Σ_B inverted on its top K′−1 eigenvectors, no cutoff (Papyan et al.
    2020's code, ``svds(Sb, k=C−1)``). Equals ``nc1`` when the class means span
    K′−1 directions; diverges when they span fewer."""
    return _nc1_in_memory(H, labels, num_classes, top=True)


def nc1_trace_quotient(H: Array, labels: Array, num_classes: int) -> Array:
    """tr(Σ_W)/tr(Σ_B): the trace form of NC1, no inverse."""
    H, labels = check_features_labels(H, labels, num_classes)
    mom, dev = _moments(H, labels, num_classes)
    centred, _, k_present = _centred(mom)
    sq = _class_sq(dev, labels, num_classes)
    tr_b = jnp.sum(centred**2) / k_present
    return (jnp.sum(sq) / H.shape[0]) / tr_b


def etf_gram(num_classes: int, dtype=jnp.float32) -> Array:
    """Gram matrix of a unit-norm simplex ETF: (K/(K−1)) (I − 11ᵀ/K), ``[K, K]``."""
    K = num_classes
    return (K / (K - 1)) * (jnp.eye(K, dtype=dtype) - jnp.full((K, K), 1.0 / K, dtype))


def _present_or_all(V, present):
    if present is None:
        return jnp.ones(V.shape[0], dtype=bool)
    present = jnp.asarray(present, dtype=bool)
    if present.shape != (V.shape[0],):
        raise ValueError(
            f"present must be a boolean array [K] = ({V.shape[0]},); "
            f"got shape {present.shape}"
        )
    return present


def nc2_etf_distance(V: Array, *, present: Array | None = None) -> Array:
    """‖VVᵀ/‖VVᵀ‖_F − E/‖E‖_F‖_F for rows ``V [K, d]`` and the simplex-ETF Gram E.

    Zero iff the rows form a simplex ETF up to a common scale (Zhu et al. 2021,
    arXiv 2105.02375, NC2 metric). Pass centred class means or the classifier;
    ``present [K]`` (bool) restricts both Grams to those rows.
    """
    V = _check_rows(V)
    p = _present_or_all(V, present)
    Vp = jnp.where(p[:, None], V, 0.0)
    return _normalised_gram_distance(Vp @ Vp.T, _masked_etf(p, V.dtype))


def nc2_orthogonal_distance(V: Array, *, present: Array | None = None) -> Array:
    """Same as ``nc2_etf_distance`` with the target Gram I (an orthogonal frame)."""
    V = _check_rows(V)
    p = _present_or_all(V, present)
    Vp = jnp.where(p[:, None], V, 0.0)
    target = jnp.diag(p.astype(V.dtype))
    return _normalised_gram_distance(Vp @ Vp.T, target)


def _norms(V):
    return jnp.linalg.norm(V, axis=1)


def equinorm(V: Array, *, present: Array | None = None) -> Array:
    """Coefficient of variation std/mean of the row norms of ``V [K, d]``."""
    V = _check_rows(V)
    p = _present_or_all(V, present)
    norms = _norms(V)
    mean = _masked_mean(norms, p)
    std = jnp.sqrt(_masked_mean((norms - mean) ** 2, p))
    return std / jnp.maximum(mean, jnp.finfo(V.dtype).tiny)


def _pairwise_cosines(V):
    unit = V / jnp.maximum(_norms(V), jnp.finfo(V.dtype).tiny)[:, None]
    return unit @ unit.T


def equiangularity(V: Array, *, present: Array | None = None) -> Array:
    """Std of the pairwise cosines between distinct rows of ``V [K, d]``."""
    V = _check_rows(V)
    pairs = _pair_mask(_present_or_all(V, present))
    cos = _pairwise_cosines(V)
    mean = _masked_mean(cos, pairs)
    return jnp.sqrt(_masked_mean((cos - mean) ** 2, pairs))


def max_angle_deviation(V: Array, *, present: Array | None = None) -> Array:
    """Mean over pairs of |cos(v_k, v_l) + 1/(K′−1)|: zero for a simplex ETF."""
    V = _check_rows(V)
    p = _present_or_all(V, present)
    k = jnp.sum(p).astype(V.dtype)
    return _masked_mean(
        jnp.abs(_pairwise_cosines(V) + 1.0 / jnp.maximum(k - 1, 1)), _pair_mask(p)
    )


def gnc2_hyperspherical_energy(
    V: Array, s: float = 1.0, *, present: Array | None = None
) -> Array:
    """Riesz s-energy of the normalised rows of ``V [K, d]``, a mean over pairs k ≠ l.

    ``mean ‖v̂_k − v̂_l‖^(−s)`` for ``s > 0``, ``mean −log ‖v̂_k − v̂_l‖`` for ``s = 0``.
    Liu et al. 2023 (arXiv 2303.06484) state GNC2, maximal inter-class separability,
    as the class means (or classifiers) on the sphere minimising such a hyperspherical
    energy; for K ≤ d+1 the simplex ETF attains the minimum
    (``etf_hyperspherical_energy``). Pass centred class means or the classifier.
    """
    V = _check_rows(V)
    if not _is_tracer(s) and not np.all(np.asarray(s) >= 0):
        raise ValueError(f"s={s!r} must be >= 0 (0 selects the logarithmic energy)")
    pairs = _pair_mask(_present_or_all(V, present))
    unit = V / jnp.maximum(_norms(V), jnp.finfo(V.dtype).tiny)[:, None]
    # The floor keeps coincident rows finite.
    d2 = jnp.maximum(_sq_distances(unit), jnp.finfo(V.dtype).tiny)
    d2 = jnp.where(pairs, d2, 1.0)
    kernel = jnp.where(s == 0, -0.5 * jnp.log(d2), d2 ** (-0.5 * s))
    return _masked_mean(kernel, pairs)


def etf_hyperspherical_energy(num_classes: int, s: float = 1.0) -> Array:
    """Riesz s-energy of a K-point simplex ETF: (2K/(K−1))^(−s/2), (−½log for s=0).

    Its pairwise squared distance is 2 − 2·(−1/(K−1)) = 2K/(K−1).
    """
    _check_num_classes(num_classes)
    d2 = 2 * num_classes / (num_classes - 1)
    return jnp.where(s == 0, -0.5 * jnp.log(d2), d2 ** (-0.5 * jnp.asarray(s)))


def nc3_self_duality(W: Array, H: Array, labels: Array, num_classes: int) -> Array:
    """‖W/‖W‖_F − M̃/‖M̃‖_F‖²_F with centred class means M̃ ``[K, d]``; the rows of
    absent classes are left out of both."""
    H, labels = check_features_labels(H, labels, num_classes)
    W, _ = _check_classifier(W, None, num_classes, H.shape[1])
    centred, present, _ = _centred(_moments(H, labels, num_classes)[0])
    return _nc3_core(W, centred, present)


def self_duality_etf_distance(
    W: Array, H: Array, labels: Array, num_classes: int
) -> Array:
    """‖WM̃ᵀ/‖WM̃ᵀ‖_F − (I − 11ᵀ/K′)/√(K′−1)‖_F over the present classes.

    Kothapalli 2022 ("Neural collapse: a review", arXiv 2206.04041) tracks the
    classifier–mean product ``WM̃ᵀ [K, K]`` against the ETF: zero iff W is a positive
    multiple of a simplex ETF of centred means (NC2 and NC3 at once).
    """
    H, labels = check_features_labels(H, labels, num_classes)
    W, _ = _check_classifier(W, None, num_classes, H.shape[1])
    centred, present, _ = _centred(_moments(H, labels, num_classes)[0])
    return _self_duality_core(W, centred, present)


def _ncc_mismatch(W, H, labels, num_classes, b):
    H, labels = check_features_labels(H, labels, num_classes)
    W, b = _check_classifier(W, b, num_classes, H.shape[1])
    mom, _ = _moments(H, labels, num_classes)
    nearest = jnp.argmin(_ncc_scores(H, mom), axis=1)
    mismatch = jnp.argmax(_logits(W, H, b), axis=1) != nearest
    return mismatch.astype(H.dtype), labels, mom.counts


def nc4_ncc_mismatch(
    W: Array, H: Array, labels: Array, num_classes: int, b: Array | None = None
) -> Array:
    """Fraction of samples where argmax(W h + b) differs from the nearest class mean.

    The nearest mean is taken over present classes; the classifier's argmax over all
    K (it is the network's decision). Memory ``O(NK + Nd)``.
    """
    mismatch, _, _ = _ncc_mismatch(W, H, labels, num_classes, b)
    return jnp.mean(mismatch)


def nc4_per_class(
    W: Array, H: Array, labels: Array, num_classes: int, b: Array | None = None
) -> Array:
    """NC4 within each true class, ``[K]`` (NaN for absent classes)."""
    mismatch, labels, counts = _ncc_mismatch(W, H, labels, num_classes, b)
    per = _onehot(labels, num_classes, mismatch.dtype).T @ mismatch
    return jnp.where(counts > 0, per / jnp.maximum(counts, 1), jnp.nan)


def _cdnv_parts(H, labels, num_classes):
    H, labels = check_features_labels(H, labels, num_classes)
    mom, dev = _moments(H, labels, num_classes)
    return mom, _class_sq(dev, labels, num_classes)


def class_variances(H: Array, labels: Array, num_classes: int) -> Array:
    """σ²_k = tr Σ_k = mean over class k of ‖h − μ_k‖², ``[K]`` (NaN if absent)."""
    mom, sq = _cdnv_parts(H, labels, num_classes)
    return jnp.where(mom.counts > 0, sq / jnp.maximum(mom.counts, 1), jnp.nan)


def cdnv_matrix(H: Array, labels: Array, num_classes: int) -> Array:
    """(σ²_k + σ²_l)/(2‖μ_k − μ_l‖²) for each pair, ``[K, K]``; NaN on the diagonal
    and for absent classes."""
    return _cdnv_matrix_core(*_cdnv_parts(H, labels, num_classes))


def cdnv(H: Array, labels: Array, num_classes: int) -> Array:
    """Class-distance normalised variance, averaged over pairs of present classes
    k ≠ l: (σ²_k + σ²_l) / (2‖μ_k − μ_l‖²), σ²_k = mean ‖h − μ_k‖² over class k."""
    mom, sq = _cdnv_parts(H, labels, num_classes)
    return _masked_mean(_cdnv_matrix_core(mom, sq), _pair_mask(mom.counts > 0))


def nc5_ood_orthogonality(
    H: Array, labels: Array, num_classes: int, H_ood: Array
) -> Array:
    """NC5: mean over present classes of |cos(μ_k, μ_G^OOD)|, ``μ_G^OOD`` the mean of
    the out-of-distribution features ``H_ood [M, d]``; 0 when the OOD mean is
    orthogonal to every class mean.

    Ben Ammar et al. 2024 (NECO, arXiv 2310.06823), Eq. 5, with uncentred class
    means of the in-distribution features.
    """
    means, counts = class_means(H, labels, num_classes)
    H_ood = jnp.asarray(H_ood)
    if H_ood.ndim != 2 or H_ood.shape[1] != means.shape[1]:
        raise ValueError(
            f"H_ood must be a 2-D array [M, d] with d = {means.shape[1]}; "
            f"got shape {H_ood.shape}"
        )
    return _nc5_core(means, counts > 0, _global_mean(H_ood.astype(means.dtype)))
