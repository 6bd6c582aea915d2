"""recursive_gaussian: shapes of its policies, generation zero, pool capacity, float64.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import recursive_gaussian as m


def _cfg(**kw):
    base = dict(dim=3, samples=6, max_generations=8, dtype="float64")
    base.update(kw)
    return m.Config(**base)


@pytest.mark.parametrize(
    "policy, covariance",
    [("replace", "full"), ("accumulate", "diagonal"), ("mix", "full")],
)
def test_observe_shapes_and_finite(policy, covariance):
    cfg = _cfg(policy=policy, covariance=covariance, dtype="float32")
    state = m.init(jax.random.PRNGKey(0), cfg)
    for _ in range(3):
        state = m.step(state, cfg)
    out = m.observe(state, cfg)
    assert out["mean"].shape == (3,)
    for name in ("mean_sq", "variance", "cov_err_sq", "log_det", "w2_sq", "w2"):
        assert out[name].shape == ()
        assert out[name].dtype == jnp.float32
    chex.assert_tree_all_finite(out)
    assert int(state.generation) == 3


def test_generation_zero_is_the_original_distribution():
    cfg = _cfg()
    out = m.observe(m.init(jax.random.PRNGKey(1), cfg), cfg)
    np.testing.assert_allclose(out["variance"], 3.0)
    np.testing.assert_allclose(out["w2_sq"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["log_det"], 0.0, atol=1e-12)


def test_diagonal_fit_keeps_covariance_diagonal():
    cfg = _cfg(covariance="diagonal")
    state = m.step(m.init(jax.random.PRNGKey(2), cfg), cfg)
    off = state.cov - jnp.diag(jnp.diagonal(state.cov))
    assert float(jnp.max(jnp.abs(off))) == 0.0


def test_accumulate_first_generation_equals_replace():
    # Generation 1 fits the M real samples under both policies (same key, same draw).
    key = jax.random.PRNGKey(3)
    a, b = _cfg(policy="accumulate"), _cfg(policy="replace")
    sa, sb = m.step(m.init(key, a), a), m.step(m.init(key, b), b)
    np.testing.assert_allclose(sa.mean, sb.mean, rtol=1e-12)
    np.testing.assert_allclose(sa.cov, sb.cov, rtol=1e-12)


def test_mix_with_zero_real_weight_equals_replace():
    key = jax.random.PRNGKey(4)
    a, b = _cfg(policy="mix", real_fraction=0.0), _cfg(policy="replace")
    sa, sb = m.init(key, a), m.init(key, b)
    for _ in range(4):
        sa, sb = m.step(sa, a), m.step(sb, b)
    np.testing.assert_allclose(sa.cov, sb.cov, rtol=1e-12)


def test_check_steps_refuses_runs_past_the_accumulate_pool():
    cfg = _cfg(policy="accumulate", max_generations=2)
    m.check_steps(cfg, 2)  # exactly the capacity: fine
    # The message names both the capacity and the length asked for.
    with pytest.raises(ValueError, match=r"steps=3 exceeds max_generations=2"):
        m.check_steps(cfg, 3)
    # Policies without a pool accept any length.
    m.check_steps(_cfg(policy="replace", max_generations=2), 1000)
    m.check_steps(_cfg(policy="mix", max_generations=2), 1000)


def test_simulate_refuses_accumulate_runs_past_the_pool_before_running():
    cfg = _cfg(policy="accumulate", max_generations=2)
    with pytest.raises(ValueError, match=r"steps=3 exceeds max_generations=2"):
        cj.simulate(m, cfg, seeds=2, steps=3)


def test_accumulate_step_past_capacity_gives_nan_not_garbage():
    # Stepping by hand past the pool (no engine check) must not overwrite data.
    cfg = _cfg(policy="accumulate", max_generations=2)
    state = m.init(jax.random.PRNGKey(5), cfg)
    for _ in range(2):
        state = m.step(state, cfg)
    assert np.all(np.isfinite(state.cov))
    assert np.all(np.isnan(m.step(state, cfg).cov))


def test_swept_real_fraction_equals_separate_runs():
    cfg = _cfg(policy="mix")
    grid = [0.2, 0.7]
    swept = cj.sweep(m, cfg, {"real_fraction": grid}, seeds=[0, 1, 2], steps=4)
    # One separate run (the last grid point) against its slice of the vmapped sweep.
    alone = cj.simulate(
        m, cfg.replace(real_fraction=grid[-1]), seeds=[0, 1, 2], steps=4
    )
    np.testing.assert_allclose(swept["variance"][-1], alone["variance"], rtol=1e-12)


def test_float64_config_observes_float64():
    cfg = _cfg(policy="accumulate")
    state = m.step(m.init(jax.random.PRNGKey(6), cfg), cfg)
    assert state.cov.dtype == jnp.float64
    out = m.observe(state, cfg)
    assert out["variance"].dtype == out["mean"].dtype == jnp.float64
