"""UFM variants in closed form vs converged gradient descent: label smoothing and
MaxSup, features tethered to inputs, mixup (theory/ufm.md, one section each).

Each variant runs one float64 sweep over its float parameter until ‖∇f‖ < 1e-11
(asserted); the tolerance argument is stated per section. The three sweeps and their
predictions are computed in one compiled program (the ``sweeps`` fixture, at the end):
per run, ``init``, the ``step`` calls and a final ``observe`` on the engine's seed
keys, the per-run program that tests/test_model_contract.py checks ``simulate``
against. For label smoothing: near a minimiser ‖θ − θ*‖ ≤ ‖∇f‖/μ modulo the
rotations the metrics ignore; μ, the smallest curvature across the orbit, is of order
min(λ) = 1e-2 at the ETF points and 6.3e-3 at the zero minimiser of the ε = 0.97 point
(smallest eigenvalue of [[λ_W, g], [g, λ_H]], g = (1 − ε)√n/N), so parameters sit
within ~2e-9 of the minimiser and the O(1)-Lipschitz metrics within ATOL = 1e-8.
Identities on logits hold to rounding (rtol 1e-12).
"""

import jax
import jax.numpy as jnp
import model_runs
import numpy as np
import pytest
from jax import lax

import collapse_jax as cj
from collapse_jax.models import ufm
from collapse_jax.simulate import seed_keys
from collapse_jax.theory import ufm as theory

ATOL = 1e-8
GRAD_TOL = 1e-11
SEEDS = 2

SMOOTH_BASE = dict(
    num_classes=3,
    dim=3,
    per_class=2,
    lambda_w=1e-2,
    lambda_h=2e-2,
    lr=1.0,
    dtype="float64",
)
# smoothing_threshold = 1 − K√(nλ_Wλ_H) = 0.94: the last value has the zero minimiser.
SMOOTHING = [0.0, 0.1, 0.4, 0.97]


@pytest.fixture(scope="module")
def smoothed(sweeps):
    """The sweep over ε of label smoothing: (cfg, trajectory, theory)."""
    return sweeps["smoothed"]


def test_label_smoothing_minimiser_is_the_etf_with_margin_from_shifted_norm_equation(
    smoothed,
):
    cfg, tr, prediction = smoothed
    agreement = cj.compare(tr, prediction, atol=ATOL)
    assert agreement.passed, agreement.table()
    # ETF geometry wherever the minimiser is nonzero (ε below the threshold).
    for name in ("nc2_h", "nc2_w", "nc3", "equinorm_w"):
        np.testing.assert_allclose(prediction[name][:3], 0.0, atol=1e-12)


def test_smoothing_shrinks_the_logit_gap_and_norms_to_zero_at_the_threshold(
    smoothed,
):
    cfg, tr, prediction = smoothed
    gap = np.asarray(prediction["logit_gap"])
    assert np.all(np.diff(gap) < 0) and gap[-1] == 0.0
    assert float(theory.smoothing_threshold(cfg)) == pytest.approx(0.94, rel=1e-12)
    assert np.all(tr["w_norm"][-1, :, -1] < 1e-9)  # ε = 0.97 > 0.94: W = H = 0


def _etf_minimiser(cfg, w, h):
    """Full parameters (W [K, d], H [d, N]) of an ETF with row norms ``w``, ``h``."""
    K = cfg.num_classes
    # A unit simplex ETF in the first K − 1 coordinates of R^d.
    Q, _ = np.linalg.qr(np.eye(K) - 1 / K)
    E = (np.eye(K) - 1 / K) @ Q[:, : K - 1]
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    E = np.pad(E, ((0, 0), (0, cfg.dim - K + 1)))
    return ufm.Params(W=w * E, H=h * E[cfg.labels].T, b=np.zeros(K))


_loss_and_grad = jax.jit(jax.value_and_grad(ufm.loss))


