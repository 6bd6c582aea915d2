"""Deep linear network: shapes of its variants, balanced init, float64.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

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


def test_float64_run_keeps_dtype_and_loss_decreases():
    cfg = m.Config(dtype="float64", lr=0.01, init_scale=0.5, **TINY)
    traj = simulate(m, cfg, seeds=2, steps=100, every=25)  # still learning at t = 1
    assert traj["modes"].dtype == np.float64
    state = m.init(jax.random.PRNGKey(0), cfg)
    assert state.weights[0].dtype == jnp.float64
    assert np.all(np.diff(traj.mean("loss")) < 0)
