"""SSL on the digit images against the linear theory's limits.

Stochastic claims use 3 seeds; each asserted gap is over 4.5 standard errors of the
seed mean, plus a stated margin where the claim is a threshold.
"""

import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import digits_ssl as m
from collapse_jax.models import linear_byol
from collapse_jax.theory import digits_ssl as th
from collapse_jax.theory import linear_byol as linear_byol_theory

Z = 4.5
# The documented config: MLP 64 → 64 → ReLU → 16, linear predictor, cosine loss,
# SGD lr 0.05, momentum 0.9, weight decay 1e-4, batches of 64, shift ≤ 1 px, noise 0.1.
MLP = m.Config(batch_size=64)
LINEAR = m.Config(
    hidden=0,
    embed_dim=8,
    loss="euclidean",
    batch_size=32,
    max_shift=0,
    noise=0.3,
    lr=0.05,
    momentum=0.9,
)


@pytest.fixture(scope="module")
def mlp_runs():
    return {
        sg: cj.simulate(m, MLP.replace(stop_gradient=sg), seeds=3, steps=300, every=150)
        for sg in (True, False)
    }


def test_without_stop_gradient_the_mlp_collapses_toward_one_embedding(mlp_runs):
    tr = mlp_runs[False]
    rank = tr["effective_rank"]
    drop = rank[:, 0] - rank[:, -1]
    assert drop.mean() > 3.0 + Z * drop.std(ddof=1) / np.sqrt(3), rank
    # The collapsed limit: loss −1 (cos = 1 between every pair of views), reached
    # to within 0.01 (stated margin) plus Z SE.
    agreement = cj.compare(
        tr, {"loss": th.predict(MLP.replace(stop_gradient=False), tr.steps)["loss"]},
        z=Z, atol=0.01,
    )  # fmt: skip
    assert agreement.passed, agreement.table()


def test_with_predictor_and_stop_gradient_the_mlp_keeps_several_dimensions(mlp_runs):
    kept, lost = mlp_runs[True], mlp_runs[False]
    assert np.all(kept["effective_rank"][:, -1] > 0.6 * MLP.embed_dim)
    gap = kept.final("effective_rank") - lost.final("effective_rank")
    se = np.hypot(kept.se("effective_rank")[-1], lost.se("effective_rank")[-1])
    assert gap.mean() > Z * se


@pytest.fixture(scope="module")
def linear_sweep():
    return cj.sweep(
        m, LINEAR, grid={"weight_decay": [0.1, 0.2]}, seeds=3, steps=600, every=300
    )


def test_weight_decay_above_every_mode_threshold_collapses_the_linear_model(
    linear_sweep,
):
    eta_max = th.mode_thresholds(LINEAR)[2].max()
    assert 0.1 < eta_max < 0.2
    assert th.surviving_modes(LINEAR.replace(weight_decay=0.2)) == 0
    var = linear_sweep["embed_var"][1]  # [seed, time] at η = 0.2
    assert np.all(var[:, -1] < 1e-4 * var[:, 0])


def test_linear_model_keeps_no_more_modes_than_have_a_fixed_point(linear_sweep):
    cfg = LINEAR.replace(weight_decay=0.1)
    n = th.surviving_modes(cfg)
    assert n == 3
    spectrum = linear_sweep["spectrum"][0][:, -1]  # [seed, k] at η = 0.1
    # A mode past its threshold has no fixed point but 0 and decays (at rate ≥ η per
    # unit time): at most n modes hold > 1% of the variance. Which of them survive
    # depends on the initial predictor (the basin boundary p₋), so only the bound and
    # that some mode survives are claimed.
    alive = np.sum(spectrum > 0.01, axis=-1)
    assert np.all((alive >= 1) & (alive <= n)), spectrum
    np.testing.assert_allclose(th.fixed_point_spectrum(cfg).sum(), 1.0)


def test_noise_only_views_have_isotropic_augmentation_covariance():
    X, Xp = th.augmentation_moments(LINEAR)
    x = m.images(LINEAR.replace(dtype="float64"))[0].reshape(1797, -1)
    np.testing.assert_allclose(X, np.cov(x.T, bias=True), atol=1e-12)
    np.testing.assert_allclose(Xp, 0.09 * np.eye(64), atol=1e-12)


def test_mode_threshold_is_the_largest_weight_decay_with_a_fixed_point():
    # η*_j = max_p p (x_j − (x_j + x'_j) p), found here on a grid of 200,001 points
    # (quadratic near the peak: relative grid error ≤ (1/200000)² ≪ 1e-9).
    x, xp, eta = th.mode_thresholds(LINEAR)
    for j in range(5):
        p = np.linspace(0, x[j] / (x[j] + xp[j]), 200_001)
        best = np.max(p * (x[j] - (x[j] + xp[j]) * p))
        np.testing.assert_allclose(eta[j], best, rtol=1e-9)
    # x = 1, x' = σ²: the isotropic threshold of theory.linear_byol.
    iso = linear_byol.Config(aug_var=0.09)
    np.testing.assert_allclose(
        th.mode_threshold(1.0, 0.09),
        linear_byol_theory.collapse_threshold_weight_decay(iso),
        rtol=1e-12,
    )


def test_theory_refuses_the_nonlinear_model():
    with pytest.raises(ValueError, match="hidden=0"):
        th.surviving_modes(MLP)
