"""preference_collapse: sharpening, fitted α̂, verbalized marginals and policy-gradient
rates (Zhang et al. 2025, arXiv 2510.01171, Sec. 3; derivations in
theory/preference_collapse.md) against simulation. Four compiled programs, float64."""

import jax
import numpy as np
import pytest
from scipy import stats

import collapse_jax as cj
from collapse_jax.models import preference_collapse as m
from collapse_jax.theory import preference_collapse as th

ORACLE = dict(reward_model="oracle", dtype="float64", num_items=6)
# α, β, reward scale: flat and random true reward, γ = 1 + α/β from 1 to 9.
GRID = {"alpha": [0.0, 0.5, 2.0], "beta": [0.25, 1.0], "reward_scale": [0.0, 0.5]}
ROUNDING = 1e-12  # float64: ~4500 ulps of O(1) metrics, room for 60 steps of rounding


# Theory over a sweep's grid config, jitted: one compile instead of many eager ops.
_grid_predict = jax.jit(jax.vmap(th.predict, in_axes=(0, None)))
_grid_optimum = jax.jit(jax.vmap(lambda c: th.item_marginal(c, th.optimal_policy(c))))


def _predict(traj):
    return _grid_predict(traj.cfg, traj.steps)


@pytest.fixture(scope="module")
def npg():
    # ηβ = lr·β ∈ {0.25, 1}: a slow contraction and a one-step jump to π*.
    cfg = m.Config(**ORACLE, reward="random", lr=1.0, optimizer="npg")
    return cj.sweep(m, cfg, GRID, steps=60, every=4, seeds=1)


def test_npg_reaches_sharpened_optimum_to_rounding(npg):
    # (1 − ηβ)^60 ≤ 0.75^60 ≈ 3e-8 of the initial log gap: compare at the last record
    # only where that is below rounding, i.e. ηβ = 1 (exact in one step).
    one_step = np.asarray(npg.grid["beta"]) == 1.0
    assert np.all(npg.final("kl_to_optimum")[one_step] < ROUNDING)
    assert np.all(npg.final("log_gap")[one_step] < ROUNDING)
    pi_star = np.asarray(_grid_optimum(npg.cfg))
    H_star = -np.sum(pi_star * np.log(pi_star), axis=-1)
    np.testing.assert_allclose(
        npg.final("entropy")[one_step, 0], H_star[one_step], rtol=0, atol=ROUNDING
    )


def test_npg_trajectory_contracts_by_one_minus_eta_beta_per_step(npg):
    pred = _predict(npg)
    agreement = cj.compare(
        npg,
        {k: pred[k] for k in ("entropy", "mode_mass", "kl_ref", "kl_to_optimum")},
        z=0.0,
        atol=ROUNDING,
        at="trajectory",
    )
    assert agreement.passed, agreement.table()
    # log_gap spans O(10) logits: rounding relative to that scale.
    gap = npg.mean("log_gap")
    np.testing.assert_allclose(gap, pred["log_gap"], rtol=1e-12, atol=1e-13)
    slow = np.asarray(npg.grid["beta"]) == 0.25
    moving = slow & (np.asarray(npg.grid["alpha"] + npg.grid["reward_scale"]) > 0)
    ratio = gap[moving, 1:] / gap[moving, :-1]  # 4 steps per record
    # Where the gap is above 1e-4, rounding (~1e-13 absolute) is < 1e-9 of it.
    big = gap[moving, :-1] > 1e-4
    assert big.sum() >= 10
    np.testing.assert_allclose(ratio[big], 0.75**4, rtol=1e-8)


def test_flat_reward_entropy_follows_zipf_sharpening_law(npg):
    flat = (np.asarray(npg.grid["reward_scale"]) == 0.0) & (
        np.asarray(npg.grid["beta"]) == 1.0
    )
    gamma = 1.0 + np.asarray(npg.grid["alpha"]) / np.asarray(npg.grid["beta"])
    law = th.zipf_sharpened(gamma[flat] * 1.0, ORACLE["num_items"])  # s = 1
    np.testing.assert_allclose(
        npg.final("entropy")[flat, 0], law["entropy"], atol=ROUNDING
    )
    np.testing.assert_allclose(
        npg.final("mode_mass")[flat, 0], law["mode_mass"], atol=ROUNDING
    )
    H = law["entropy"]
    assert np.all(np.diff(H) < 0)  # α = 0, 0.5, 2: sharper as α/β grows


@pytest.fixture(scope="module")
def vanilla():
    # ηβ = 1.5: NPG would contract by 0.5 per step; vanilla PG by 1 − 1.5 λ_k(F*).
    cfg = m.Config(**ORACLE, optimizer="pg", lr=1.5, beta=1.0, alpha=1.0)
    return cfg, cj.simulate(m, cfg, steps=1500, every=25, seeds=1)


