"""linear_byol theory (Tian, Chen, Ganguli 2021, arXiv 2102.06810) vs simulation.

Population-gradient runs (batch_size=0) are deterministic given the initial
eigenvalues: seeds only draw the random eigenbases U, V, which the mode metrics do not
see, so the seed SE is ~0 and the tolerance is the Euler discretisation error of the
simulation (time step lr), estimated by Richardson extrapolation from runs at lr and
lr/2.
"""

import functools

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import linear_byol as m
from collapse_jax.theory import linear_byol as th

SEEDS = 2  # random eigenbases; the eigenmode metrics must not depend on them
Z = 4.0


@functools.cache
def _predict_at(steps: tuple, grid: bool):
    """``th.predict`` at fixed steps (the RK4 length is static), jitted; vmapped over
    a sweep's grid config. One compile per run length instead of one per primitive."""
    t = np.asarray(steps)

    def one(c):
        return th.predict(c, t)

    return jax.jit(jax.vmap(one) if grid else one)


def _predict(cfg, steps, grid=False):
    return _predict_at(tuple(int(k) for k in steps), grid)(cfg)


def _predict_grid(traj):
    return _predict(traj.cfg, traj.steps, grid=True)


fixed_point_s, unstable_p = jax.jit(th.fixed_point_s), jax.jit(th.unstable_p)


@pytest.fixture(scope="module")
def ode_runs():
    base = m.Config(
        dim=3, aug_var=0.5, weight_decay=0.04, p0=0.2, s0=0.6, dtype="float64"
    )
    runs = {}
    for lr in (0.04, 0.02):
        # ema = 1 copies W (β = ∞); otherwise the per-step rate is β·lr with the
        # continuous-time EMA rate β = 2.5 held fixed, so both runs share one ODE.
        grid = {"ema": [1.0, 2.5 * lr], "alpha_p": [1.0, 3.0]}
        steps = int(round(16 / lr))
        runs[lr] = cj.sweep(
            m, base.replace(lr=lr), grid, steps=steps, every=steps // 8, seeds=SEEDS
        )
    return runs


def test_eigenmode_odes_match_full_matrix_simulation_within_euler_error(ode_runs):
    coarse, fine = ode_runs[0.04], ode_runs[0.02]
    pred = _predict_grid(fine)
    for name in ("p", "s", "parabola_gap"):
        # Richardson: for a first-order method the error of the lr/2 run is
        # |sim(lr) − sim(lr/2)| to leading order; ×1.5 covers the O(lr²) remainder.
        richardson = np.max(np.abs(coarse.mean(name) - fine.mean(name)))
        agreement = cj.compare(
            fine, {name: pred[name]}, z=Z, atol=1.5 * richardson, at="trajectory"
        )
        assert agreement.passed, agreement[name].summary()
        # and the Euler error itself is small next to the signal at these steps
        assert richardson < 0.01 * np.max(np.abs(pred[name]))


def test_simulation_error_halves_with_the_step_size(ode_runs):
    errors = []
    for lr in (0.04, 0.02):
        traj = ode_runs[lr]
        errors.append(np.max(np.abs(traj.mean("s") - _predict_grid(traj)["s"])))
    assert 0.4 <= errors[1] / errors[0] <= 0.6  # Euler: global error ∝ lr


def test_eigenbases_stay_aligned_and_seeds_agree(ode_runs):
    traj = ode_runs[0.02]
    np.testing.assert_allclose(traj["alignment"], 1.0, atol=1e-10)
    np.testing.assert_allclose(traj["s"][:, 0], traj["s"][:, 1], atol=1e-10)


@pytest.fixture(scope="module")
def threshold_run():
    base = m.Config(dim=3, aug_var=0.5, lr=0.05, p0=0.3, s0=0.5, dtype="float64")
    eta_star = float(th.collapse_threshold_weight_decay(base))
    grid = {"weight_decay": [0.5 * eta_star, 0.9 * eta_star, 1.1 * eta_star]}
    # 8 records, as the ODE sweeps (same static config): their programs are reused.
    return cj.sweep(m, base, grid, steps=2000, every=250, seeds=SEEDS)


