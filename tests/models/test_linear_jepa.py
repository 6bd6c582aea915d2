"""linear_jepa: shapes, validation, seeds, tracing, float64, balanced aligned init."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import linear_jepa as m
from collapse_jax.simulate import seed_keys


@pytest.mark.parametrize("objective", ["jepa", "mae"])
def test_observe_shapes_and_finite(objective):
    cfg = m.Config(
        lam=(1.0, 0.5, 2.0), rho=(1.0, 0.3, 0.5), depth=3, objective=objective
    )
    state = m.init(jax.random.PRNGKey(0), cfg)
    state = m.step(m.step(state, cfg), cfg)
    obs = m.observe(state, cfg)
    for name in ("encoder", "head", "readout"):
        chex.assert_shape(obs[name], (3,))
    chex.assert_shape(obs["loss"], ())
    chex.assert_tree_all_finite(obs)
    assert state.layers.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(lam=(1.0, -1.0)), "lam"),
        (dict(rho=(1.0, 0.0)), "rho"),
        (dict(lam=(1.0,), rho=(1.0, 2.0)), "rho"),
        (dict(lam=()), "lam"),
        (dict(depth=0), "depth"),
        (dict(objective="byol"), "objective"),
        (dict(lr=-0.1), "lr"),
        (dict(init_scale=0.0), "init_scale"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_bad_config_value_raises_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        m.Config(**kwargs)


def test_init_is_balanced_and_aligned_with_the_features():
    cfg = m.Config(
        lam=(1.0, 2.0, 3.0),
        rho=(1.0, 1.0, 1.0),
        depth=3,
        init_scale=0.4,
        dtype="float64",
    )
    state = m.init(jax.random.PRNGKey(1), cfg)
    W = state.layers[2] @ state.layers[1] @ state.layers[0]
    np.testing.assert_allclose(W, 0.4**3 * np.eye(3), atol=1e-12)
    for l in range(2):  # W_{l+1}ᵀ W_{l+1} = W_l W_lᵀ
        np.testing.assert_allclose(
            state.layers[l + 1].T @ state.layers[l + 1],
            state.layers[l] @ state.layers[l].T,
            atol=1e-12,
        )
    assert not np.allclose(state.layers[0], 0.4 * np.eye(3))  # random inner bases


def test_vmapped_seeds_equal_single_seed_runs():
    cfg = m.Config(depth=2)
    traj = cj.simulate(m, cfg, seeds=[2, 5], steps=3, every=3)
    keys = seed_keys(0, np.array([2, 5]))
    for i in range(2):
        state = m.init(keys[i], cfg)
        for _ in range(3):
            state = m.step(state, cfg)
        np.testing.assert_allclose(
            traj["encoder"][i, -1], m.observe(state, cfg)["encoder"], rtol=1e-5
        )


def test_step_does_not_retrace_for_new_float_values():
    chex.clear_trace_counter()  # the counter is keyed by source, shared across files
    cfg = m.Config(depth=2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(state, cfg):
        return m.step(state, cfg)

    state = run(m.init(jax.random.PRNGKey(3), cfg), cfg)
    run(state, cfg.replace(lr=0.01, init_scale=0.2))


def test_float64_run_keeps_float64():
    cfg = m.Config(depth=2, dtype="float64", objective="mae")
    state = m.step(m.init(jax.random.PRNGKey(4), cfg), cfg)
    assert state.layers.dtype == jnp.float64 and state.head.dtype == jnp.float64
    chex.assert_tree_all_finite(m.observe(state, cfg))
