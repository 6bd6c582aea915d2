"""linear_vae: the closed-form minimiser (theory/linear_vae.md) against training runs.

Deterministic runs train the exact expected objective by gradient descent in float64
until the gradient norm is below 1e-9. The objective is smooth and its Hessian at
these minimisers has smallest eigenvalue μ ≥ 0.02 (0.0217 at β = 0.9, ρ = 0.9, the
worst of the grid; theory/linear_vae.md), so the parameters lie within
‖∇f‖/μ ≤ 5e-8 of the minimiser, and every recorded metric (Lipschitz constant ≤ 20 in
the parameters here) within ATOL = 1e-6.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import linear_vae as m
from collapse_jax.theory import linear_vae as th

ATOL = 1e-6
GRAD_TOL = 1e-9
BETAS = (0.9, 1.4, 2.2, 3.0)
CORRELATIONS = (0.0, 0.6, 0.9)
CURVES = ("kl", "decoder_norms", "encoder_variances", "loss", "elbo", "latent_eigs")
# The theory, jitted: called eagerly it would compile each of its primitives.
predict = jax.jit(th.predict)
predict_grid = jax.jit(jax.vmap(th.predict))
# Each run below goes in one block of exactly its runs: the default block of 64 would
# step padding runs along (the block size never changes a run's numbers).


@pytest.fixture(scope="module")
def grid_run():
    # Eigenvalues (4, 2, 1, 0.5); the first two coordinates are observed through the
    # condition with correlation ρ (ρ = 0: a plain VAE). No grid point lies within 0.1
    # of a threshold λ_i = βσ², where convergence slows down.
    cfg = m.Config(condition_dim=2, lr=0.1, dtype="float64")
    grid = dict(beta=BETAS, correlation=CORRELATIONS)
    traj = cj.sweep(m, cfg, grid, steps=8000, every=4000, seeds=2, block_size=24)
    return traj, predict_grid(traj.cfg)


def test_gradient_descent_reaches_a_stationary_point(grid_run):
    traj, _ = grid_run
    assert np.max(traj.metrics["grad_norm"][:, :, -1]) < GRAD_TOL


def test_exact_objective_converges_to_the_closed_form_minimiser(grid_run):
    traj, pred = grid_run
    for name in CURVES:
        sim = np.asarray(traj.metrics[name])[:, :, -1]
        want = np.asarray(pred[name])[:, None]
        np.testing.assert_allclose(sim, np.broadcast_to(want, sim.shape), atol=ATOL)


def test_latent_collapses_exactly_when_its_eigenvalue_is_at_most_beta_sigma2(grid_run):
    traj, pred = grid_run
    eigs = np.asarray(traj.metrics["latent_eigs"])[:, 0, -1, :3]  # top k = 3
    beta = np.asarray(traj.grid["beta"])  # σ² = 1
    want = np.sum(eigs > beta[:, None], axis=1)
    np.testing.assert_array_equal(want, np.asarray(pred["active"]))
    active = np.asarray(traj.metrics["active"])[:, :, -1]
    np.testing.assert_array_equal(active, np.repeat(want[:, None], 2, axis=1))
    kl = np.asarray(traj.metrics["kl"])[:, :, -1]  # [G, S, k], descending
    collapsed = np.arange(3)[None, None, :] >= want[:, None, None]
    assert np.all(kl[np.broadcast_to(collapsed, kl.shape)] < ATOL)
    assert np.all(kl[~np.broadcast_to(collapsed, kl.shape)] > 0.01)


def test_stronger_correlation_with_the_condition_collapses_more_latents(grid_run):
    traj, _ = grid_run
    active = np.asarray(traj.metrics["active"])[:, 0, -1].reshape(
        len(BETAS), len(CORRELATIONS)
    )
    assert np.all(np.diff(active, axis=1) <= 0)  # along ρ
    assert np.all(np.diff(active, axis=0) <= 0)  # along β
    assert np.any(np.diff(active, axis=1) < 0)


def test_learned_sigma2_reaches_the_profile_minimiser_and_ppca_at_beta_1():
    # β = 1: both latents active; β = 2: one (σ² = 1.75); β = 3: none (σ² = the mean
    # of all eigenvalues, 1.875).
    cfg = m.Config(learn_sigma2=True, latent_dim=2, lr=0.05, dtype="float64")
    betas = dict(beta=(1.0, 2.0, 3.0))
    traj = cj.sweep(m, cfg, betas, steps=8000, every=4000, seeds=2, block_size=6)
    assert np.max(traj.metrics["grad_norm"][:, :, -1]) < GRAD_TOL
    pred = predict_grid(traj.cfg)
    np.testing.assert_array_equal(np.asarray(pred["active"]), [2, 1, 0])
    np.testing.assert_array_equal(
        traj.metrics["active"][:, :, -1], [[2, 2], [1, 1], [0, 0]]
    )
    for name in ("sigma2", "kl", "decoder_norms", "encoder_variances", "loss", "elbo"):
        sim = np.asarray(traj.metrics[name])[:, :, -1]
        want = np.asarray(pred[name])[:, None]
        np.testing.assert_allclose(sim, np.broadcast_to(want, sim.shape), atol=ATOL)
    # Probabilistic PCA at β = 1: σ² is the mean of the discarded eigenvalues (1, 0.5)
    # and the ELBO is the maximum pPCA log-likelihood.
    np.testing.assert_allclose(traj.metrics["sigma2"][0, :, -1], 0.75, atol=ATOL)
    ppca = float(
        jax.jit(th.ppca_log_likelihood, static_argnums=1)(np.array(cfg.eigenvalues), 2)
    )
    np.testing.assert_allclose(traj.metrics["elbo"][0, :, -1], ppca, atol=ATOL)


@functools.partial(jax.jit, static_argnums=2)
def _profile_argmin(eigs, beta, latent_dim, grid):
    """(the grid's argmin of the profile loss, ``learned_sigma2``): one compile per
    ``latent_dim``."""
    losses = jax.vmap(
        lambda v: th.optimum(eigs, beta, v, latent_dim=latent_dim)["loss"]
    )
    return grid[jnp.argmin(losses(grid))], th.learned_sigma2(eigs, beta, latent_dim)


@pytest.mark.parametrize("beta, latent_dim", [(1.0, 2), (0.6, 2), (2.5, 3), (0.3, 3)])
def test_learned_sigma2_minimises_the_profile_loss_over_a_dense_grid(beta, latent_dim):
    eigs = np.array([4.0, 2.0, 1.0, 0.5])
    grid = np.geomspace(1e-2, 10.0, 4001)
    best, s2 = map(float, _profile_argmin(eigs, beta, latent_dim, grid))
    # The minimiser lies within one grid step (a factor ~1.0017) of the grid's argmin.
    assert abs(np.log(best / s2)) <= float(np.log(grid[1] / grid[0])) + 1e-12


def test_inverse_lipschitz_decoder_keeps_every_latent_active_with_clamped_norms():
    # Tied eigenvalues 2, 2 both fall below L² + βσ² = 0.64 + 1.5: their latents sit at
    # the floor ‖w_i‖ = L with equal encoder variances, so only sums over the tied pair
    # are identifiable (any rotation within it has the same loss). That rotation is the
    # one flat direction at the minimiser; every compared quantity is invariant along
    # it, and ‖gradient mapping‖ ≤ 1e-9 bounds the distance in the others as above.
    cfg = m.Config(
        eigenvalues=(4.0, 2.0, 2.0, 0.5),
        decoder="inverse_lipschitz",
        lipschitz=0.8,
        beta=1.5,
        lr=0.1,
        dtype="float64",
    )
    traj = cj.simulate(m, cfg, steps=6000, every=3000, seeds=2, block_size=2)
    assert np.max(traj.final("grad_norm")) < GRAD_TOL
    pred = predict(cfg)
    assert np.all(traj.final("active") == 3) and float(pred["active"]) == 3
    assert np.all(traj.final("kl") > 0.05)
    np.testing.assert_allclose(
        traj.final("decoder_norms"), [[np.sqrt(2.5), 0.8, 0.8]] * 2, atol=ATOL
    )
    for name in ("kl", "decoder_norms", "encoder_variances"):
        sim, want = traj.final(name), np.asarray(pred[name])
        np.testing.assert_allclose(sim[:, 0], want[0], atol=ATOL)
        np.testing.assert_allclose(sim[:, 1:].sum(1), want[1:].sum(), atol=ATOL)
    for name in ("loss", "elbo"):
        np.testing.assert_allclose(traj.final(name), float(pred[name]), atol=ATOL)


def test_reparameterised_elbo_reaches_the_sample_covariance_minimiser():
    # Each seed draws its own 200 samples; the prediction is the minimiser for that
    # seed's sample covariance (recorded as latent_eigs). SGD on minibatches of 128 with
    # one ε per point and a decaying step lr/(1 + 0.01 t) leaves seed-to-seed noise;
    # active latents' metrics must agree within z = 4 standard errors over 16 seeds.
    S = 16
    cfg = m.Config(
        objective="mc",
        samples=200,
        batch_size=128,
        beta=1.5,
        lr=0.1,
        lr_decay=0.01,
        dtype="float64",
    )
    traj = cj.simulate(m, cfg, steps=4000, every=2000, seeds=S, block_size=S)
    optimum = jax.jit(
        jax.vmap(lambda e: th.optimum(e, cfg.beta, cfg.sigma2, latent_dim=3))
    )
    pred = optimum(traj.final("latent_eigs"))
    n_active = np.asarray(pred["active"]).astype(int)
    assert np.all(n_active == 2)  # eigenvalues (4, 2) above βσ² = 1.5 in every sample
    for name in ("kl", "decoder_norms", "encoder_variances"):
        diff = traj.final(name)[:, :2] - np.asarray(pred[name])[:, :2]
        se = diff.std(axis=0, ddof=1) / np.sqrt(S)
        assert np.all(np.abs(diff.mean(axis=0)) <= 4 * se), (name, diff.mean(0), se)
    diff = traj.final("loss") - np.asarray(pred["loss"])
    assert abs(diff.mean()) <= 4 * diff.std(ddof=1) / np.sqrt(S)
    # The collapsed latent stays collapsed: on average below the model's threshold.
    assert traj.final("kl")[:, 2].mean() < cfg.kl_threshold
