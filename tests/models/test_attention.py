"""attention: shapes, token and weight draws, σReparam, both modes, float64.

The generic checks (shapes over seeds and time, finiteness, vmapped seeds, no retrace,
bad configs) are in tests/test_model_contract.py. Every call is jitted once per config
(module-scoped), which keeps this file fast.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import attention as m

init = jax.jit(m.init)
observe = jax.jit(m.observe)


@jax.jit
def _twenty_steps(state, cfg):
    return jax.lax.fori_loop(0, 20, lambda _, s: m.step(s, cfg), state)


SAMPLE = m.Config(
    seq_len=5, dim=6, depth=3, heads=2, head_dim=3, skip=True, mlp=True, batch=2
)
TRAIN = m.Config(
    mode="train", seq_len=5, dim=6, depth=2, heads=2, head_dim=3, batch=8, lr=0.5,
    mlp=True, sigma_reparam=True, gamma=0.8, qk_scale=5.0, dtype="float64",
)  # fmt: skip
ISO = m.Config(
    seq_len=4, dim=5, depth=2, heads=2, init="isotropic", tokens="orthonormal",
    qk_scale=1.7, v_scale=0.4, token_mean=0.7, token_std=0.3, batch=2,
    dtype="float64",
)  # fmt: skip


@pytest.fixture(scope="module")
def sample_run():
    s0 = init(jax.random.PRNGKey(0), SAMPLE)
    s1 = jax.jit(m.step)(s0, SAMPLE)
    return s0, s1, observe(s1, SAMPLE)


@pytest.fixture(scope="module")
def train_run():
    s0 = init(jax.random.PRNGKey(5), TRAIN)
    return s0, _twenty_steps(s0, TRAIN)


def test_observe_shapes_and_finite(sample_run):
    _, state, obs = sample_run
    for name in ("entropy", "qk_norm", "energy_ratio"):
        chex.assert_shape(obs[name], (3, 2))
    chex.assert_shape(obs["token_norm"], (3,))
    chex.assert_shape(obs["residual"], (4,))
    chex.assert_shape(obs["residual_norm"], (4,))
    chex.assert_shape(obs["loss"], ())
    chex.assert_tree_all_finite(obs)
    assert state.tokens.dtype == jnp.float32
    # Entropy of a distribution over T = 5 keys lies in [0, log 5].
    assert np.all(obs["entropy"] >= 0) and np.all(obs["entropy"] <= np.log(5) + 1e-6)


def test_sample_mode_draws_a_fresh_network_every_step(sample_run):
    s0, s1, obs = sample_run
    assert not np.allclose(s0.tokens, s1.tokens)
    assert not np.allclose(s0.params["q"], s1.params["q"])
    assert float(obs["loss"]) == 0.0


def test_orthonormal_tokens_have_gram_mean_squared_J_plus_std_squared_I():
    X = init(jax.random.PRNGKey(1), ISO).tokens
    G = np.einsum("btd,bsd->bts", X, X)
    expected = 0.49 * np.ones((4, 4)) + 0.09 * np.eye(4)
    np.testing.assert_allclose(G, np.broadcast_to(expected, G.shape), atol=1e-12)


def test_isotropic_init_gives_scaled_identity_query_key_product():
    p = init(jax.random.PRNGKey(2), ISO).params
    qk = np.einsum("lhde,lhfe->lhdf", p["q"], p["k"])
    eye = np.broadcast_to(np.eye(5), qk.shape)
    np.testing.assert_allclose(qk, 1.7 * eye, atol=1e-12)
    np.testing.assert_allclose(p["v"], 0.4 * eye)
    assert not np.allclose(p["q"][0, 0], np.sqrt(1.7) * np.eye(5))  # random basis


def test_sigma_reparam_sets_every_spectral_norm_to_gamma(train_run):
    s0, _ = train_run
    for W in jax.jit(m._layer_weights, static_argnums=1)(s0.params, TRAIN):
        np.testing.assert_allclose(np.linalg.norm(W, ord=2, axis=(-2, -1)), 0.8)
    # ‖Ŵ_Q Ŵ_Kᵀ‖₂ ≤ γ_Q γ_K = γ².
    assert np.all(observe(s0, TRAIN)["qk_norm"] <= 0.64 + 1e-12)


def test_gradient_descent_lowers_the_retrieval_loss_and_keeps_gamma_fixed(train_run):
    s0, s20 = train_run
    assert float(observe(s20, TRAIN)["loss"]) < float(observe(s0, TRAIN)["loss"])
    np.testing.assert_array_equal(s20.params["gamma"], 0.8)
    assert np.any(s20.params["q"] != s0.params["q"])


def test_float64_run_keeps_float64(train_run):
    _, state = train_run
    assert state.tokens.dtype == jnp.float64
    assert all(v.dtype == jnp.float64 for v in jax.tree.leaves(state.params))
    chex.assert_tree_all_finite(observe(state, TRAIN))


def test_forward_pure_layer_is_attention_times_values():
    cfg = m.Config(seq_len=4, dim=3, depth=1, dtype="float64")
    state = init(jax.random.PRNGKey(6), cfg)
    X = state.tokens[0]
    Xs, A = jax.jit(m.forward)(state.params, X, cfg)
    p = state.params
    logits = X @ p["q"][0, 0] @ (X @ p["k"][0, 0]).T
    A_ref = np.exp(logits - logits.max(1, keepdims=True))
    A_ref /= A_ref.sum(1, keepdims=True)
    np.testing.assert_allclose(A[0, 0], A_ref, rtol=1e-12)
    np.testing.assert_allclose(Xs[1], A_ref @ X @ p["v"][0, 0], rtol=1e-12)
