"""digits_ssl: shapes, seeds bitwise equal to single runs, the loss and its options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import digits_ssl as m

# The BYOL path (EMA target) of a tiny MLP: every code path but the linear encoder.
CFG = m.Config(hidden=8, embed_dim=4, batch_size=8, target="ema", ema=0.5)


@pytest.fixture(scope="module")
def runs():
    both = cj.simulate(m, CFG, seeds=3, steps=4, every=2)
    alone = cj.simulate(m, CFG, seeds=[1], steps=4, every=2)
    return both, alone


def test_metric_shapes_and_finite(runs):
    both, _ = runs
    assert both["spectrum"].shape == (3, 3, 4)
    for name in ("effective_rank", "output_std", "embed_var", "loss"):
        assert both[name].shape == (3, 3)
        assert np.all(np.isfinite(both[name]))
    np.testing.assert_allclose(both["spectrum"].sum(-1), 1.0, rtol=1e-5)
    assert np.all((both["effective_rank"] >= 1) & (both["effective_rank"] <= 4 + 1e-5))


def test_vmapped_seeds_equal_single_runs_bitwise(runs):
    both, alone = runs
    for name in both.metrics:
        np.testing.assert_array_equal(both[name][1], alone[name][0])


def test_identical_views_give_the_collapsed_cosine_loss_without_predictor():
    cfg = CFG.replace(predictor=False, target="online")
    state = m.init(jax.random.PRNGKey(0), cfg)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 64)), jnp.float32)
    value = m.loss(state.params, state.target, x, x, cfg)
    np.testing.assert_allclose(value, -1.0, rtol=1e-6)


def test_ema_target_needs_stop_gradient():
    with pytest.raises(ValueError, match="stop_gradient"):
        m.Config(target="ema", stop_gradient=False)
