"""Model-level checks for the deep linear network (shapes, validation, vmap, retracing)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import simulate
from collapse_jax.models import deep_linear as m

TINY = dict(depth=3, in_dim=3, hidden=4, out_dim=3, singular_values=(2.0, 1.0))


@pytest.mark.parametrize("init", ["balanced", "random"])
def test_observe_shapes_and_finite(init):
    cfg = m.Config(init=init, **TINY)
    state = m.init(jax.random.PRNGKey(0), cfg)
    chex.assert_shape(state.weights[0], (4, 3))
    chex.assert_shape(state.weights[-1], (3, 4))
    obs = m.observe(m.step(state, cfg), cfg)
    chex.assert_shape(obs["modes"], (2,))
    chex.assert_shape(obs["loss"], ())
    chex.assert_tree_all_finite(obs)


def test_balanced_init_starts_every_mode_at_scale_to_the_depth():
    cfg = m.Config(init_scale=0.3, **TINY)
    obs = m.observe(m.init(jax.random.PRNGKey(1), cfg), cfg)
    np.testing.assert_allclose(obs["modes"], 0.3**3, rtol=1e-5)
    assert float(obs["cross"]) < 1e-6


@pytest.mark.parametrize(
    "field, value",
    [
        ("depth", 1),
        ("singular_values", (3.0, 2.0, 1.0, 0.5)),
        ("singular_values", (1.0, -1.0)),
        ("input_eigs", (1.0,)),
        ("init", "orthogonal"),
        ("lr", 0.0),
        ("init_scale", -0.1),
        ("dtype", "float16"),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    kwargs = dict(TINY)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        m.Config(**kwargs)


def test_vmapped_seeds_equal_single_seed_runs():
    cfg = m.Config(init="random", init_scale=0.3, **TINY)
    both = simulate(m, cfg, seeds=[0, 1], steps=20, every=5)
    one = simulate(m, cfg, seeds=[1], steps=20, every=5)
    np.testing.assert_allclose(both["modes"][1], one["modes"][0], rtol=1e-6)


def test_step_does_not_retrace_on_second_call():
    cfg = m.Config(**TINY)
    state = m.init(jax.random.PRNGKey(0), cfg)

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def deep_linear_step(s):
        return m.step(s, cfg)

    deep_linear_step(deep_linear_step(state))


def test_float64_run_keeps_dtype_and_loss_decreases():
    cfg = m.Config(dtype="float64", lr=0.01, init_scale=0.5, **TINY)
    traj = simulate(m, cfg, seeds=2, steps=100, every=25)  # still learning at t = 1
    assert traj["modes"].dtype == np.float64
    state = m.init(jax.random.PRNGKey(0), cfg)
    assert state.weights[0].dtype == jnp.float64
    assert np.all(np.diff(traj.mean("loss")) < 0)