def test_vanilla_pg_reaches_the_same_optimum_at_the_slowest_fisher_mode_rate(vanilla):
    cfg, traj = vanilla
    assert traj.final("kl_to_optimum")[0] < ROUNDING
    rates = np.asarray(th.pg_local_rates(cfg))
    gap, t = traj.mean("log_gap"), traj.steps
    # Window where the error is small (nonlinear terms ~ gap ≤ 1e-5 relative) yet far
    # above rounding (1e-14 / 1e-9 = 1e-5 relative).
    window = np.flatnonzero((gap < 1e-5) & (gap > 1e-9))
    i, j = window[0], window[-1]
    assert j - i >= 4
    rate = (gap[j] / gap[i]) ** (1.0 / (t[j] - t[i]))
    # Relative error of the gap ratio: nonlinearity + the next mode + rounding, each
    # with an O(1) amplitude ratio (bounded by 10 here), spread over t_j − t_i steps.
    eps = gap[i] + (rates[1] / rates[0]) ** t[i] + 1e-14 / gap[j]
    tol = 10 * eps / (t[j] - t[i])
    assert abs(rate - rates[0]) <= tol, (rate, rates[0], tol)
    assert abs(rate - rates[0]) < 0.01 * (rates[0] - rates[1])
    assert rates[0] > 0.5  # slower than NPG's 1 − ηβ = −0.5 → |0.5|


SEEDS_FIT = 256
N_FIT = 2000


@pytest.fixture(scope="module")
def fitted():
    cfg = m.Config(num_items=6, dtype="float64", comparisons=N_FIT, alpha=0.5, beta=0.5)
    return cfg, cj.simulate(m, cfg, steps=300, every=100, seeds=SEEDS_FIT)


def test_fitted_alpha_hat_is_consistent_within_its_fisher_standard_error(fitted):
    cfg, traj = fitted
    # GD has reached the MLE: scaled gradient at rounding level.
    assert np.max(traj.final("rm_grad")) < 1e-12
    agreement = cj.compare(traj, {"alpha_hat": cfg.alpha}, z=4.0, at="final")
    assert agreement.passed, agreement.table()  # 256 seeds, z = 4
    # The seed spread is the Fisher SE: (S − 1) s² / σ² ~ χ²_{S−1}, two-sided 1e-3.
    a = traj.final("alpha_hat")
    sigma = float(th.alpha_hat_se(cfg, N_FIT))
    q = (SEEDS_FIT - 1) * np.var(a, ddof=1) / sigma**2
    lo, hi = stats.chi2.ppf([5e-4, 1 - 5e-4], SEEDS_FIT - 1)
    assert lo <= q <= hi, (np.std(a, ddof=1), sigma)


def test_policy_on_the_fitted_reward_is_sharpened_like_the_theory(fitted):
    cfg, traj = fitted
    # The fitted reward's noise enters the entropy at O(1/N) bias, below the seed SE
    # of the mean (~ 1/sqrt(N S)) for S = 256 ≪ N = 2000; z = 4.
    pred = th.predict(cfg, traj.steps)
    agreement = cj.compare(
        traj, {k: pred[k] for k in ("entropy", "mode_mass")}, z=4.0, at="final"
    )
    assert agreement.passed, agreement.table()
    assert np.mean(traj.final("entropy")) < float(np.log(6)) - 0.3


VERBAL = dict(num_items=4, list_size=16, reward_model="oracle", dtype="float64")
ALPHAS = [0.0, 1.0, 3.0, 9.0]


@pytest.fixture(scope="module")
def verbal():
    cfg = m.Config(level="distribution", lr=1.0, beta=1.0, **VERBAL)
    return cj.sweep(m, cfg, {"alpha": ALPHAS}, steps=8, every=8, seeds=1)


def test_verbalized_marginal_matches_type_enumeration(verbal):
    pred = _predict(verbal)
    agreement = cj.compare(
        verbal,
        {k: pred[k] for k in ("entropy", "mode_mass", "kl_ref")},
        z=0.0,
        atol=ROUNDING,
        at="trajectory",
    )
    assert agreement.passed, agreement.table()


def test_verbalized_keeps_reference_marginal_while_instance_level_collapses(verbal):
    cfg = verbal.cfg
    marg = np.asarray(_grid_optimum(cfg))  # [G, M] item marginals of π*
    p = np.asarray(m.Config(**VERBAL).item_probs())
    chi2_verbal = np.sum((marg - p) ** 2 / p, axis=-1)
    bound = float(th.lattice_chi2_bound(m.Config(**VERBAL)))
    assert np.all(chi2_verbal <= bound), (chi2_verbal, bound)
    gamma = 1.0 + np.asarray(ALPHAS)
    inst = np.asarray(th.zipf_sharpened(gamma, VERBAL["num_items"])["entropy"])
    pi_inst = np.arange(1.0, 5.0)[None, :] ** -gamma[:, None]
    pi_inst /= pi_inst.sum(axis=1, keepdims=True)
    chi2_inst = np.sum((pi_inst - p) ** 2 / p, axis=-1)
    assert chi2_inst[-1] > bound  # γ = 10: far outside the lattice bound
    H_ref = -np.sum(p * np.log(p))
    H_verbal = verbal.final("entropy")[:, 0]
    np.testing.assert_allclose(H_verbal[0], H_ref, atol=ROUNDING)  # γ = 1: exact
    # Reference > verbalized > instance-level for every γ > 1.
    assert np.all(H_ref > H_verbal[1:])
    assert np.all(H_verbal[1:] > inst[1:] + 0.3)
