"""digits_density: shapes, seeds bitwise equal to single runs, the masked pool."""

import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import digits_density as m

CFG = m.Config(
    components=3, num_mixture=3, samples=10, em_iters=3, max_generations=4, reg=1e-3
)


@pytest.fixture(scope="module")
def runs():
    both = cj.simulate(m, CFG.replace(policy="accumulate"), seeds=3, steps=4, every=2)
    alone = cj.simulate(
        m, CFG.replace(policy="accumulate"), seeds=[1], steps=4, every=2
    )
    return both, alone


def test_metric_shapes_and_finite(runs):
    both, _ = runs
    assert both["component_variance"].shape == (3, 3, 3)
    assert both["weights"].shape == (3, 3, 3)
    for name in ("variance", "log_det", "kurtosis", "tail_mass", "kl", "mean_sq"):
        assert both[name].shape == (3, 3)
        assert np.all(np.isfinite(both[name]))
    np.testing.assert_allclose(both["weights"].sum(-1), 1.0, rtol=1e-5)


def test_vmapped_seeds_equal_single_runs_bitwise(runs):
    both, alone = runs
    for name in both.metrics:
        np.testing.assert_array_equal(both[name][1], alone[name][0])


def test_features_are_principal_components():
    x = m.features(CFG.replace(dtype="float32"))
    cov = np.cov(x.T.astype(np.float64), bias=True)
    assert x.shape == (1797, 3)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-6)
    assert np.all(np.diff(np.diag(cov)) < 0)


def test_accumulate_past_its_pool_is_nan():
    import jax

    cfg = CFG.replace(policy="accumulate", max_generations=1)
    state = m.init(jax.random.PRNGKey(0), cfg)
    assert state.pool.shape == (1797 + 10, 3)
    state = m.step(m.step(state, cfg), cfg)
    assert np.isnan(m.observe(state, cfg)["variance"])
