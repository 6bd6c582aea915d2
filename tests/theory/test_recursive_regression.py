"""recursive_regression theory vs simulation.

Stochastic predictions are exact expectations: |mean − theory| <= z·SE with z = 4 over
the stated number of seeds (every generation recorded). The ridge formula is a
deterministic equivalent; its finite-size bias is covered by a stated rtol.
"""

import math

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import recursive_regression as m
from collapse_jax.theory import recursive_regression as th

Z = 4.0
SEEDS = 1000
STEPS = 12


def _cfg(**kw):
    base = dict(
        dim=10,
        samples=30,
        generator_samples=20,
        noise=0.7,
        generator_noise=1.0,
        dtype="float64",
    )
    base.update(kw)
    return m.Config(**base)


def _grid_predict(tr):
    return jax.vmap(lambda c: th.predict(c, tr.steps))(tr.cfg)


@pytest.fixture(scope="module")
def replace_fresh():
    return cj.sweep(
        m, _cfg(), {"generator_samples": [20, 60]}, seeds=SEEDS, steps=STEPS
    )


@pytest.fixture(scope="module")
def replace_fixed_power_law():
    cfg = _cfg(fixed_design=True, spectrum="power_law", decay=1.5)
    return cj.simulate(m, cfg, seeds=SEEDS, steps=STEPS)


@pytest.fixture(scope="module")
def accumulate_fixed():
    return cj.simulate(
        m, _cfg(policy="accumulate", fixed_design=True), seeds=SEEDS, steps=STEPS
    )


@pytest.fixture(scope="module")
def mix_fresh():
    weights = [0.3, 0.5, th.golden_ratio_weight(), 0.75, 0.9]
    return cj.sweep(
        m, _cfg(policy="mix"), {"real_weight": weights}, seeds=SEEDS, steps=STEPS
    )


def test_replace_error_grows_as_n_sigma0_sq_d_over_T0_minus_d_minus_1(replace_fresh):
    agreement = cj.compare(replace_fresh, _grid_predict(replace_fresh), z=Z)
    assert agreement.passed, agreement.table()
    # The prediction itself: linear in n with slope σ0² d/(T0 − d − 1).
    slope = np.diff(np.asarray(_grid_predict(replace_fresh)["test_error"]), axis=1)
    np.testing.assert_allclose(slope[0], 10 / 9)  # T0 = 20
    np.testing.assert_allclose(slope[1], 10 / 49)  # T0 = 60


def test_ols_error_does_not_depend_on_covariance_with_a_fixed_design(
    replace_fixed_power_law,
):
    tr = replace_fixed_power_law
    pred = th.predict(tr.cfg, tr.steps)
    agreement = cj.compare(tr, pred, z=Z)
    assert agreement.passed, agreement.table()
    iso = th.predict(_cfg(), tr.steps)
    np.testing.assert_allclose(pred["test_error"], iso["test_error"])


def test_accumulate_error_follows_the_inverse_square_sum(accumulate_fixed):
    tr = accumulate_fixed
    agreement = cj.compare(tr, th.predict(tr.cfg, tr.steps), z=Z)
    assert agreement.passed, agreement.table()


def test_accumulate_error_stays_below_pi2_over_6_bound(accumulate_fixed):
    tr = accumulate_fixed
    bound = float(th.accumulate_limit(tr.cfg))
    np.testing.assert_allclose(bound, math.pi**2 / 6 * 10 / 9)
    assert np.all(tr.mean("test_error") - Z * tr.se("test_error") < bound)
    # Replace at the same T0 crosses the bound by generation 2 (prediction 2c > π²c/6).
    assert float(th.generator_error(_cfg(), 2)) > bound


def test_mix_error_matches_geometric_formula_for_every_weight(mix_fresh):
    agreement = cj.compare(mix_fresh, _grid_predict(mix_fresh), z=Z)
    assert agreement.passed, agreement.table()


