"""Spectral metrics of embeddings and linear maps: pure functions of arrays.

- ``singular_values(Z)``: the spectrum of an embedding matrix ``Z [N, k]``.
- ``effective_rank(Z)``: ``exp(H(p))`` with ``p = σ / Σσ`` the normalised singular
  values and ``H`` the Shannon entropy (Roy & Vetterli 2007, "The effective rank: a
  measure of effective dimensionality").
- ``rankme(Z)``: the same quantity with the ``ε`` smoothing of Garrido et al. 2023,
  "RankMe" (arXiv 2210.02885), Eq. (1): ``p_k = σ_k / ‖σ‖₁ + ε``.
- ``eigenbasis_alignment(A, F)``: how well the eigenbasis of a symmetric ``A`` (e.g. a
  linear predictor ``W_p``) matches that of ``F`` (e.g. the representation correlation)
  — the alignment Tian, Chen, Ganguli 2021 (arXiv 2102.06810, Sec. 4.1) prove for
  linear BYOL/SimSiam.

No function here takes a model ``Config``; all work on any network's outputs.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

__all__ = [
    "effective_rank",
    "effective_rank_from_singular_values",
    "eigenbasis_alignment",
    "rankme",
    "singular_values",
    "spectral_entropy",
]


def singular_values(Z: Array) -> Array:
    """Singular values of ``Z [N, k]`` in decreasing order, ``[min(N, k)]``."""
    return jnp.linalg.svd(Z, compute_uv=False)


def spectral_entropy(s: Array, eps: float = 0.0) -> Array:
    """Shannon entropy (nats) of ``p = s / Σs + eps`` for non-negative ``s [k]``.

    A zero spectrum has no direction at all; its entropy is defined as 0 (so its
    effective rank is 1, the value of a rank-one spectrum) instead of NaN.
    """
    s = jnp.abs(s)
    total = jnp.sum(s)
    safe_total = jnp.where(total > 0, total, 1.0)
    p = s / safe_total + eps
    terms = jnp.where(p > 0, -p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    return jnp.where(total > 0, jnp.sum(terms), 0.0)


def effective_rank_from_singular_values(s: Array) -> Array:
    """``exp(entropy(s / Σs))`` for a singular-value (or std) spectrum ``s [k]``.

    Between 1 (one direction) and ``k`` (a flat spectrum). Roy & Vetterli 2007.
    """
    return jnp.exp(spectral_entropy(s))


def effective_rank(Z: Array) -> Array:
    """Effective rank of the embedding matrix ``Z [N, k]`` (a scalar in ``[1, k]``)."""
    return effective_rank_from_singular_values(singular_values(Z))


def rankme(Z: Array, eps: float = 1e-7) -> Array:
    """RankMe of ``Z [N, k]``: ``exp(−Σ p_k log p_k)``, ``p_k = σ_k/‖σ‖₁ + ε``.

    Garrido, Balestriero, Najman, LeCun 2023 (arXiv 2210.02885), Eq. (1); ``ε = 1e-7``
    as there. It differs from ``effective_rank`` only by the ``ε`` smoothing.
    """
    return jnp.exp(spectral_entropy(singular_values(Z), eps))


def eigenbasis_alignment(A: Array, F: Array) -> Array:
    """Alignment of the eigenbases of two symmetric ``[k, k]`` matrices, in ``[0, 1]``.

    Tian, Chen, Ganguli 2021 (arXiv 2102.06810, Sec. 4.1, Fig. 3) measure how far a
    predictor ``W_p`` commutes with the correlation ``F``; here the same idea as a
    normalised score: ``1 − ‖[A, F]‖_F² / (2 ‖A‖_F² ‖F‖_F²)``, where
    ``[A, F] = AF − FA``. By the Böttcher–Wenzel inequality
    ``‖AF − FA‖_F² ≤ 2‖A‖_F²‖F‖_F²`` it lies in ``[0, 1]``
    and equals 1 exactly when ``A`` and ``F`` commute (share an eigenbasis). Only the
    symmetric part of ``A`` and ``F`` is used. If either matrix is zero the score is 1
    (a zero matrix commutes with everything).
    """
    A = (A + A.T) / 2
    F = (F + F.T) / 2
    C = A @ F - F @ A
    denom = 2 * jnp.sum(A**2) * jnp.sum(F**2)
    safe = jnp.where(denom > 0, denom, 1.0)
    return jnp.where(denom > 0, 1 - jnp.sum(C**2) / safe, 1.0)
