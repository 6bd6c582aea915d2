"""Exact-expectation predictions for the refitted Gaussian against simulation.

Every stochastic check is |seed mean − theory| <= 4 SE at every recorded generation
(collapse_jax.compare with z=4), over the seed count stated in each test.
"""

import dataclasses

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import recursive_gaussian as m
from collapse_jax.theory import recursive_gaussian as th

Z = 4.0
SEEDS = 3000


EXACT = ("mean", "mean_sq", "variance", "log_det", "w2_sq")

# One compile per Config (its static sizes) and set of generations, not op by op.
# Only mix configs trace: the exact replace forms (log det, W2) take float() of
# digamma/gammaln values and accumulate's Σ 1/j² sizes an array from its argument,
# so those policies are evaluated eagerly.
_jitted = {
    "predict": jax.jit(th.predict, static_argnums=1),
    "approximation_error": jax.jit(th.approximation_error, static_argnums=1),
}


def _predict(cfg, t):
    fn = _jitted["predict"] if cfg.policy == "mix" else th.predict
    return fn(cfg, t)


def _approximation_error(cfg, t):
    jitted = cfg.policy == "mix"
    fn = _jitted["approximation_error"] if jitted else th.approximation_error
    return fn(cfg, t)


def _agreement(tr, cfg, metrics=EXACT):
    t = tuple(int(n) for n in tr.steps)
    pred = _predict(cfg, t)
    pred = {k: pred[k] for k in metrics}
    # Second-order entries get the size of their first neglected term as atol (the
    # largest over the records: one number per metric); exact entries get 0.
    err = _approximation_error(cfg, t)
    atol = {k: float(np.max(err[k])) for k in pred if k != "mean"}
    return cj.compare(tr, pred, z=Z, atol=atol)


def _run(cfg, steps=24, every=4, metrics=EXACT, seeds=SEEDS):
    tr = cj.simulate(m, cfg, seeds=seeds, steps=steps, every=every)
    return tr, _agreement(tr, cfg, metrics)


def _point(tr, g):
    """Grid point ``g`` of a sweep as a run of its own (same seeds and records)."""
    metrics = {k: v[g] for k, v in tr.metrics.items()}
    return dataclasses.replace(tr, metrics=metrics, grid={}, divergences=(), cfg=None)


# The per-seed variance is a product of n independent χ²_k/D factors: log-normal-like
# with log-variance ≈ 2n/k. A seed mean ± 4 SE is a valid check only while that spread
# is O(1) (else the mean is carried by rare seeds and the sample SE understates it), so
# tests of E tr Σ, E‖μ‖² and E W2² keep 2n/(M − 1) <= ~1; the collapse itself is shown
# on log det, whose per-generation increments are light-tailed.


def test_replace_unbiased_mean_walks_variance_is_martingale_and_w2_grows():
    # d=2, M=48, n<=24, diagonal: E‖μ_n‖² = n d/M, E tr Σ_n = d, E W2², E log det.
    cfg = m.Config(dim=2, samples=48, covariance="diagonal", dtype="float64")
    tr, agreement = _run(cfg)
    assert set(agreement.metrics) == {"mean", "mean_sq", "variance", "log_det", "w2_sq"}
    assert agreement.passed, agreement.table()


def test_replace_mle_full_covariance_variance_decays_geometrically():
    # d=3, M=8, full fit, MLE: E tr Σ_n = 3·(7/8)^n, Wishart log-det drift.
    cfg = m.Config(
        dim=3, samples=8, estimator="mle", covariance="full", dtype="float64"
    )
    tr, agreement = _run(cfg, metrics=("mean", "mean_sq", "variance", "log_det"))
    assert agreement.passed, agreement.table()
    # The decay is visible, not just within noise: 24 generations shrink tr Σ by 4x.
    assert tr.mean("variance")[-1] < 0.3 * 3


def test_log_det_drifts_down_so_variance_collapses_almost_surely():
    # Unbiased estimator: E tr Σ_n stays d, yet log det Σ_n has negative drift and the
    # median variance falls well below d (checked over the same 3000 seeds).
    cfg = m.Config(dim=1, samples=5, covariance="diagonal", dtype="float64")
    tr, agreement = _run(cfg, steps=40, every=8, metrics=["log_det"])
    assert agreement.passed, agreement.table()
    assert float(th.log_det(cfg, 1)) < 0
    assert np.median(tr.final("variance")) < 0.1


