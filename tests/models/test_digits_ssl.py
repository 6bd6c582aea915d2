"""digits_ssl: shapes, the loss and its options. (Seeds bitwise equal to single runs,
finiteness over a run and no retrace: tests/test_model_contract.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import digits_ssl as m

# The BYOL path (EMA target) of a tiny MLP: every code path but the linear encoder.
CFG = m.Config(hidden=8, embed_dim=4, batch_size=8, target="ema", ema=0.5)


@pytest.fixture(scope="module")
def state():
    return jax.jit(m.init)(jax.random.PRNGKey(0), CFG)


def test_metric_shapes_and_ranges(state):
    obs = jax.jit(m.observe)(state, CFG)
    assert obs["spectrum"].shape == (4,)
    for name in ("effective_rank", "output_std", "embed_var", "loss"):
        assert obs[name].shape == ()
        assert np.isfinite(obs[name])
    np.testing.assert_allclose(obs["spectrum"].sum(), 1.0, rtol=1e-5)
    assert np.all(np.diff(obs["spectrum"]) <= 0)
    assert 1 <= obs["effective_rank"] <= 4 + 1e-5


def test_identical_views_give_the_collapsed_cosine_loss_without_predictor(state):
    cfg = CFG.replace(predictor=False, target="online")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 64)), jnp.float32)
    value = jax.jit(m.loss)(state.params, None, x, x, cfg)
    np.testing.assert_allclose(value, -1.0, rtol=1e-6)


def test_ema_target_needs_stop_gradient():
    with pytest.raises(ValueError, match="stop_gradient"):
        m.Config(target="ema", stop_gradient=False)
