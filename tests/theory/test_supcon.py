"""SupCon global minimisers (theory/supcon.md) vs gradient descent run to convergence.

Full-batch GD in float64 from 3 random initialisations per setting. The runs are
deterministic given the seed, so the seed SE is ~0 and the tolerance is the
optimisation residual: near a minimiser the distance of the embeddings to the set of
minimisers (modulo rotations) is at most ``‖grad‖/μ`` to first order, ``grad`` the
recorded gradient on the sphere and ``μ`` the smallest non-zero eigenvalue of the loss
Hessian at the predicted minimiser (computed below). The metrics move by at most
``4√K`` times the embeddings (cosines: 2; Gram distances: ``2‖δC‖_F/‖C‖_F ≤ 4√K``);
a factor 2 covers the first-order approximation, and 1e-12 the float64 rounding of
Gram entries and of a log-sum-exp over N terms (~1e3 ulps).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import supcon as m
from collapse_jax.theory import supcon as th

K = 4
BASE = dict(num_classes=K, dim=6, temperature=0.5, lr=0.5, dtype="float64")
SETTINGS = {
    "balanced": dict(per_class=3),
    "imbalanced": dict(per_class=(6, 6, 2, 2)),
    "relu_imbalanced": dict(per_class=(6, 6, 2, 2), relu=True),
}
STEPS, SEEDS = 3000, 3
ROUNDING = 1e-12
GRAD_TOL = 1e-13  # asserted: every run is stationary to rounding
# One compile per static config, shared by every test below.
predict, optimal_gram, kkt_residuals, pair_forces = (
    jax.jit(f) for f in (th.predict, th.optimal_gram, th.kkt_residuals, th.pair_forces)
)


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, setting in SETTINGS.items():
        cfg = m.Config(**BASE, **setting)
        tr = cj.simulate(m, cfg, steps=STEPS, every=STEPS, seeds=SEEDS)
        assert np.all(tr.final("grad_norm") < GRAD_TOL), tr.final("grad_norm")
        out[name] = (cfg, tr)
    return out


def _minimiser(cfg):
    """Collapsed embeddings ``[N, d]`` whose class means have the predicted Gram."""
    lam, Q = np.linalg.eigh(np.asarray(optimal_gram(cfg)))
    means = Q * np.sqrt(np.where(lam > 1e-12, lam, 0.0))[None, :]  # [K, K]
    means = np.pad(means, ((0, 0), (0, cfg.dim - K)))
    return means[cfg.labels]


def _curvature(cfg):
    """Smallest non-zero Hessian eigenvalue of the loss at the predicted minimiser
    (zero modes: the N radial directions and the rotations of R^d)."""
    u = _minimiser(cfg)
    N, d = u.shape
    hess = jax.jit(jax.hessian(lambda x: m.loss(x.reshape(N, d), cfg)))
    ev = np.linalg.eigvalsh(np.asarray(hess(jnp.asarray(u.ravel()))))
    zero = np.abs(ev) < 1e-9 * ev.max()
    assert np.all(ev[~zero] > 0), "not a minimiser"
    return ev[~zero].min()


def _tolerance(cfg, tr):
    lipschitz = 4 * np.sqrt(K)
    return 2 * lipschitz * tr.final("grad_norm").max() / _curvature(cfg) + ROUNDING


def test_balanced_class_means_form_a_simplex_etf_at_the_graf_loss(runs):
    cfg, tr = runs["balanced"]
    pred = predict(cfg)
    assert float(pred["class_cos_max"]) == pytest.approx(-1 / (K - 1), abs=1e-15)
    n, N = 3, 12  # Graf et al. 2021 (arXiv 2102.08817), per anchor
    closed = np.log(n - 1 + (N - n) * np.exp(-K / ((K - 1) * cfg.temperature)))
    assert float(pred["loss"]) == pytest.approx(closed, rel=1e-14)
    agreement = cj.compare(tr, pred, atol=_tolerance(cfg, tr))
    assert agreement.passed, agreement.table()


def test_imbalance_breaks_the_etf_far_beyond_the_optimisation_tolerance(runs):
    cfg, tr = runs["imbalanced"]
    tol = _tolerance(cfg, tr)
    pred = predict(cfg)
    agreement = cj.compare(tr, pred, atol=tol)
    assert agreement.passed, agreement.table()
    etf = -1 / (K - 1)
    # The majority pair is pushed below the ETF angle, the minority pair above it.
    C = np.asarray(optimal_gram(cfg))
    assert C[0, 1] == pytest.approx(float(pred["class_cos_min"]), abs=1e-15)
    assert C[2, 3] == pytest.approx(float(pred["class_cos_max"]), abs=1e-15)
    assert np.all(tr.final("class_cos_min") < etf - 1e6 * tol)
    assert np.all(tr.final("class_cos_max") > etf + 1e6 * tol)
    assert np.all(tr.final("etf_distance") > 1e6 * tol)
    # ... and GD finds a lower loss than the collapsed ETF would give.
    assert np.all(tr.final("loss") < float(th.etf_loss(cfg)) - 1e6 * tol)


def test_relu_gives_an_orthogonal_frame_for_imbalanced_classes(runs):
    cfg, tr = runs["relu_imbalanced"]
    pred = predict(cfg)
    n = np.array(cfg.counts)
    N = n.sum()  # Kini et al. 2023 (arXiv 2306.07960), Thm 1, per anchor
    closed = np.sum(n * np.log(n - 1 + (N - n) * np.exp(-1 / cfg.temperature))) / N
    assert float(pred["loss"]) == pytest.approx(closed, rel=1e-14)
    # Disjoint supports make the class-mean cosines exact zeros (ReLU outputs 0).
    for name in ("class_cos_min", "class_cos_max", "class_cos_mean"):
        np.testing.assert_array_equal(tr.final(name), 0.0)
    # The rest to rounding: the runs sit at a stationary point (grad < 1e-13) of the
    # active face; the Hessian bound above needs the smooth no-ReLU loss, so the
    # rounding floor alone is claimed here.
    agreement = cj.compare(tr, pred, atol=ROUNDING)
    assert agreement.passed, agreement.table()


@pytest.mark.parametrize("counts", [(6, 6, 2, 2), (6, 4, 3, 2)])
def test_reduced_optimum_is_certified_singular_with_rank_one_pair_forces(counts):
    cfg = m.Config(**BASE, per_class=counts)
    C = optimal_gram(cfg)
    dual, slack = kkt_residuals(C, cfg)
    assert float(dual) < 1e-12 and float(slack) < 1e-12
    lam, Q = np.linalg.eigh(np.asarray(C))
    assert lam[0] < 1e-12 < lam[1]  # rank K − 1: a weighted mean Σ w_k μ_k = 0
    w = Q[:, 0] * np.sign(Q[0, 0])
    assert np.all(w > 0)
    F = np.asarray(pair_forces(C, cfg))
    off = ~np.eye(len(counts), dtype=bool)
    s = F[0, 1] / (w[0] * w[1])
    np.testing.assert_allclose(F[off], s * np.outer(w, w)[off], rtol=1e-10)
    # Larger classes get larger weights, but less than proportionally to n_k.
    order = np.argsort(counts)
    assert np.all(np.diff(w[order]) >= -1e-12)
    ratio = w / np.asarray(counts)
    assert np.all(np.diff(ratio[order]) <= 1e-12)


def test_etf_is_kkt_optimal_for_balanced_but_not_imbalanced_classes():
    balanced = m.Config(**BASE, per_class=3)
    imbalanced = m.Config(**BASE, per_class=(6, 6, 2, 2))
    E = th.etf_gram(balanced)
    assert max(float(r) for r in kkt_residuals(E, balanced)) < 1e-14
    assert max(float(r) for r in kkt_residuals(E, imbalanced)) > 0.1


def test_collapsed_loss_equals_the_supcon_loss_of_collapsed_embeddings():
    cfg = m.Config(**BASE, per_class=(6, 6, 2, 2))
    rng = np.random.default_rng(0)
    means = rng.normal(size=(K, cfg.dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    u = jnp.asarray(
        means[cfg.labels] * rng.uniform(0.5, 2.0, size=(cfg.num_samples, 1))
    )
    C = jnp.asarray(means @ means.T)
    full, reduced = jax.jit(m.loss)(u, cfg), jax.jit(th.collapsed_loss)(C, cfg)
    assert float(full) == pytest.approx(float(reduced), rel=1e-13)
