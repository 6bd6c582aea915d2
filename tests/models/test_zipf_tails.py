"""zipf_tails: shapes of both sources, tail truncation, training law, float64, sweeps.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import zipf_tails as m


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


def test_swept_cut_rank_equals_separate_runs():
    cfg = _cfg()
    grid = [5.0, 50.0]
    swept = cj.sweep(m, cfg, {"cut_rank": grid}, seeds=[0, 1, 2], steps=4)
    # One separate run (the last grid point) against its slice of the vmapped sweep.
    alone = cj.simulate(m, cfg.replace(cut_rank=grid[-1]), seeds=[0, 1, 2], steps=4)
    np.testing.assert_allclose(swept["test_error"][-1], alone["test_error"], rtol=1e-12)


def test_float64_config_observes_float64():
    cfg = _cfg(clean_fraction=0.1)
    out = m.observe(m.step(m.init(jax.random.PRNGKey(2), cfg), cfg), cfg)
    assert out["test_error"].dtype == jnp.float64