@pytest.mark.parametrize("point", [1, 2], ids=["eps0.1", "eps0.4"])
def test_maxsup_is_stationary_at_the_label_smoothing_minimiser_with_the_same_loss(
    smoothed, point
):
    # MaxSup ≥ LS everywhere with equality where every sample is correctly classified,
    # so the LS global minimiser (margin t > 0) is a global MaxSup minimiser: its
    # MaxSup gradient vanishes and both losses equal the predicted minimum.
    _, _, prediction = smoothed
    ls = ufm.Config(**SMOOTH_BASE, loss="ls", smoothing=SMOOTHING[point])
    ms = ls.replace(loss="maxsup")
    w, h = (float(prediction[k][point, 0]) for k in ("w_norm", "h_norm"))
    p = _etf_minimiser(ls, w, h)
    assert np.all((p.W @ p.H).argmax(0) == ls.labels)  # all correctly classified
    expected = float(prediction["loss"][point])
    for cfg in (ls, ms):
        value, grads = _loss_and_grad(p, cfg)
        norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
        assert norm < 1e-13, (cfg.loss, norm)
        assert float(value) == pytest.approx(expected, rel=1e-13)


def test_smoothed_margin_solves_the_norm_equation_and_zero_threshold_is_consistent():
    cfg = ufm.Config(**SMOOTH_BASE, loss="ls", smoothing=0.25)
    t = theory.ce_logit_margin(cfg)
    assert float(t) > 0 and abs(float(theory.ce_margin_equation(t, cfg))) < 1e-14
    # At λ_Wλ_H = zero_threshold(cfg) the smoothing threshold is exactly ε.
    at = cfg.replace(lambda_w=float(theory.zero_threshold(cfg)) / cfg.lambda_h)
    assert float(theory.smoothing_threshold(at)) == pytest.approx(0.25, rel=1e-12)
    assert float(theory.ce_logit_margin(at)) == 0.0
    # ε = 0 is plain cross-entropy: the same margin.
    plain = ufm.Config(**SMOOTH_BASE, loss="ce")
    assert float(theory.ce_logit_margin(cfg.replace(smoothing=0.0))) == float(
        theory.ce_logit_margin(plain)
    )


def _identity_params(Z, cfg):
    """Params whose logits are ``Z`` [K, N]: H = I_N (dim = N), W = Z."""
    N = Z.shape[1]
    return ufm.Params(W=Z, H=jnp.eye(N, dtype=Z.dtype), b=jnp.zeros(Z.shape[0]))


@jax.jit
def _fit(cfg, Z):
    """The data term of ``ufm.loss`` at logits Z (regularisers subtracted)."""
    p = _identity_params(Z, cfg)
    reg = cfg.lambda_w / 2 * jnp.sum(Z**2) + cfg.lambda_h / 2 * Z.shape[1]
    return ufm.loss(p, cfg) - reg


IDENTITY_CFG = dict(num_classes=3, dim=6, per_class=2, dtype="float64")


def _random_logits(seed=0, scale=2.0):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), (3, 6), jnp.float64)


def test_label_smoothing_is_cross_entropy_plus_true_logit_penalty():
    Z = _random_logits()
    for eps in (0.0, 0.1, 0.6):
        cfg = ufm.Config(**IDENTITY_CFG, loss="ls", smoothing=eps)
        labels = jnp.asarray(cfg.labels)
        expected = jnp.mean(theory.label_smoothing_identity(Z, labels, eps))
        assert float(_fit(cfg, Z)) == pytest.approx(float(expected), rel=1e-12)
    ce = ufm.Config(**IDENTITY_CFG, loss="ce")
    ls0 = ufm.Config(**IDENTITY_CFG, loss="ls")
    assert float(_fit(ls0, Z)) == pytest.approx(float(_fit(ce, Z)), rel=1e-14)