def test_weight_decay_threshold_is_bracketed_by_simulation(threshold_run):
    final_s = threshold_run.mean("s")[:, -1]  # [G, d]
    alive, collapsed = final_s[:2], final_s[2]
    assert np.all(alive > 0.15)
    assert np.all(collapsed < 1e-6)


def test_final_mode_strength_is_the_stable_fixed_point(threshold_run):
    fixed = jax.jit(jax.vmap(th.fixed_point_s))(threshold_run.cfg)  # [G]
    prediction = np.broadcast_to(np.asarray(fixed)[:, None], (3, 3))
    # The Euler map has exactly the ODE's fixed points; after t = 100 the modes have
    # converged (the slowest linearised rate here is > 0.2), so float64 round-off
    # and the residual e^{-rate·t} set the tolerance.
    agreement = cj.compare(threshold_run, {"s": prediction}, z=Z, atol=1e-6, at="final")
    assert agreement.passed, agreement["s"].summary()


def test_directpred_modes_below_the_unstable_root_collapse_others_reach_fixed_point():
    cfg = m.Config(
        dim=8,
        lr=0.05,
        aug_var=0.5,
        predictor="directpred",
        weight_decay=0.1,
        s0=0.05,
        dtype="float64",
    )
    traj = cj.simulate(m, cfg, seeds=SEEDS, steps=2000, every=2000)
    s_init = cfg.s0 * (8 - np.arange(8)) / 8
    below = np.sqrt(cfg.dp_scale * s_init) < float(unstable_p(cfg))
    assert below.sum() == 2 and (~below).sum() == 6  # the threshold splits the modes
    final = traj.mean("s")[-1]
    assert np.all(final[below[np.argsort(-s_init)]] < 1e-6)
    prediction = np.where(below, 0.0, float(fixed_point_s(cfg)))
    agreement = cj.compare(
        traj, {"s": _predict(cfg, traj.steps)["s"]}, z=Z, atol=0.01, at="trajectory"
    )
    assert agreement.passed, agreement["s"].summary()
    np.testing.assert_allclose(final, np.sort(prediction)[::-1], atol=1e-6)


def test_directpred_eps_above_unstable_root_prevents_collapse():
    cfg = m.Config(
        dim=8,
        lr=0.05,
        aug_var=0.5,
        predictor="directpred",
        weight_decay=0.1,
        s0=0.05,
        dp_eps=0.15,
        dtype="float64",
    )
    assert cfg.dp_eps > float(unstable_p(cfg))
    traj = cj.simulate(m, cfg, seeds=SEEDS, steps=2000, every=2000)
    np.testing.assert_allclose(
        traj.mean("s")[-1], float(fixed_point_s(cfg)), atol=1e-4
    )  # slowest mode converges as e^{-0.05 t}


def test_vector_field_vanishes_at_the_stable_fixed_point():
    cfg = m.Config(aug_var=0.5, weight_decay=0.1, alpha_p=2.0, dtype="float64")
    dp, ds = th.vector_field(cfg, th.fixed_point_p(cfg), th.fixed_point_s(cfg))
    assert abs(float(dp)) < 1e-12 and abs(float(ds)) < 1e-12


def test_theory_refuses_random_initialisation():
    with pytest.raises(ValueError, match="init"):
        th.predict(m.Config(init="random"), np.arange(3))


def test_weight_decay_aligns_predictor_with_correlation_eigenbasis_from_random_init():
    # Tian, Chen, Ganguli 2021 (arXiv 2102.06810), Sec. 4.1: with weight decay the
    # eigenbases of W_p and F align, which the decoupled theory assumes. 8 seeds.
    cfg = m.Config(
        dim=4,
        init="random",
        lr=0.02,
        weight_decay=0.05,
        p0=0.5,
        s0=1.0,
        dtype="float64",
    )
    traj = cj.simulate(m, cfg, seeds=8, steps=5000, every=2500)
    alignment = traj["alignment"]
    assert alignment[:, 0].mean() < 0.9  # random start: far from aligned
    assert np.all(alignment[:, -1] > 1 - 1e-6)