def test_accumulate_mean_error_matches_recursion_and_stays_below_pi2_over_6_bound():
    cfg = m.Config(
        dim=2, samples=8, policy="accumulate", max_generations=24, dtype="float64"
    )
    tr, agreement = _run(cfg, metrics=("mean", "mean_sq", "variance"))
    assert agreement.passed, agreement.table()
    e, _ = th.accumulate_moments(cfg, 24)
    # Bounded (Gerstgrasser et al. 2024): far below the replace value n·d/M = 6.
    assert float(e[-1]) < 2.0 * (np.pi**2 / 6) * cfg.dim / cfg.samples


# Diagonal MLE mix, d=2, M=6: one sweep (one compile) for the first-moment check over
# the weights and the second-moment check at w = 0.3.
MIX_CFG = m.Config(dim=2, samples=6, policy="mix", estimator="mle", dtype="float64")
MIX_GRID = [0.2, 0.3, 0.618, 0.9]


@pytest.fixture(scope="module")
def mix_sweep():
    return cj.sweep(
        m, MIX_CFG, {"real_fraction": MIX_GRID}, seeds=SEEDS, steps=24, every=4
    )


def test_mix_sweep_over_real_fraction_matches_exact_recursion(mix_sweep):
    cfg, grid, tr = MIX_CFG, MIX_GRID, mix_sweep
    pred = {"mean_sq": [], "variance": []}
    t = tuple(int(n) for n in tr.steps)
    for w in grid:
        p = _predict(cfg.replace(real_fraction=w), t)
        for k in pred:
            pred[k].append(p[k])
    agreement = cj.compare(tr, {k: np.stack(v) for k, v in pred.items()}, z=Z)
    assert agreement.passed, agreement.table()


def test_optimal_real_weight_is_inverse_golden_ratio_for_unbiased_estimator():
    cfg = m.Config(dim=2, samples=10, policy="mix", estimator="unbiased")
    # Grid search on 20001 points: resolution 5e-5 (its origin: the grid spacing).
    assert abs(th.optimal_real_fraction(cfg) - th.GOLDEN_RATIO_WEIGHT) < 1e-4
    # And the fixed point is the n → ∞ limit of the exact recursion (rtol 1e-6:
    # (1−w)^2 = 0.146 per generation, 200 generations leave ~1e-167 of the start).
    w_cfg = cfg.replace(real_fraction=0.618)
    e, _ = th.mix_moments(w_cfg, 200)
    np.testing.assert_allclose(e[-1], th.mean_sq_limit_mix(w_cfg), rtol=1e-6)


def test_w2_leading_term_is_three_halves_n_over_m():
    # Shumailov et al. Thm 3.1 leading term (3/2)·d·n/M for n ≪ M; the exact formula's
    # relative gap is O(n/M + 1/M) — here n/M = 1e-3, so rtol 5e-3 is that order.
    cfg = m.Config(dim=1, samples=10_000, covariance="diagonal")
    n = 10
    np.testing.assert_allclose(th.w2_sq(cfg, n), 1.5 * n / cfg.samples, rtol=5e-3)


@pytest.mark.parametrize("policy", ["accumulate", "mix"])
def test_closed_forms_refuse_policies_they_do_not_describe(policy):
    cfg = m.Config(policy=policy)
    with pytest.raises(ValueError, match="policy"):
        th.variance(cfg, np.arange(3))
    with pytest.raises(ValueError, match="policy"):
        th.log_det(cfg, np.arange(3))
    # predict falls back to the second-order forms, whose remainder is stated.
    assert np.all(np.asarray(_approximation_error(cfg, (0, 2))["log_det"])[1:] > 0)


# Full covariance, second moments and the second-order log det / W2. M = 50 keeps the
# eigenvalue fluctuation x = λ − 1 near σ ≈ 0.2, so the cubic remainder is a few
# percent of the quadratic term; 12 generations; z = 4 over 3000 seeds.


FULL = dict(dim=2, samples=50, covariance="full", max_generations=12, dtype="float64")


@pytest.fixture(scope="module")
def full_mix_and_replace():
    # Mix at w = 0 is replace draw for draw (the same key split and synthetic sample;
    # 0·real fit + 1·synthetic fit), checked to 1e-12 in
    # tests/models/test_recursive_gaussian.py: one sweep over w ∈ {0.5, 0} runs the
    # mix and the replace cases on one compiled program.
    cfg = m.Config(**FULL, policy="mix")
    grid = {"real_fraction": [0.5, 0.0]}
    return cj.sweep(m, cfg, grid, seeds=SEEDS, steps=12, every=3)


