"""linear_byol: shapes of its variants, float64, aligned init, unbiased batch gradient.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py. Each check is one jitted function per config: eager calls
would compile every primitive on its own.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import model_runs
import numpy as np
import pytest

from collapse_jax.models import linear_byol as m

_run = functools.partial(model_runs.run, m)  # (key, cfg, steps) -> (state, obs)


# Minibatch float64 with the aligned init: the float64 run and the aligned init (the
# batch size does not enter init or observe) share its program.
F64 = m.Config(dim=4, batch_size=4, dtype="float64")


@pytest.mark.parametrize("predictor, batch_size", [("learned", 0), ("directpred", 16)])
def test_observe_shapes_and_finite(predictor, batch_size):
    cfg = m.Config(dim=3, predictor=predictor, batch_size=batch_size)
    state, obs = _run(jax.random.PRNGKey(0), cfg, 3)
    for name in ("s", "p", "parabola_gap"):
        chex.assert_shape(obs[name], (3,))
    for name in ("alignment", "effective_rank", "target_gap", "loss"):
        chex.assert_shape(obs[name], ())
    chex.assert_tree_all_finite(obs)
    assert state.W.dtype == jnp.float32


def test_float64_run_keeps_float64():
    state, obs = _run(jax.random.PRNGKey(5), F64, 3)
    assert all(x.dtype == jnp.float64 for x in (state.W, state.Wp, state.Wa))
    chex.assert_tree_all_finite(obs)


def test_aligned_init_has_prescribed_mode_strengths_and_predictor():
    cfg = F64.replace(s0=0.8, p0=0.25)  # floats: the same program
    _, obs = _run(jax.random.PRNGKey(2), cfg, 0)
    np.testing.assert_allclose(obs["s"], 0.8 * np.array([4, 3, 2, 1]) / 4, rtol=1e-12)
    np.testing.assert_allclose(obs["p"], 0.25, rtol=1e-12)
    assert float(obs["alignment"]) == pytest.approx(1.0, abs=1e-12)


def test_batch_gradient_is_unbiased_for_the_population_gradient():
    # Average of 4000 independent batch gradients (B = 8): the mean of a sample of
    # i.i.d. gradients; each entry must lie within 5 standard errors of the exact one.
    cfg = m.Config(dim=3, batch_size=8, init="random", dtype="float64", aug_var=0.7)
    state = jax.jit(m.init)(jax.random.PRNGKey(3), cfg)
    W_a = state.W + 0.1
    grad = jax.grad(m.loss, argnums=(0, 1))

    @jax.jit
    def gradients(keys):
        def one(key):
            _, batch = m._batch(key, cfg, jnp.float64)
            return jnp.concatenate(
                [g.ravel() for g in grad(state.Wp, state.W, W_a, cfg, batch)]
            )

        exact = grad(state.Wp, state.W, W_a, cfg)
        return jnp.concatenate([g.ravel() for g in exact]), jax.vmap(one)(keys)

    exact, samples = gradients(jax.random.split(jax.random.PRNGKey(4), 4000))
    samples, exact = np.asarray(samples), np.asarray(exact)
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(4000)
    assert np.all(np.abs(mean - exact) <= 5 * se)
