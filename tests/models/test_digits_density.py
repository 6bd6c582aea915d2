"""digits_density: shapes, the PCA features, the masked pool. (Seeds bitwise equal to
single runs, finiteness over a run and no retrace: tests/test_model_contract.py.)"""

import jax
import numpy as np
import pytest

from collapse_jax.models import digits_density as m

CFG = m.Config(
    components=3,
    num_mixture=3,
    samples=10,
    em_iters=3,
    policy="accumulate",
    max_generations=4,
    reg=1e-3,
)


@pytest.fixture(scope="module")
def states():
    """Generations 0..5 of one seed (the pool holds 4)."""
    step = jax.jit(m.step)
    out = [jax.jit(m.init)(jax.random.PRNGKey(0), CFG)]
    for _ in range(5):
        out.append(step(out[-1], CFG))
    return out


def test_metric_shapes_and_finite(states):
    observe = jax.jit(m.observe)
    for state in states[:5]:
        obs = observe(state, CFG)
        assert obs["component_variance"].shape == (3,)
        assert obs["weights"].shape == (3,)
        for name in ("variance", "log_det", "kurtosis", "tail_mass", "kl", "mean_sq"):
            assert obs[name].shape == ()
            assert np.isfinite(obs[name])
        np.testing.assert_allclose(obs["weights"].sum(), 1.0, rtol=1e-5)
    assert observe(states[0], CFG)["kl"] == pytest.approx(0.0, abs=1e-6)


def test_features_are_principal_components():
    x = m.features(CFG)
    cov = np.cov(x.T.astype(np.float64), bias=True)
    assert x.shape == (1797, 3)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-6)
    assert np.all(np.diff(np.diag(cov)) < 0)


def test_accumulate_fills_the_pool_and_is_nan_past_it(states):
    assert states[0].pool.shape == (1797 + 4 * 10, 3)
    np.testing.assert_array_equal(states[0].pool[:1797], m.features(CFG))
    assert np.all(states[4].pool[1797:] != 0)
    assert np.isnan(jax.jit(m.observe)(states[5], CFG)["variance"])
