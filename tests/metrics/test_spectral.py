"""Spectral metrics against plain NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.metrics import spectral as S


def _np_entropy_rank(Z, eps=0.0):
    s = np.linalg.svd(Z, compute_uv=False)
    p = s / s.sum() + eps
    return np.exp(-np.sum(p * np.log(p)))


@pytest.mark.parametrize("shape", [(50, 8), (6, 10), (1, 4)])
def test_singular_values_match_numpy_in_decreasing_order(shape):
    Z = np.random.default_rng(0).normal(size=shape)
    np.testing.assert_allclose(
        S.singular_values(jnp.asarray(Z)),
        np.linalg.svd(Z, compute_uv=False),
        rtol=1e-10,
    )


def test_effective_rank_and_rankme_match_numpy_entropy_of_normalised_spectrum():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(40, 6)) * np.array([3.0, 2.0, 1.0, 0.5, 0.1, 0.01])[None, :]
    np.testing.assert_allclose(
        S.effective_rank(jnp.asarray(Z)), _np_entropy_rank(Z), rtol=1e-10
    )
    np.testing.assert_allclose(
        S.rankme(jnp.asarray(Z)), _np_entropy_rank(Z, 1e-7), rtol=1e-10
    )


def test_effective_rank_is_k_for_flat_spectrum_and_one_for_rank_one():
    Q = np.linalg.qr(np.random.default_rng(2).normal(size=(20, 5)))[0]
    assert float(S.effective_rank(jnp.asarray(Q))) == pytest.approx(5.0, rel=1e-12)
    u = np.random.default_rng(3).normal(size=(20, 1))
    v = np.random.default_rng(4).normal(size=(1, 5))
    assert float(S.effective_rank(jnp.asarray(u @ v))) == pytest.approx(1.0, abs=1e-6)


def test_zero_embedding_has_effective_rank_one_not_nan():
    assert float(S.effective_rank(jnp.zeros((7, 3)))) == 1.0
    assert float(S.rankme(jnp.zeros((7, 3)))) == 1.0


def test_rank_of_singular_value_vector_matches_matrix_version():
    Z = np.random.default_rng(5).normal(size=(30, 4))
    s = np.linalg.svd(Z, compute_uv=False)
    np.testing.assert_allclose(
        S.effective_rank_from_singular_values(jnp.asarray(s)),
        _np_entropy_rank(Z),
        rtol=1e-10,
    )


def test_eigenbasis_alignment_is_one_for_commuting_and_below_one_otherwise():
    rng = np.random.default_rng(6)
    Q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    A = Q @ np.diag(rng.uniform(1, 2, 5)) @ Q.T
    F = Q @ np.diag(rng.uniform(1, 2, 5)) @ Q.T
    assert float(S.eigenbasis_alignment(jnp.asarray(A), jnp.asarray(F))) == (
        pytest.approx(1.0, abs=1e-12)
    )
    B = rng.normal(size=(5, 5))
    B = B + B.T
    score = float(S.eigenbasis_alignment(jnp.asarray(B), jnp.asarray(F)))
    C = B @ F - F @ B
    expected = 1 - np.sum(C**2) / (2 * np.sum(B**2) * np.sum(F**2))
    assert score == pytest.approx(expected, rel=1e-12)
    assert 0.0 <= score < 1.0


def test_eigenbasis_alignment_lower_bound_is_attained_by_boettcher_wenzel_pair():
    # ‖XY − YX‖² = 2‖X‖²‖Y‖² for X = [[0,1],[1,0]], Y = [[1,0],[0,-1]]: score 0.
    X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    Y = jnp.array([[1.0, 0.0], [0.0, -1.0]])
    assert float(S.eigenbasis_alignment(X, Y)) == pytest.approx(0.0, abs=1e-12)