def test_golden_ratio_weight_minimises_the_long_run_mix_error(mix_fresh):
    phi_inv = th.golden_ratio_weight()
    assert phi_inv == pytest.approx(0.6180339887)
    omegas = np.linspace(0.05, 1.0, 96)
    limits = [float(th.mix_limit(_cfg(policy="mix", real_weight=w))) for w in omegas]
    assert abs(omegas[int(np.argmin(limits))] - phi_inv) <= 0.01  # grid step
    assert float(th.optimal_real_weight(_cfg(), 200)) == pytest.approx(
        phi_inv, abs=1e-4
    )
    # The simulation's best weight at the last generation is the golden one; the
    # gaps to its neighbours (0.5, 0.75) are > 4 SE of the paired differences.
    final = mix_fresh.final("test_error")  # [G, S]
    golden = 2
    for other in (0, 1, 3, 4):
        diff = final[other] - final[golden]
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        assert diff.mean() > Z * se, (other, diff.mean(), se)


def test_ols_downstream_error_is_clean_variance_plus_generator_error(replace_fresh):
    pred = _grid_predict(replace_fresh)
    clean = 0.7**2 * 10 / (30 - 10 - 1)
    np.testing.assert_allclose(pred["downstream_error"] - pred["test_error"], clean)
    agreement = cj.compare(
        replace_fresh, {"downstream_error": pred["downstream_error"]}, z=Z
    )
    assert agreement.passed, agreement.table()


def test_ridge_downstream_error_matches_deterministic_equivalent():
    # d = 40, T = 80 (γ = 1/2), 400 seeds. The Marchenko–Pastur formula is exact only
    # as d → ∞: the mean of a linear spectral statistic of a finite Wishart matrix
    # differs by O(1/d) relative (measured +0.8..1.8% at d = 50 and +1.5..3% at
    # d = 20, always above). rtol = 1/d = 0.025 states that bias.
    d = 40
    cfg = _cfg(dim=d, samples=80, generator_samples=100, noise=0.5, generator_noise=0.5)
    tr = cj.sweep(m, cfg, {"ridge": [0.05, 0.3, 1.0]}, seeds=400, steps=4, every=2)
    pred = jax.vmap(lambda c: th.predict(c, tr.steps))(tr.cfg)
    agreement = cj.compare(
        tr, {"downstream_error": pred["downstream_error"]}, z=Z, rtol=1.0 / d
    )
    assert agreement.passed, agreement.table()


def test_optimal_ridge_grows_with_the_number_of_generations():
    cfg = _cfg(
        dim=40,
        samples=80,
        generator_samples=100,
        noise=0.5,
        generator_noise=0.5,
        ridge=0.1,
    )
    lams = [float(th.optimal_ridge(cfg, n)) for n in (0, 5, 50)]
    assert lams[0] < lams[1] < lams[2]
    # Clean isotropic optimum λ* = σ² d/(T r²) (Dobriban & Wager 2018), grid 0.3%.
    assert lams[0] == pytest.approx(0.25 * 40 / 80, rel=0.01)


@pytest.mark.parametrize(
    "kw, fn, match",
    [
        (dict(generator_samples=11), th.generator_error, "generator_samples"),
        (dict(samples=11), th.downstream_error, "samples"),
        (dict(generator_ridge=0.1), th.generator_error, "generator_ridge"),
        (dict(policy="accumulate"), th.generator_error, "fixed_design"),
        (dict(spectrum="power_law", ridge=0.1), th.downstream_error, "spectrum"),
    ],
)
def test_impossible_regimes_raise_instead_of_returning_nan(kw, fn, match):
    with pytest.raises(ValueError, match=match):
        fn(_cfg(**kw), np.arange(3))


def test_traced_grid_outside_the_ols_regime_is_marked_no_prediction():
    # Every leaf gets a grid axis, as in a sweep; T0 = 11 < d + 2 has no formula.
    cfg = jax.tree.map(lambda x: np.full((2,), float(x)), _cfg())
    cfg = cfg.replace(generator_samples=np.array([11.0, 20.0]))
    out = jax.vmap(lambda c: th.generator_error(c, np.arange(3)))(cfg)
    assert np.all(np.isnan(out[0])) and np.all(np.isfinite(out[1]))
