"""zipf_tails: shapes, validation, vmapped runs, no retrace."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import zipf_tails as m
from collapse_jax.simulate import seed_keys


def _cfg(**kw):
    base = dict(vocab=200, batch=5, cut_rank=20.0, dtype="float64")
    base.update(kw)
    return m.Config(**base)


@pytest.mark.parametrize("source", ["cut", "narrow"])
def test_observe_shapes_and_finite(source):
    cfg = _cfg(source=source, dtype="float32")
    state = m.init(jax.random.PRNGKey(0), cfg)
    for _ in range(3):
        state = m.step(state, cfg)
    out = m.observe(state, cfg)
    assert out["test_error"].shape == out["coverage"].shape == ()
    assert out["test_error"].dtype == jnp.float32
    chex.assert_tree_all_finite(out)
    assert 1 <= float(out["coverage"]) <= 15


def test_cut_source_without_clean_data_never_emits_the_tail():
    cfg = _cfg(cut_rank=20.0, clean_fraction=0.0)
    tr = cj.simulate(m, cfg, seeds=4, steps=200, every=200)
    assert np.all(tr.final("coverage") <= 20)
    tail = float(jnp.sum(cfg.test_probs()[20:]))
    assert np.all(tr.final("test_error") >= tail - 1e-12)


def test_training_law_is_a_distribution_and_mixes_clean_data():
    cfg = _cfg(clean_fraction=0.25)
    q, p = cfg.train_probs(), cfg.test_probs()
    np.testing.assert_allclose(jnp.sum(q), 1.0, rtol=1e-12)
    np.testing.assert_allclose(q[50:], 0.25 * p[50:], rtol=1e-12)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(vocab=1), "vocab"),
        (dict(batch=0), "batch"),
        (dict(source="top_p"), "source"),
        (dict(beta=1.0), "beta"),
        (dict(beta=0.5), "beta"),
        (dict(cut_rank=0.5), "cut_rank"),
        (dict(narrow_beta=1.0), "narrow_beta"),
        (dict(clean_fraction=1.2), "clean_fraction"),
        (dict(dtype="bfloat16"), "dtype"),
    ],
)
def test_bad_config_raises_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        _cfg(**kw)


def test_vmapped_seeds_equal_single_seed_run_in_float64():
    cfg = _cfg(clean_fraction=0.1)
    many = cj.simulate(m, cfg, seeds=[0, 1, 2], steps=4)
    assert many["test_error"].dtype == np.float64
    state = m.init(seed_keys(0, np.array([0]))[0], cfg)
    step = jax.jit(m.step, static_argnums=1)
    for t in range(5):
        out = m.observe(state, cfg)
        for name, value in out.items():
            np.testing.assert_allclose(many[name][0, t], value, rtol=1e-12)
        state = step(state, cfg)


def test_swept_cut_rank_equals_separate_runs():
    cfg = _cfg()
    grid = [5.0, 50.0]
    swept = cj.sweep(m, cfg, {"cut_rank": grid}, seeds=[0, 1, 2], steps=4)
    # One separate run (the last grid point) against its slice of the vmapped sweep.
    alone = cj.simulate(m, cfg.replace(cut_rank=grid[-1]), seeds=[0, 1, 2], steps=4)
    np.testing.assert_allclose(swept["test_error"][-1], alone["test_error"], rtol=1e-12)


def test_step_does_not_retrace_on_second_call():
    cfg = _cfg()

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def advance_zipf_tails(state):
        return m.step(state, cfg)

    advance_zipf_tails(advance_zipf_tails(m.init(jax.random.PRNGKey(1), cfg)))