@pytest.mark.parametrize(
    "policy, fraction",
    [("mix", 0.5), ("accumulate", 0.5), ("replace", 0.5)],
    ids=["mix", "accumulate", "replace"],
)
def test_full_covariance_log_det_and_w2_follow_second_moment_recursions(
    policy, fraction, full_mix_and_replace
):
    cfg = m.Config(**FULL, policy=policy, real_fraction=fraction)
    metrics = ("mean_sq", "variance", "cov_err_sq", "log_det", "w2_sq")
    if policy == "accumulate":
        tr, agreement = _run(cfg, steps=12, every=3, metrics=metrics)
    else:  # predicted by this policy's own formulas
        tr = _point(full_mix_and_replace, 0 if policy == "mix" else 1)
        agreement = _agreement(tr, cfg, metrics)
    assert agreement.passed, agreement.table()
    # The stated remainder stays under half the predicted value, so the prediction
    # fixes the size and sign of the metric rather than passing on a wide allowance.
    t = tuple(int(n) for n in tr.steps)
    pred, err = _predict(cfg, t), _approximation_error(cfg, t)
    for k in ("log_det", "w2_sq"):
        assert np.all(np.asarray(err[k])[1:] < 0.5 * np.abs(pred[k][1:])), k


def test_diagonal_mle_mix_second_moments_are_exact(mix_sweep):
    # The diagonal fit's own recursion (E χ⁴ = k(k+2)); d=2, M=6, w=0.3, MLE, 24
    # generations (the w = 0.3 point of the mix sweep).
    assert MIX_GRID[1] == 0.3
    tr = _point(mix_sweep, 1)
    cfg = MIX_CFG.replace(real_fraction=0.3)
    agreement = _agreement(tr, cfg, metrics=("cov_err_sq",))
    assert agreement.passed, agreement.table()


def test_second_moment_recursion_reduces_to_replace_at_zero_real_weight():
    # Deterministic identity (float64 rounding only): mix with w = 0 is replace.
    kw = dict(dim=3, samples=7, covariance="full", estimator="mle")
    rep = th.second_moments(m.Config(**kw), 5)
    mix = th.second_moments(m.Config(**kw, policy="mix", real_fraction=0.0), 5)
    for a, b in zip(rep, mix, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # Generation 1 of a full replace fit is one Wishart: E tr(W/D)² by hand.
    k, D, d = 6, 7, 3
    np.testing.assert_allclose(rep[1][1], (k * (k + 1) * d + k * d * d) / D**2)


def test_full_w2_leading_term_is_n_d_over_m_times_one_plus_d_plus_one_over_four():
    # For n ≪ M the second-order form is (n d/M)(1 + (d+1)/4); d = 1 gives
    # Shumailov's 3/2. Relative gap O(n/M + 1/M): n/M = 1e-3, so rtol 5e-3.
    for d in (1, 3):
        cfg = m.Config(dim=d, samples=10_000, covariance="full")
        n = 10
        lead = n * d / cfg.samples * (1 + (d + 1) / 4)
        np.testing.assert_allclose(th.w2_sq_second_order(cfg, [n])[0], lead, rtol=5e-3)


def test_predict_without_times_covers_every_generation_and_vmaps_over_weights():
    cfg = m.Config(policy="mix", max_generations=6)
    out = _predict(cfg, None)
    assert out["log_det"].shape == (7,) and out["mean"].shape == (7, cfg.dim)
    weights = np.array([0.2, 0.9])
    swept = jax.jit(
        jax.vmap(lambda w: th.predict(cfg.replace(real_fraction=w))["w2_sq"])
    )(weights)
    for g, w in enumerate(weights):
        alone = _predict(cfg.replace(real_fraction=float(w)), None)["w2_sq"]
        np.testing.assert_allclose(swept[g], alone, rtol=1e-6)


def test_w2_for_full_covariance_raises_instead_of_guessing():
    with pytest.raises(ValueError, match="diagonal"):
        th.w2_sq(m.Config(covariance="full", dim=2, samples=5), np.arange(3))


def test_mix_limit_without_real_data_raises():
    with pytest.raises(ValueError, match="real_fraction"):
        th.mean_sq_limit_mix(m.Config(policy="mix", real_fraction=0.0))


def test_negative_or_fractional_generations_raise():
    with pytest.raises(ValueError, match="whole numbers"):
        th.mean_sq(m.Config(), np.array([0.5]))
