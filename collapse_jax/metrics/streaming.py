"""Streaming neural-collapse statistics: NC metrics of a dataset seen batch by batch.

``NCStats`` holds, per class, the count, the mean and the sum of squared deviations,
plus the pooled within-class scatter ``Σ_k Σ_{i∈k} (h_i − μ_k)(h_i − μ_k)ᵀ`` ``[d, d]``
— the sufficient statistics of NC1–NC3, CDNV and GNC2 — so a million samples never
sit in memory. Memory ``O(Kd + d²)``, independent of the number of samples.

- ``init(K, d)`` → empty stats; ``update(stats, H, labels, mask=None)`` adds a batch
  (pure, jittable; ``mask [B]`` drops padded rows so every batch can share one shape);
  ``merge(a, b)`` combines two accumulators (associative, up to rounding).
- Means and scatter are merged with the parallel update of Chan, Golub, LeVeque 1979
  ("Updating formulae and a pairwise algorithm for computing sample variances"):
  for ``n = n_a + n_b`` and ``δ = μ_b − μ_a``, ``μ = μ_a + δ n_b/n`` and
  ``M2 = M2_a + M2_b + δδᵀ n_a n_b/n``. Means are stored relative to a reference point
  per class (its mean in the first batch that has it), so float32 keeps its digits
  far from the origin and for collapsing classes.
- ``metrics_from_stats(stats, W=None, b=None)`` → every metric of
  ``neural_collapse`` that a first pass determines (same definitions, same
  treatment of absent classes); the ``*_from_stats`` functions give them one by one.
- NC4 compares each sample's decision with the nearest class mean, so it needs the
  means first: a second pass ``ncc_update(acc, stats, H, labels, W, b)`` counts
  mismatches against fixed means (e.g. test features against training means), and
  ``nc4_from_ncc(acc)`` returns the overall and per-class rates.
- NC5 (OOD orthogonality): accumulate the OOD features as class 0 of their own
  accumulator (``update(init(1, d), H_ood, zeros)``, or one shaped like the
  in-distribution one) and call ``nc5_from_stats(stats, ood)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array

from collapse_jax.metrics import neural_collapse as _nc

__all__ = [
    "NCCStats",
    "NCStats",
    "cdnv_from_stats",
    "init",
    "merge",
    "metrics_from_stats",
    "nc1_from_stats",
    "nc4_from_ncc",
    "nc5_from_stats",
    "ncc_init",
    "ncc_merge",
    "ncc_update",
    "update",
]


class NCStats(NamedTuple):
    """Per-class first and second moments of labelled features.

    ``ref [K, d]``: a reference point per class; ``counts [K]`` (int32); ``means
    [K, d]``: class means minus ``ref`` (zero rows for absent classes); ``scatter
    [d, d]``: pooled within-class scatter; ``class_sq [K]``: ``Σ_{i∈k} ‖h_i − μ_k‖²``.
    """

    ref: Array
    counts: Array
    means: Array
    scatter: Array
    class_sq: Array


def init(num_classes: int, dim: int, dtype=jnp.float32) -> NCStats:
    """Empty statistics for ``num_classes`` classes of ``dim``-dimensional features."""
    _nc._check_num_classes(num_classes)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r} must be a positive integer")
    return NCStats(
        ref=jnp.zeros((num_classes, dim), dtype),
        counts=jnp.zeros(num_classes, jnp.int32),
        means=jnp.zeros((num_classes, dim), dtype),
        scatter=jnp.zeros((dim, dim), dtype),
        class_sq=jnp.zeros(num_classes, dtype),
    )


def merge(a: NCStats, b: NCStats) -> NCStats:
    """Statistics of the union of the samples behind ``a`` and ``b`` (Chan et al.)."""
    dtype = a.means.dtype
    na, nb = a.counts.astype(dtype), b.counts.astype(dtype)
    ref = jnp.where((na > 0)[:, None], a.ref, b.ref)
    # Move both to the common references; differences of nearby points are exact.
    ma = jnp.where((na > 0)[:, None], a.means + (a.ref - ref), 0.0)
    mb = jnp.where((nb > 0)[:, None], b.means + (b.ref - ref), 0.0)
    n = na + nb
    safe_n = jnp.maximum(n, 1)
    delta = mb - ma
    means = ma + delta * (nb / safe_n)[:, None]
    coef = na * nb / safe_n
    return NCStats(
        ref=jnp.where((n > 0)[:, None], ref, 0.0),
        counts=a.counts + b.counts,
        means=means,
        scatter=a.scatter + b.scatter + (delta * coef[:, None]).T @ delta,
        class_sq=a.class_sq + b.class_sq + coef * jnp.sum(delta**2, axis=1),
    )


def update(
    stats: NCStats, H: Array, labels: Array, mask: Array | None = None
) -> NCStats:
    """Adds a batch ``H [B, d]``, ``labels [B]`` (rows with ``mask [B]`` false are
    ignored) to ``stats``."""
    K, d = stats.means.shape
    H, labels = _nc.check_features_labels(H, labels, K)
    if H.shape[1] != d:
        raise ValueError(f"H must have d = {d} columns like the stats; got {H.shape}")
    H = H.astype(stats.means.dtype)
    w = jnp.ones(H.shape[0], H.dtype) if mask is None else jnp.asarray(mask, H.dtype)
    if w.shape != (H.shape[0],):
        raise ValueError(f"mask must have shape [B] = ({H.shape[0]},); got {w.shape}")
    onehot = _nc._onehot(labels, K, H.dtype) * w[:, None]
    n = onehot.sum(axis=0)
    first = onehot.T @ H / jnp.maximum(n, 1)[:, None]
    ref = jnp.where((stats.counts > 0)[:, None], stats.ref, first)
    X, means = _nc._class_frame(H, labels, onehot, n, ref)
    dev = (X - means[labels]) * w[:, None]
    batch = NCStats(
        ref=ref,
        counts=jnp.round(n).astype(jnp.int32),
        means=means,
        scatter=dev.T @ dev,
        class_sq=onehot.T @ jnp.sum(dev**2, axis=1),
    )
    return merge(stats, batch)


def _moments(stats: NCStats) -> _nc.Moments:
    return _nc.Moments(stats.ref, stats.counts, stats.means)


def _parts(stats: NCStats):
    return _nc._centred(_moments(stats))


def _num_samples(stats):
    return jnp.maximum(jnp.sum(stats.counts), 1).astype(stats.means.dtype)


def nc1_from_stats(stats: NCStats, *, rcond=None, top: bool = False) -> Array:
    """``neural_collapse.nc1`` (``top=True``: ``nc1_top_eigen``) from statistics."""
    centred, _, k_present = _parts(stats)
    sigma_w = stats.scatter / _num_samples(stats)
    return _nc._nc1_core(
        centred,
        k_present,
        lambda V: jnp.sum((V @ sigma_w) * V, axis=1),
        rcond=rcond,
        top=top,
    )


def cdnv_from_stats(stats: NCStats) -> tuple[Array, Array]:
    """CDNV averaged over pairs of present classes, and its ``[K, K]`` matrix."""
    matrix = _nc._cdnv_matrix_core(_moments(stats), stats.class_sq)
    return _nc._masked_mean(matrix, _nc._pair_mask(stats.counts > 0)), matrix


def class_means_from_stats(stats: NCStats) -> Array:
    """Class means ``[K, d]`` (zero rows for absent classes)."""
    return _nc._absolute_means(_moments(stats))


def nc5_from_stats(stats: NCStats, ood: NCStats) -> Array:
    """``neural_collapse.nc5_ood_orthogonality`` with the OOD features accumulated
    as class 0 of ``ood`` (its other classes empty)."""
    ood_mean = ood.ref[0] + ood.means[0]
    return _nc._nc5_core(class_means_from_stats(stats), stats.counts > 0, ood_mean)


def metrics_from_stats(
    stats: NCStats, W: Array | None = None, b: Array | None = None, *, s: float = 1.0
) -> dict[str, Array]:
    """Every first-pass NC metric, with the definitions of ``neural_collapse``.

    Keys: ``nc1``, ``nc1_top_eigen``, ``nc1_trace_quotient``, ``nc2_etf``,
    ``nc2_orth`` (of the centred means), ``equinorm``, ``equiangularity``,
    ``max_angle_deviation``, ``gnc2`` (Riesz ``s``-energy), ``cdnv``, ``cdnv_matrix
    [K, K]``, ``class_variances [K]``, ``counts [K]``; with ``W``: ``nc2_w_etf``,
    ``nc3``, ``self_duality_etf``. NC4 needs a second pass (``ncc_update``).
    """
    centred, present, k_present = _parts(stats)
    N = _num_samples(stats)
    cdnv, matrix = cdnv_from_stats(stats)
    counts = stats.counts
    out = {
        "nc1": nc1_from_stats(stats),
        "nc1_top_eigen": nc1_from_stats(stats, top=True),
        "nc1_trace_quotient": (jnp.trace(stats.scatter) / N)
        / (jnp.sum(centred**2) / k_present),
        "nc2_etf": _nc.nc2_etf_distance(centred, present=present),
        "nc2_orth": _nc.nc2_orthogonal_distance(centred, present=present),
        "equinorm": _nc.equinorm(centred, present=present),
        "equiangularity": _nc.equiangularity(centred, present=present),
        "max_angle_deviation": _nc.max_angle_deviation(centred, present=present),
        "gnc2": _nc.gnc2_hyperspherical_energy(centred, s, present=present),
        "cdnv": cdnv,
        "cdnv_matrix": matrix,
        "class_variances": jnp.where(
            present, stats.class_sq / jnp.maximum(counts, 1), jnp.nan
        ),
        "counts": counts,
    }
    if W is not None:
        W, b = _nc._check_classifier(W, b, *stats.means.shape)
        out["nc2_w_etf"] = _nc.nc2_etf_distance(W, present=present)
        out["nc3"] = _nc._nc3_core(W, centred, present)
        out["self_duality_etf"] = _nc._self_duality_core(W, centred, present)
    return out


class NCCStats(NamedTuple):
    """Second-pass counts against fixed class means, all ``[K]`` (int32) by true class:
    ``counts``, ``mismatches`` (classifier ≠ nearest mean), ``ncc_errors`` (nearest
    mean ≠ label)."""

    counts: Array
    mismatches: Array
    ncc_errors: Array


def ncc_init(num_classes: int) -> NCCStats:
    """Empty second-pass counts."""
    _nc._check_num_classes(num_classes)
    z = jnp.zeros(num_classes, jnp.int32)
    return NCCStats(z, z, z)


def ncc_merge(a: NCCStats, b: NCCStats) -> NCCStats:
    """Counts of the union of two sets of samples."""
    return NCCStats(*(x + y for x, y in zip(a, b, strict=True)))


def ncc_update(
    acc: NCCStats,
    stats: NCStats,
    H: Array,
    labels: Array,
    W: Array,
    b: Array | None = None,
    mask: Array | None = None,
) -> NCCStats:
    """Adds a batch: the classifier ``W [K, d]``, ``b [K]`` against the nearest of the
    present class means in ``stats`` (which stay fixed)."""
    K, d = stats.means.shape
    H, labels = _nc.check_features_labels(H, labels, K)
    W, b = _nc._check_classifier(W, b, K, d)
    H = H.astype(stats.means.dtype)
    w = jnp.ones(H.shape[0], bool) if mask is None else jnp.asarray(mask, bool)
    nearest = jnp.argmin(_nc._ncc_scores(H, _moments(stats)), axis=1)
    decided = jnp.argmax(_nc._logits(W, H, b), axis=1)
    onehot = _nc._onehot(labels, K, jnp.int32) * w[:, None].astype(jnp.int32)

    def per_class(flags):
        return onehot.T @ flags.astype(jnp.int32)

    return ncc_merge(
        acc,
        NCCStats(
            counts=onehot.sum(axis=0),
            mismatches=per_class(decided != nearest),
            ncc_errors=per_class(nearest != labels),
        ),
    )


def nc4_from_ncc(acc: NCCStats) -> tuple[Array, Array]:
    """NC4 over all samples and per true class ``[K]`` (NaN for absent classes)."""
    counts = acc.counts.astype(jnp.result_type(float))
    mism = acc.mismatches.astype(counts.dtype)
    overall = jnp.sum(mism) / jnp.maximum(jnp.sum(counts), 1)
    per = jnp.where(counts > 0, mism / jnp.maximum(counts, 1), jnp.nan)
    return overall, per
