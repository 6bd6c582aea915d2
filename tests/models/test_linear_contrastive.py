"""linear_contrastive: shapes, validation, seeds, tracing, float64, population limit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import linear_contrastive as m
from collapse_jax.simulate import seed_keys


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


@pytest.mark.parametrize(
    "field, value",
    [
        ("dim", 0),
        ("embed_dim", 0),
        ("batch_size", 1),
        ("batch_size", -2),
        ("loss", "barlow"),
        ("lr", 0.0),
        ("aug_var", -0.1),
        ("temperature", 0.0),
        ("gamma", 0.0),
        ("var_eps", -1.0),
        ("inv_weight", -1.0),
        ("dtype", "int32"),
    ],
)
def test_bad_config_value_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        m.Config(**{field: value})


def test_vmapped_seeds_equal_single_seed_runs():
    cfg = m.Config(dim=3, embed_dim=2, batch_size=8, loss="vicreg")
    traj = cj.simulate(m, cfg, seeds=[1, 4], steps=3, every=3)
    keys = seed_keys(0, np.array([1, 4]))
    for i in range(2):
        state = m.init(keys[i], cfg)
        for _ in range(3):
            state = m.step(state, cfg)
        np.testing.assert_allclose(
            traj["spectrum"][i, -1], m.observe(state, cfg)["spectrum"], rtol=1e-5
        )


def test_step_does_not_retrace_for_new_float_values():
    chex.clear_trace_counter()  # the counter is keyed by source, shared across files
    cfg = m.Config(dim=3, embed_dim=2, batch_size=4)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(state, cfg):
        return m.step(state, cfg)

    state = run(m.init(jax.random.PRNGKey(1), cfg), cfg)
    run(state, cfg.replace(temperature=0.5, aug_var=2.0))


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
