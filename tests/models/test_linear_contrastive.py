"""linear_contrastive: shapes of its losses, float64, population limit, spectrum.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import linear_contrastive as m


@pytest.mark.parametrize(
    "loss, batch_size", [("infonce", 8), ("vicreg", 0), ("invariance", 4)]
)
def test_observe_shapes_and_finite(loss, batch_size):
    cfg = m.Config(dim=5, embed_dim=3, loss=loss, batch_size=batch_size)
    state = m.init(jax.random.PRNGKey(0), cfg)
    for _ in range(2):
        state = m.step(state, cfg)
    obs = m.observe(state, cfg)
    chex.assert_shape(obs["spectrum"], (3,))
    chex.assert_shape(obs["aug_spectrum"], (3,))
    for name in ("effective_rank", "rankme", "total_variance", "invariance"):
        chex.assert_shape(obs[name], ())
    chex.assert_tree_all_finite(obs)
    assert state.W.dtype == jnp.float32


def test_float64_run_keeps_float64():
    cfg = m.Config(dim=3, embed_dim=2, batch_size=4, dtype="float64")
    state = m.step(m.init(jax.random.PRNGKey(2), cfg), cfg)
    assert state.W.dtype == jnp.float64
    chex.assert_tree_all_finite(m.observe(state, cfg))


def test_minibatch_infonce_loss_minus_log_b_minus_1_tends_to_population_loss():
    # B = 128: the O(1/B) bias of log-mean-exp is below the Monte Carlo noise;
    # mean of 1000 batches within 4 SE of L_inf.
    cfg = m.Config(
        dim=3, embed_dim=3, batch_size=128, dtype="float64", aug_var=0.5, init_scale=1.5
    )
    W = m.init(jax.random.PRNGKey(0), cfg).W

    def one(key):
        x1, x2 = m._views(key, cfg, jnp.float64)
        return m.loss(W, x1, x2, cfg) - jnp.log(cfg.batch_size - 1.0)

    vals = jax.vmap(one)(jax.random.split(jax.random.PRNGKey(1), 1000))
    se = float(jnp.std(vals, ddof=1)) / np.sqrt(1000)
    assert abs(float(vals.mean()) - float(m.population_loss(W, cfg))) <= 4 * se


def test_observed_spectrum_is_that_of_the_clean_embedding_covariance():
    cfg = m.Config(dim=4, embed_dim=3, dtype="float64", aug_var=0.4)
    W = m.init(jax.random.PRNGKey(3), cfg).W
    obs = m.observe(m.State(W=W, key=jax.random.PRNGKey(0)), cfg)
    lam = np.asarray(m.data_variances(cfg))
    Wn = np.asarray(W)
    np.testing.assert_allclose(
        obs["spectrum"],
        np.sort(np.linalg.eigvalsh(Wn @ np.diag(lam) @ Wn.T))[::-1],
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        obs["aug_spectrum"],
        np.sort(np.linalg.eigvalsh(Wn @ np.diag(lam + 0.4) @ Wn.T))[::-1],
        rtol=1e-10,
    )