def test_maxsup_exceeds_label_smoothing_only_on_misclassified_samples():
    eps = 0.3
    ls = ufm.Config(**IDENTITY_CFG, loss="ls", smoothing=eps)
    ms = ufm.Config(**IDENTITY_CFG, loss="maxsup", smoothing=eps)
    labels = jnp.asarray(ls.labels)
    Z = _random_logits(seed=1)
    correct = Z.argmax(0) == labels
    assert 0 < int(correct.sum()) < 6  # both kinds of sample are present
    gap = theory.maxsup_identity(Z, labels, eps)
    assert np.all(np.asarray(gap)[np.asarray(correct)] == 0)
    assert np.all(np.asarray(gap)[~np.asarray(correct)] > 0)
    diff = float(_fit(ms, Z) - _fit(ls, Z))
    assert diff == pytest.approx(float(jnp.mean(gap)), rel=1e-12)
    # Correctly classified everywhere (a dominant true logit): the losses coincide.
    Zc = Z + 10.0 * jax.nn.one_hot(labels, 3, dtype=Z.dtype).T
    assert float(_fit(ms, Zc)) == pytest.approx(float(_fit(ls, Zc)), rel=1e-13)


def test_label_smoothing_pushes_a_wrong_sample_further_wrong_and_maxsup_does_not():
    # Per-sample logit gradients: LS = CE + ε(e_y − 1/K), MaxSup = CE + ε(e_max − 1/K).
    # On a misclassified sample a descent step on LS lowers the true logit by ε(1 − 1/K)
    # more than CE does (error amplification); MaxSup lowers the wrong top logit.
    eps, K, N = 0.3, 3, 6
    cfgs = {
        name: ufm.Config(**IDENTITY_CFG, loss=name, smoothing=eps)
        for name in ("ce", "ls", "maxsup")
    }
    labels = np.asarray(cfgs["ce"].labels)
    Z = _random_logits(seed=1)
    grads = {
        n: N * np.asarray(jax.grad(_fit, argnums=1)(c, Z)) for n, c in cfgs.items()
    }
    e_y = np.eye(K)[:, labels]
    e_max = np.eye(K)[:, np.asarray(Z.argmax(0))]
    np.testing.assert_allclose(
        grads["ls"] - grads["ce"], eps * (e_y - 1 / K), atol=1e-13
    )
    np.testing.assert_allclose(
        grads["maxsup"] - grads["ce"], eps * (e_max - 1 / K), atol=1e-13
    )
    wrong = np.flatnonzero(np.asarray(Z.argmax(0)) != labels)
    i = wrong[0]
    y, top = labels[i], int(Z[:, i].argmax())
    assert grads["ls"][y, i] - grads["ce"][y, i] == pytest.approx(eps * (1 - 1 / K))
    assert grads["maxsup"][y, i] - grads["ce"][y, i] == pytest.approx(-eps / K)
    assert grads["maxsup"][top, i] - grads["ce"][top, i] == pytest.approx(
        eps * (1 - 1 / K)
    )


# --- Tethered features (Tirer, Huang & Niles-Weed 2023, arXiv 2210.16658) -----------

TETHER_BASE = dict(
    num_classes=3,
    dim=3,
    per_class=2,
    tether=True,
    lambda_w=1e-2,
    lr=1.0,
    dtype="float64",
)
TETHER_LAMBDA_H = [0.01, 0.03, 0.1, 0.3]
# At the predicted minimiser the Hessian of the loss (27 parameters) is positive
# definite with smallest eigenvalue μ = 6.6e-3, 2.0e-2, 7.0e-2, 0.22 along
# TETHER_LAMBDA_H (computed with jax.hessian; there is no rotation symmetry here, X
# fixes the frame), so ‖∇f‖ < 1e-11 puts θ within 1.5e-9 of θ*: ATOL = 1e-8 as above.


@pytest.fixture(scope="module")
def tethered(sweeps):
    return sweeps["tethered"]


def test_tethered_minimiser_matches_the_closed_form(tethered):
    _, tr, prediction = tethered
    agreement = cj.compare(tr, prediction, atol=ATOL)
    assert agreement.passed, agreement.table()


def test_tether_contracts_nc1_below_the_inputs_and_less_so_as_lambda_h_grows(tethered):
    _, tr, prediction = tethered
    nc1, nc1_x = np.asarray(prediction["nc1"]), np.asarray(prediction["nc1_input"])
    assert np.all(nc1 < nc1_x) and np.all(np.diff(nc1) > 0)
    simulated = tr["nc1"][..., -1]
    assert np.all(simulated < tr["nc1_input"][..., -1])
    assert np.all(np.diff(simulated, axis=0) > 0)


