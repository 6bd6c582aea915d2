"""linear_byol: shapes, validation, seeds, tracing, float64, unbiased batch gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import linear_byol as m
from collapse_jax.simulate import seed_keys


@pytest.mark.parametrize("predictor, batch_size", [("learned", 0), ("directpred", 16)])
def test_observe_shapes_and_finite(predictor, batch_size):
    cfg = m.Config(dim=3, predictor=predictor, batch_size=batch_size)
    state = m.init(jax.random.PRNGKey(0), cfg)
    for _ in range(3):
        state = m.step(state, cfg)
    obs = m.observe(state, cfg)
    for name in ("s", "p", "parabola_gap"):
        chex.assert_shape(obs[name], (3,))
    for name in ("alignment", "effective_rank", "target_gap", "loss"):
        chex.assert_shape(obs[name], ())
    chex.assert_tree_all_finite(obs)
    assert state.W.dtype == jnp.float32


@pytest.mark.parametrize(
    "field, value",
    [
        ("dim", 0),
        ("batch_size", -1),
        ("predictor", "mlp"),
        ("init", "zeros"),
        ("lr", 0.0),
        ("alpha_p", -1.0),
        ("ema", 0.0),
        ("ema", 1.5),
        ("weight_decay", -0.1),
        ("aug_var", -1.0),
        ("s0", 0.0),
        ("dp_rho", 1.0),
        ("dp_eps", -1e-3),
        ("dtype", "float16"),
    ],
)
def test_bad_config_value_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        m.Config(**{field: value})


def test_vmapped_seeds_equal_single_seed_runs():
    # simulate vmaps seeds; the reference runs each seed alone, step by step.
    cfg = m.Config(dim=3, batch_size=8, ema=0.5)
    traj = cj.simulate(m, cfg, seeds=[0, 3], steps=4, every=4)
    keys = seed_keys(0, np.array([0, 3]))
    for i in range(2):
        state = m.init(keys[i], cfg)
        for _ in range(4):
            state = m.step(state, cfg)
        obs = m.observe(state, cfg)
        np.testing.assert_allclose(traj["s"][i, -1], obs["s"], rtol=1e-5)
        np.testing.assert_allclose(traj["p"][i, -1], obs["p"], rtol=1e-5, atol=1e-6)


def test_step_does_not_retrace_on_second_call_or_new_float_values():
    chex.clear_trace_counter()  # the counter is keyed by source, shared across files
    cfg = m.Config(dim=3)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(state, cfg):
        return m.step(state, cfg)

    state = m.init(jax.random.PRNGKey(1), cfg)
    state = run(state, cfg)
    state = run(state, cfg.replace(weight_decay=0.1, lr=0.02))


def test_float64_run_keeps_float64():
    cfg = m.Config(dim=3, dtype="float64", batch_size=4)
    state = m.init(jax.random.PRNGKey(5), cfg)
    for _ in range(3):
        state = m.step(state, cfg)
    assert all(x.dtype == jnp.float64 for x in (state.W, state.Wp, state.Wa))
    chex.assert_tree_all_finite(m.observe(state, cfg))


def test_aligned_init_has_prescribed_mode_strengths_and_predictor():
    cfg = m.Config(dim=4, s0=0.8, p0=0.25, dtype="float64")
    obs = m.observe(m.init(jax.random.PRNGKey(2), cfg), cfg)
    np.testing.assert_allclose(obs["s"], 0.8 * np.array([4, 3, 2, 1]) / 4, rtol=1e-12)
    np.testing.assert_allclose(obs["p"], 0.25, rtol=1e-12)
    assert float(obs["alignment"]) == pytest.approx(1.0, abs=1e-12)


def test_batch_gradient_is_unbiased_for_the_population_gradient():
    # Average of 4000 independent batch gradients (B = 8): the mean of a sample of
    # i.i.d. gradients; each entry must lie within 5 standard errors of the exact one.
    cfg = m.Config(dim=3, batch_size=8, init="random", dtype="float64", aug_var=0.7)
    state = m.init(jax.random.PRNGKey(3), cfg)
    W_a = state.W + 0.1
    grad = jax.grad(m.loss, argnums=(0, 1))
    exact = grad(state.Wp, state.W, W_a, cfg)

    def one(key):
        _, batch = m._batch(key, cfg, jnp.float64)
        return jnp.concatenate(
            [g.ravel() for g in grad(state.Wp, state.W, W_a, cfg, batch)]
        )

    samples = jax.vmap(one)(jax.random.split(jax.random.PRNGKey(4), 4000))
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(4000)
    exact = np.concatenate([g.ravel() for g in exact])
    assert np.all(np.abs(mean - exact) <= 5 * se)
