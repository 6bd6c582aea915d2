"""Deep linear UFM: shapes of its variants, bias-free runs, float64 training.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import numpy as np
import pytest

from collapse_jax import simulate
from collapse_jax.models import deep_linear_ufm as m

TINY = dict(num_classes=3, dim=4, depth=2, per_class=2)
LOSSES = ["mse", "ce"]


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("bias", [False, True])
def test_observe_shapes_and_finite(loss, bias):
    cfg = m.Config(loss=loss, bias=bias, **TINY)
    # Eager: the four variants share most of their operations' shapes, so the
    # per-operation programs of the first serve the others (cheaper than four jits).
    state = m.init(jax.random.PRNGKey(0), cfg)
    obs = m.observe(m.step(state, cfg), cfg)
    chex.assert_shape(obs["nc1"], (2,))
    chex.assert_shape(obs["mean_norm"], (2, 3))
    chex.assert_shape(obs["mean_gram"], (2, 3, 3))
    chex.assert_shape(obs["w_gram"], (3, 3))
    chex.assert_shape(obs["sv"], (3,))
    chex.assert_tree_all_finite(obs)


@pytest.fixture(scope="module")
def float64_runs():
    """Per loss, 300 float64 steps on two seeds (bias-free, the default)."""
    cfgs = {
        loss: m.Config(loss=loss, dtype="float64", lr=0.2, **TINY) for loss in LOSSES
    }
    return {
        loss: simulate(m, cfg, seeds=2, steps=300, every=100)
        for loss, cfg in cfgs.items()
    }


@pytest.mark.parametrize("loss", LOSSES)
def test_bias_free_model_keeps_bias_at_zero(float64_runs, loss):
    assert np.all(float64_runs[loss]["b_mean"] == 0)


@pytest.mark.parametrize("loss", LOSSES)
def test_float64_training_decreases_the_loss(float64_runs, loss):
    traj = float64_runs[loss]
    assert traj["loss"].dtype == np.float64
    assert np.all(np.diff(traj.mean("loss")) < 0)
