"""Model-level checks for the deep linear UFM (shapes, validation, vmap, retracing)."""

import chex
import jax
import numpy as np
import pytest

from collapse_jax import simulate
from collapse_jax.models import deep_linear_ufm as m

TINY = dict(num_classes=3, dim=4, depth=2, per_class=2)


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("bias", [False, True])
def test_observe_shapes_and_finite(loss, bias):
    cfg = m.Config(loss=loss, bias=bias, **TINY)
    state = m.init(jax.random.PRNGKey(0), cfg)
    obs = m.observe(m.step(state, cfg), cfg)
    chex.assert_shape(obs["nc1"], (2,))
    chex.assert_shape(obs["mean_norm"], (2, 3))
    chex.assert_shape(obs["mean_gram"], (2, 3, 3))
    chex.assert_shape(obs["w_gram"], (3, 3))
    chex.assert_shape(obs["sv"], (3,))
    chex.assert_tree_all_finite(obs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_classes", 1),
        ("depth", 0),
        ("per_class", (2, 2)),
        ("loss", "hinge"),
        ("lambda_w_scale", (1.0,)),
        ("lambda_w", 0.0),
        ("lambda_h", -1.0),
        ("lr", 0.0),
        ("dtype", "bfloat16"),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    kwargs = dict(TINY)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        m.Config(**kwargs)


def test_vmapped_seeds_equal_single_seed_runs():
    cfg = m.Config(**TINY)
    both = simulate(m, cfg, seeds=[0, 1], steps=20, every=10)
    one = simulate(m, cfg, seeds=[1], steps=20, every=10)
    np.testing.assert_allclose(both["sv"][1], one["sv"][0], rtol=1e-5)


def test_step_does_not_retrace_on_second_call():
    cfg = m.Config(**TINY)
    state = m.init(jax.random.PRNGKey(0), cfg)

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def deep_linear_ufm_step(s):
        return m.step(s, cfg)

    deep_linear_ufm_step(deep_linear_ufm_step(state))


def test_bias_free_model_keeps_bias_at_zero():
    cfg = m.Config(**TINY)
    traj = simulate(m, cfg, seeds=1, steps=10, every=10)
    assert np.all(traj["b_mean"] == 0)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_float64_training_decreases_the_loss(loss):
    cfg = m.Config(loss=loss, dtype="float64", lr=0.2, **TINY)
    traj = simulate(m, cfg, seeds=2, steps=300, every=100)
    assert traj["loss"].dtype == np.float64
    assert np.all(np.diff(traj.mean("loss")) < 0)