def test_features_are_the_tethered_ridge_solution_and_within_class_spread_contracts():
    # Any d (here d > K, outside the closed form) and any point: the model's gradient
    # is ∂f/∂H = (WᵀW + Nλ_H I)(H − H*(W))/N exactly (to rounding), so H*(W) is the
    # stationary feature matrix and ‖H − H*(W)‖ ≤ ‖∂f/∂H‖/λ_H.
    cfg = ufm.Config(**{**TETHER_BASE, "dim": 4, "per_class": 3, "lambda_h": 0.05})
    state = jax.jit(ufm.init)(jax.random.PRNGKey(3), cfg)
    p, X = state.params, state.inputs
    p = p._replace(W=10 * p.W)  # a classifier large enough to contract visibly
    g_h = np.asarray(jax.jit(jax.grad(ufm.loss))(p, cfg, X).H)
    H_star = np.asarray(theory.tethered_features(p.W, X, cfg))
    W, H, N = np.asarray(p.W), np.asarray(p.H), cfg.num_samples
    A = W.T @ W + N * cfg.lambda_h * np.eye(cfg.dim)
    np.testing.assert_allclose(g_h, A @ (H - H_star) / N, atol=1e-14)
    bound = np.linalg.norm(g_h) / cfg.lambda_h
    assert np.linalg.norm(H - H_star) <= bound * (1 + 1e-12)
    # Within-class deviations of H* are P times those of X: P = Nλ_H(WᵀW + Nλ_H)^{-1}.
    labels = np.asarray(cfg.labels)
    Y = np.eye(cfg.num_classes)[:, labels]

    def deviations(A):
        return A - (A @ Y.T / np.asarray(cfg.counts)[None, :]) @ Y

    P = np.asarray(theory.within_class_contraction(p.W, cfg))
    dev_h, dev_x = deviations(H_star), deviations(np.asarray(X))
    np.testing.assert_allclose(dev_h, P @ dev_x, atol=1e-12)
    eig = np.linalg.eigvalsh(P)
    assert np.all(eig > 0) and np.all(eig <= 1 + 1e-12)
    # Three directions (W's rows) contract, the fourth is untouched: eigenvalue 1.
    assert np.sum(eig < 1 - 1e-6) == cfg.num_classes
    assert np.sum(dev_h**2) < np.sum(dev_x**2)


# --- Mixup (Fisher, Meng & Papyan 2024, arXiv 2402.06171) ----------------------------

MIXUP_BASE = dict(
    num_classes=3,
    dim=3,
    per_class=2,
    mixup=True,
    lambda_w=1e-2,
    lambda_h=2e-2,
    lr=1.0,
    dtype="float64",
)
MIXUP_ALPHA = [0.2, 1.0, 5.0]
# The weighted problem is an MSE UFM (theory/ufm.md): its curvature off the rotation
# orbit is at least of order the smallest regulariser, λ_H/(2K) = 3.3e-3 on a mixed
# feature, so ‖∇f‖ < 1e-11 puts θ within ~3e-9 of θ*: ATOL = 1e-8 as above.


@pytest.fixture(scope="module")
def mixed(sweeps):
    return sweeps["mixed"]


def test_mixup_minimiser_matches_closed_form_and_mixed_features_interpolate(mixed):
    _, tr, prediction = mixed
    agreement = cj.compare(tr, prediction, atol=ATOL)
    assert agreement.passed, agreement.table()
    assert np.all(tr["interpolation_error"][..., -1] < 1e-9)


