"""recursive_gaussian: shapes, validation, determinism of vmapped runs, no retrace."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import recursive_gaussian as m
from collapse_jax.simulate import seed_keys


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
    for name in ("mean_sq", "variance", "log_det", "w2_sq", "w2"):
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


def test_accumulate_past_capacity_reports_nan_not_garbage():
    cfg = _cfg(policy="accumulate", max_generations=2)
    with pytest.warns(cj.DivergenceWarning):
        tr = cj.simulate(m, cfg, seeds=2, steps=3)
    assert np.all(np.isfinite(tr["variance"][:, :3]))
    assert np.all(np.isnan(tr["variance"][:, 3]))


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(dim=0), "dim"),
        (dict(samples=1, covariance="diagonal"), "samples"),
        (dict(samples=3, covariance="full"), "samples"),  # needs M >= d + 1 = 4
        (dict(estimator="bessel"), "estimator"),
        (dict(policy="keep"), "policy"),
        (dict(covariance="low_rank"), "covariance"),
        (dict(max_generations=0), "max_generations"),
        (dict(real_fraction=1.5), "real_fraction"),
        (dict(real_fraction=-0.1), "real_fraction"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_bad_config_raises_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        _cfg(**kw)


def test_vmapped_seeds_equal_single_seed_run_in_float64():
    cfg = _cfg(policy="accumulate")  # the policy with the masked, growing pool
    many = cj.simulate(m, cfg, seeds=[0, 1, 2], steps=4)
    assert many["variance"].dtype == np.float64
    # The same seed run alone, step by step, outside the engine's vmap and scan.
    state = m.init(seed_keys(0, np.array([1]))[0], cfg)
    step = jax.jit(m.step, static_argnums=1)
    observe = jax.jit(m.observe, static_argnums=1)
    for t in range(5):
        out = observe(state, cfg)
        for name, value in out.items():
            np.testing.assert_allclose(many[name][1, t], value, rtol=1e-10, atol=1e-12)
        state = step(state, cfg)


def test_swept_real_fraction_equals_separate_runs():
    cfg = _cfg(policy="mix")
    grid = [0.2, 0.7]
    swept = cj.sweep(m, cfg, {"real_fraction": grid}, seeds=[0, 1, 2], steps=4)
    # One separate run (the last grid point) against its slice of the vmapped sweep.
    alone = cj.simulate(
        m, cfg.replace(real_fraction=grid[-1]), seeds=[0, 1, 2], steps=4
    )
    np.testing.assert_allclose(swept["variance"][-1], alone["variance"], rtol=1e-12)


def test_step_does_not_retrace_on_second_call():
    cfg = _cfg(policy="accumulate")

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def advance_recursive_gaussian(state):
        return m.step(state, cfg)

    state = m.init(jax.random.PRNGKey(5), cfg)
    state = advance_recursive_gaussian(state)
    state = advance_recursive_gaussian(state)
    assert int(state.generation) == 2
