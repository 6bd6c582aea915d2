"""linear_jepa: shapes of both objectives, balanced aligned init, float64.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import linear_jepa as m


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


def test_float64_run_keeps_float64():
    cfg = m.Config(depth=2, dtype="float64", objective="mae")
    state = m.step(m.init(jax.random.PRNGKey(4), cfg), cfg)
    assert state.layers.dtype == jnp.float64 and state.head.dtype == jnp.float64
    chex.assert_tree_all_finite(m.observe(state, cfg))
