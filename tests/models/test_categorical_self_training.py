"""categorical_self_training: observed law, extinction, float64, sweeps.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

import collapse_jax as cj
from collapse_jax.models import categorical_self_training as m


def _cfg(**kw):
    base = dict(num_symbols=5, samples=7, dtype="float64")
    base.update(kw)
    return m.Config(**base)


def test_observe_shapes_finite_and_a_distribution():
    cfg = _cfg(dtype="float32", initial="zipf")
    state = m.init(jax.random.PRNGKey(0), cfg)
    for _ in range(3):
        state = m.step(state, cfg)
    out = m.observe(state, cfg)
    for name in ("diversity", "support", "entropy", "max_prob"):
        assert out[name].shape == ()
    assert out["p"].shape == out["alive"].shape == (5,)
    assert out["p"].dtype == jnp.float32
    chex.assert_tree_all_finite(out)
    np.testing.assert_allclose(jnp.sum(out["p"]), 1.0, rtol=1e-6)
    # Refitted probabilities are multiples of 1/n.
    np.testing.assert_allclose(out["p"] * 7, jnp.round(out["p"] * 7), atol=1e-5)


def test_extinct_symbol_never_returns():
    cfg = _cfg(samples=3)
    tr = cj.simulate(m, cfg, seeds=20, steps=30)
    alive = tr["alive"]  # [S, T, K]
    assert np.all(np.diff(alive, axis=1) <= 0)


def test_swept_zipf_exponent_equals_separate_runs():
    cfg = _cfg(initial="zipf")
    grid = [0.5, 2.0]
    swept = cj.sweep(m, cfg, {"zipf_exponent": grid}, seeds=[0, 1, 2], steps=4)
    # One separate run (the last grid point) against its slice of the vmapped sweep.
    alone = cj.simulate(
        m, cfg.replace(zipf_exponent=grid[-1]), seeds=[0, 1, 2], steps=4
    )
    np.testing.assert_allclose(swept["p"][-1], alone["p"], rtol=1e-12)


def test_float64_config_observes_float64():
    cfg = _cfg()
    out = m.observe(m.step(m.init(jax.random.PRNGKey(2), cfg), cfg), cfg)
    assert out["p"].dtype == jnp.float64 and out["entropy"].dtype == jnp.float64
