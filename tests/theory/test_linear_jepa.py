"""linear_jepa per-feature ODEs (setting of Littwin et al. 2024, arXiv 2407.03475) vs
full deep-linear simulation. Population gradients: seeds only draw the random inner
layer bases, which the per-feature metrics do not see (SE ~ 0); the tolerance is the
Euler discretisation error, estimated by Richardson extrapolation (lr, lr/2)."""

import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import linear_jepa as m
from collapse_jax.theory import linear_jepa as th

# Feature 0: larger cross-covariance λ, small regression coefficient ρ ("noisy");
# feature 1: smaller λ, large ρ ("influential").
FEATURES = dict(lam=(1.5, 1.0), rho=(0.5, 2.0), init_scale=0.3, dtype="float64")


@pytest.mark.parametrize("objective, depth", [("jepa", 2), ("mae", 3)])
def test_feature_odes_match_full_deep_linear_simulation(objective, depth):
    cfg = m.Config(objective=objective, depth=depth, **FEATURES)
    runs = {}
    for lr in (0.01, 0.005):
        steps = int(round(40 / lr))
        runs[lr] = cj.simulate(
            m, cfg.replace(lr=lr), steps=steps, every=steps // 8, seeds=2
        )
    fine = runs[0.005]
    pred = th.predict(cfg.replace(lr=0.005), fine.steps)
    for name in ("encoder", "head", "readout"):
        # 1.5 × the leading-order Richardson estimate of the lr/2 run's Euler error.
        richardson = np.max(np.abs(runs[0.01].mean(name) - fine.mean(name)))
        agreement = cj.compare(
            fine, {name: pred[name]}, z=4, atol=1.5 * richardson, at="trajectory"
        )
        assert agreement.passed, agreement[name].summary()
        assert richardson < 0.02 * np.max(np.abs(pred[name]))


def _half_time(traj, final):
    """First recorded time at which encoder / final gain reaches 1/2, per feature."""
    frac = traj.mean("encoder") / np.asarray(final)[None, :]
    idx = np.argmax(frac >= 0.5, axis=0)
    assert np.all(frac[idx, np.arange(frac.shape[1])] >= 0.5)
    return traj.steps[idx] * traj.cfg.lr


@pytest.fixture(scope="module")
def deep_runs():
    out = {}
    for objective in ("jepa", "mae"):
        cfg = m.Config(objective=objective, depth=3, lr=0.01, **FEATURES)
        out[objective] = (cfg, cj.simulate(m, cfg, steps=20_000, every=100, seeds=2))
    return out


def test_depth3_jepa_learns_the_influential_feature_first_mae_the_covarying_one(
    deep_runs,
):
    order = {}
    for objective, (cfg, traj) in deep_runs.items():
        t_half = _half_time(traj, th.final_encoder(cfg))
        theory = np.asarray(th.critical_time(cfg))
        # Simulated crossing lies within one record (Δt = 1) plus the Euler shift
        # (< 2 % of the time) of the quadrature critical time.
        np.testing.assert_allclose(t_half, theory, atol=1.0, rtol=0.02)
        order[objective] = np.argsort(t_half)
    assert list(order["jepa"]) == [1, 0]  # high-ρ feature first
    assert list(order["mae"]) == [0, 1]  # high-λ feature first


def test_shallow_jepa_keeps_the_mae_order():
    # Depth drives the ρ bias: at L = 1 the JEPA critical times keep the λ order
    # (init_scale 0.2: the critical time needs ε below half of ρ₀ = 0.5 at L = 1).
    cfg = m.Config(objective="jepa", depth=1, **{**FEATURES, "init_scale": 0.2})
    times = np.asarray(th.critical_time(cfg))
    assert times[0] < times[1]
    traj = cj.simulate(m, cfg.replace(lr=0.01), steps=1000, every=10, seeds=2)
    t_half = _half_time(traj, th.final_encoder(cfg))
    assert t_half[0] < t_half[1]