def test_mixup_shrinks_the_discriminative_modes_and_keeps_the_mean_mode(mixed):
    cfg, tr, prediction = mixed
    spectrum = np.asarray(prediction["w_spectrum"])  # [G, K]: mean mode first
    plain = ufm.Config(**{**MIXUP_BASE, "mixup": False})
    scale = (cfg.lambda_h / cfg.lambda_w) ** 0.25
    plain_value = scale * np.sqrt(float(theory.mse_singular_values(plain)[1]))
    np.testing.assert_allclose(spectrum[:, 0], plain_value, rtol=1e-12)
    assert np.all(np.diff(spectrum[:, 1]) < 0) and np.all(spectrum[:, 1] < plain_value)
    np.testing.assert_allclose(spectrum[:, 1], spectrum[:, 2], rtol=1e-12)
    # The centred modes follow the shrunk label eigenvalue (α+1)/((2α+1)K).
    N, mu = cfg.num_samples, np.sqrt(cfg.lambda_w * cfg.lambda_h)
    alpha = np.asarray(MIXUP_ALPHA)
    s_c = (alpha + 1) / ((2 * alpha + 1) * cfg.num_classes)
    np.testing.assert_allclose(
        spectrum[:, 1], scale * np.sqrt(np.sqrt(N * s_c) - N * mu), rtol=1e-12
    )
    simulated = tr["w_spectrum"][..., -1, :].mean(axis=1)
    assert np.all(np.diff(simulated[:, 1]) < 0)


def test_mixed_label_second_moment_matches_beta_sampling_and_the_quadrature():
    cfg = ufm.Config(**{**MIXUP_BASE, "mixup_alpha": 0.7})
    K = cfg.num_classes
    s_mean, s_c = (float(v) for v in theory.mixup_label_moments(cfg))
    S = s_c * (np.eye(K) - 1 / K) + s_mean / K * np.ones((K, K))
    # The model's two-node targets, weight 1/(2KN) each: S exactly (to rounding).
    Y = np.asarray(ufm._mixup_targets(cfg, jnp.float64))
    np.testing.assert_allclose(Y @ Y.T / Y.shape[1], S, atol=1e-15)
    # Monte Carlo over the mixing distribution itself: 40 000 draws of (a, b, λ),
    # each entry of the sample mean of y yᵀ within z = 5 standard errors of S.
    rng = np.random.default_rng(0)
    draws = 40_000
    lam = rng.beta(0.7, 0.7, draws)
    a, b = rng.integers(0, K, draws), rng.integers(0, K, draws)
    y = lam[:, None] * np.eye(K)[a] + (1 - lam[:, None]) * np.eye(K)[b]
    outer = y[:, :, None] * y[:, None, :]
    mean, se = outer.mean(0), outer.std(0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(mean - S) <= 5 * se)


# --- The three sweeps, in one program ------------------------------------------------

# Variant -> (Config, swept float field and its values, steps).
SWEEPS = {
    "smoothed": (ufm.Config(**SMOOTH_BASE, loss="ls"), {"smoothing": SMOOTHING}, 3500),
    "tethered": (ufm.Config(**TETHER_BASE), {"lambda_h": TETHER_LAMBDA_H}, 5000),
    "mixed": (ufm.Config(**MIXUP_BASE), {"mixup_alpha": MIXUP_ALPHA}, 4000),
}


def _final_observations(cfg, keys, steps):
    return model_runs.final_observations(ufm, cfg, keys, steps)


@jax.jit
def _run_sweeps(grid_cfgs, keys):
    """Per variant: the observations ``[G, S]`` and the predictions ``[G]``."""
    return {
        name: (
            _final_observations(cfg, keys, SWEEPS[name][2]),
            lax.map(theory.predict, cfg),
        )
        for name, cfg in grid_cfgs.items()
    }


@pytest.fixture(scope="module")
def sweeps():
    """Variant -> (cfg, Trajectory of the last record, prediction), every grid point
    with the same seed keys (as in ``cj.sweep``)."""
    grids = {name: cj.expand_grid(cfg, grid) for name, (cfg, grid, _) in SWEEPS.items()}
    keys = seed_keys(0, np.arange(SEEDS))
    out = jax.device_get(_run_sweeps({n: g[0] for n, g in grids.items()}, keys))
    results = {}
    for name, (cfg, _, steps) in SWEEPS.items():
        observed, prediction = out[name]
        tr = cj.Trajectory(
            model=ufm.__name__,
            config={},
            steps=np.array([steps]),
            seeds=np.arange(SEEDS),
            metrics={k: np.asarray(v)[:, :, None] for k, v in observed.items()},
            grid=grids[name][1],
        )
        assert np.all(tr["grad_norm"][..., -1] < GRAD_TOL), tr["grad_norm"][..., -1]
        results[name] = cfg, tr, prediction
    return results
