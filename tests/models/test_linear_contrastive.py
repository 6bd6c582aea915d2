"""linear_contrastive: shapes of its losses, float64, population limit, spectrum.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py. Each check is one jitted function per config: eager calls
would compile every primitive on its own.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import model_runs
import numpy as np
import pytest

from collapse_jax.models import linear_contrastive as m

_run = functools.partial(model_runs.run, m)  # (key, cfg, steps) -> (state, obs)


# Minibatch float64 config: the float64 run and the large-batch loss share its program.
F64 = m.Config(
    dim=3, embed_dim=3, batch_size=128, dtype="float64", aug_var=0.5, init_scale=1.5
)


@pytest.mark.parametrize(
    "loss, batch_size", [("infonce", 8), ("vicreg", 0), ("invariance", 4)]
)
def test_observe_shapes_and_finite(loss, batch_size):
    cfg = m.Config(dim=5, embed_dim=3, loss=loss, batch_size=batch_size)
    state, obs = _run(jax.random.PRNGKey(0), cfg, 2)
    chex.assert_shape(obs["spectrum"], (3,))
    chex.assert_shape(obs["aug_spectrum"], (3,))
    for name in ("effective_rank", "rankme", "total_variance", "invariance"):
        chex.assert_shape(obs[name], ())
    chex.assert_tree_all_finite(obs)
    assert state.W.dtype == jnp.float32


def test_float64_run_keeps_float64():
    state, obs = _run(jax.random.PRNGKey(2), F64, 1)
    assert state.W.dtype == jnp.float64
    chex.assert_tree_all_finite(obs)


def test_minibatch_infonce_loss_minus_log_b_minus_1_tends_to_population_loss():
    # B = 128: the O(1/B) bias of log-mean-exp is below the Monte Carlo noise;
    # mean of 1000 batches within 4 SE of L_inf.
    cfg = F64
    W = _run(jax.random.PRNGKey(0), cfg, 0)[0].W

    @jax.jit
    def batch_losses(keys):
        def one(key):
            x1, x2 = m._views(key, cfg, jnp.float64)
            return m.loss(W, x1, x2, cfg) - jnp.log(cfg.batch_size - 1.0)

        return jax.vmap(one)(keys), m.population_loss(W, cfg)

    vals, population = batch_losses(jax.random.split(jax.random.PRNGKey(1), 1000))
    vals = np.asarray(vals)
    se = float(np.std(vals, ddof=1)) / np.sqrt(1000)
    assert abs(float(vals.mean()) - float(population)) <= 4 * se


def test_observed_spectrum_is_that_of_the_clean_embedding_covariance():
    cfg = m.Config(dim=4, embed_dim=3, dtype="float64", aug_var=0.4)

    @jax.jit
    def init_and_observe(key):
        W = m.init(key, cfg).W
        obs = m.observe(m.State(W=W, key=jax.random.PRNGKey(0)), cfg)
        return W, obs, m.data_variances(cfg)

    W, obs, lam = init_and_observe(jax.random.PRNGKey(3))
    lam = np.asarray(lam)
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
