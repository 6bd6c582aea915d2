"""UFM global minimisers in closed form vs gradient descent run to convergence.

Each simulation runs in float64 until the gradient norm is below 1e-11 (asserted). Near
a minimiser ‖θ − θ*‖ ≤ ‖∇f‖/μ (modulo the rotations the metrics ignore), with μ the
smallest curvature, at least of order min(λ) = 1e-2 here, so parameters sit within
~1e-9 of the minimiser; the metrics are Lipschitz with O(1) constants at these norms.
Hence ATOL = 1e-8 for every deterministic limit.

Every run of the file is computed in one compiled program (the ``converged`` fixture):
per seed, ``init``, ``steps`` calls of ``step`` and a final ``observe`` on the engine's
seed keys, the per-run program that tests/test_model_contract.py checks ``simulate``
against. Runs that share the static fields of a Config (a family in RUNS) differ only
in float fields, so they share one compiled body, as the points of a sweep do.
"""

import jax
import jax.numpy as jnp
import model_runs
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import ufm
from collapse_jax.simulate import seed_keys
from collapse_jax.theory import ufm as theory

ATOL = 1e-8
GRAD_TOL = 1e-11
SEEDS = 2

BASE = dict(
    num_classes=4,
    dim=6,
    per_class=5,
    lambda_w=1e-2,
    lambda_h=2e-2,
    lr=0.5,
    dtype="float64",
)
# N = 24. λ_Wλ_H = 0.01: classes with n_k ≤ N²λ_Wλ_H = 5.76 lose their classifier;
# λ_Wλ_H = 1e-4: none does (N²λ_Wλ_H = 0.0576 < 1).
IMBALANCED = dict(
    num_classes=4, dim=6, per_class=(10, 8, 5, 1), lr=0.5, dtype="float64"
)


def _zero_threshold_config(factor):
    """BASE with λ_W at ``factor`` times the threshold of the zero minimiser."""
    cfg = ufm.Config(**BASE)
    return cfg.replace(lambda_w=factor * theory.zero_threshold(cfg) / cfg.lambda_h)


# Static family (one Config's static fields) -> (steps, {run name: Config}).
RUNS = {
    "mse": (
        12_000,
        {
            "no_bias_orthogonal_frame": ufm.Config(**BASE),
            # Twice the threshold, so the zero minimiser is strictly stable (the
            # Hessian there is positive definite) and GD converges linearly to it.
            "twice_zero_threshold": _zero_threshold_config(2.0).replace(lr=1.0),
        },
    ),
    "mse_bias": (
        12_000,
        {
            "free_bias_simplex_etf": ufm.Config(**BASE, bias=True, lambda_b=0.0),
            "regularised_bias": ufm.Config(**BASE, bias=True, lambda_b=0.3),
        },
    ),
    "imbalanced": (
        20_000,
        {
            "minority_collapse": ufm.Config(**IMBALANCED, lambda_w=0.1, lambda_h=0.1),
            "no_collapse": ufm.Config(**IMBALANCED, lambda_w=1e-2, lambda_h=1e-2),
        },
    ),
    "ce": (15_000, {"ce_no_bias": ufm.Config(**BASE, loss="ce", lambda_b=1e-2)}),
    "ce_bias": (
        15_000,
        {"ce_bias": ufm.Config(**BASE, loss="ce", bias=True, lambda_b=1e-2)},
    ),
}


def _final_observations(cfg, keys, steps):
    return model_runs.final_observations(ufm, cfg, keys, steps)


@jax.jit
def _run_all(families, keys):
    return {
        name: _final_observations(cfg, keys, RUNS[name][0])
        for name, cfg in families.items()
    }


@pytest.fixture(scope="module")
def converged():
    """Run name -> (Config, Trajectory of its last record) for every run in RUNS."""
    families = {
        family: jax.tree.map(lambda *x: jnp.stack(x), *cfgs.values())
        for family, (_, cfgs) in RUNS.items()
    }
    out = jax.device_get(_run_all(families, seed_keys(0, np.arange(SEEDS))))
    runs = {}
    for family, (steps, cfgs) in RUNS.items():
        for i, (name, cfg) in enumerate(cfgs.items()):
            metrics = {k: np.asarray(v[i])[:, None] for k, v in out[family].items()}
            runs[name] = (
                cfg,
                cj.Trajectory(
                    model=ufm.__name__,
                    config={},
                    steps=np.array([steps]),
                    seeds=np.arange(SEEDS),
                    metrics=metrics,
                ),
            )
    return runs


# One compiled prediction per static config (the float fields are traced).
_predict = jax.jit(theory.predict)


def _assert_converged(tr):
    assert np.all(tr.final("grad_norm") < GRAD_TOL), tr.final("grad_norm")


@pytest.mark.parametrize(
    "setting",
    ["no_bias_orthogonal_frame", "free_bias_simplex_etf", "regularised_bias"],
)
def test_mse_balanced_minimiser_matches_closed_form(converged, setting):
    cfg, tr = converged[setting]
    _assert_converged(tr)
    agreement = cj.compare(tr, _predict(cfg), atol=ATOL)
    assert agreement.passed, agreement.table()


def test_mse_no_bias_gives_orthogonal_frame_and_free_bias_gives_etf():
    orth = _predict(ufm.Config(**BASE))
    etf = _predict(ufm.Config(**BASE, bias=True))
    K = BASE["num_classes"]
    # Orthogonal classifier rows seen against the ETF Gram: the fixed distance
    # ‖I/√K − (I − 11ᵀ/K)/√(K−1)‖_F; a free bias removes the mean mode → ETF.
    expected = np.linalg.norm(
        np.eye(K) / np.sqrt(K) - (np.eye(K) - 1 / K) / np.sqrt(K - 1)
    )
    assert float(orth["nc2_w"]) == pytest.approx(expected, rel=1e-12)
    assert float(etf["nc2_w"]) == pytest.approx(0.0, abs=1e-12)
    assert float(etf["b_mean"]) == pytest.approx(1 / K, rel=1e-12)


def test_mse_balanced_scalars_follow_the_paper_formulas():
    cfg = ufm.Config(**BASE)
    K, n = cfg.num_classes, cfg.per_class
    lw, lh = cfg.lambda_w, cfg.lambda_h
    c = 1 - K * np.sqrt(n * lw * lh)  # W H = c Y (Zhou et al. 2022, Thm 3.1)
    np.testing.assert_allclose(theory.class_logits(cfg), c * np.eye(K), atol=1e-12)
    np.testing.assert_allclose(
        theory.classifier_norms(cfg) ** 2, np.sqrt(lh / lw) * c * np.sqrt(n), rtol=1e-12
    )
    np.testing.assert_allclose(
        theory.feature_norms(cfg) ** 2, np.sqrt(lw / lh) * c / np.sqrt(n), rtol=1e-12
    )
    assert float(theory.min_loss(cfg)) == pytest.approx((1 - c**2) / 2, rel=1e-12)
    assert float(theory.zero_threshold(cfg)) == pytest.approx(1 / (K**2 * n))


def test_mse_minimiser_is_zero_above_the_regularisation_threshold(converged):
    above, below = _zero_threshold_config(1.1), _zero_threshold_config(0.9)
    assert np.all(np.asarray(theory.classifier_norms(above)) == 0)
    assert np.all(np.asarray(theory.classifier_norms(below)) > 0)
    # Gradient descent lands on the zero solution above the threshold, where the
    # geometry is undefined (predicted NaN); compare the defined limits.
    prediction = _predict(above)
    assert np.isnan(prediction["nc2_h"])
    defined = {k: v for k, v in prediction.items() if not np.all(np.isnan(v))}
    # At twice the threshold GD converges linearly to the zero minimiser (RUNS): same
    # ATOL argument.
    _, tr = converged["twice_zero_threshold"]
    _assert_converged(tr)
    agreement = cj.compare(tr, defined, atol=ATOL)
    assert agreement.passed, agreement.table()
    assert np.all(tr.final("w_norm") < 1e-6)


def test_imbalanced_mse_minority_classes_collapse_below_predicted_size(converged):
    # N = 24, λ_Wλ_H = 0.01: classes with n_k ≤ N²λ_Wλ_H = 5.76 lose their classifier.
    cfg, tr = converged["minority_collapse"]
    assert float(theory.minority_collapse_size(cfg)) == pytest.approx(5.76)
    predicted = np.asarray(theory.classifier_norms(cfg))
    assert np.all(predicted[:2] > 0) and np.all(predicted[2:] == 0)
    # The collapsing modes decay linearly in their norm-squared rate (√n_k − N√λλ < 0
    # keeps a positive restoring force), the surviving ones converge linearly: by the
    # end the gradient norm is tiny and the norms match.
    agreement = cj.compare(
        tr,
        {
            "w_norm": predicted,
            "h_norm": theory.feature_norms(cfg),
            "loss": theory.min_loss(cfg),
        },
        atol=1e-6,
    )
    assert agreement.passed, agreement.table()


def test_imbalanced_mse_all_metrics_match_without_collapse(converged):
    # The same class sizes, λ_Wλ_H = 1e-4: every class keeps its classifier.
    cfg, tr = converged["no_collapse"]
    assert np.all(np.asarray(theory.classifier_norms(cfg)) > 0)
    _assert_converged(tr)
    agreement = cj.compare(tr, _predict(cfg), atol=ATOL)
    assert agreement.passed, agreement.table()


@pytest.mark.parametrize("bias", [False, True])
def test_cross_entropy_minimiser_is_the_predicted_simplex_etf(converged, bias):
    cfg, tr = converged["ce_bias" if bias else "ce_no_bias"]
    _assert_converged(tr)
    prediction = _predict(cfg)
    agreement = cj.compare(tr, prediction, atol=ATOL)
    assert agreement.passed, agreement.table()
    for name in ("nc2_h", "nc2_w", "nc3", "equinorm_w", "equiangular_h"):
        assert float(prediction[name]) == pytest.approx(0.0, abs=1e-12), name
    # w_k ∝ h_k with ‖w‖/‖h‖ = √(nλ_H/λ_W) (Zhu et al. 2021, Thm 3.1).
    ratio = tr.final("w_norm") / tr.final("h_norm")
    n = cfg.per_class
    np.testing.assert_allclose(
        ratio, np.sqrt(n * cfg.lambda_h / cfg.lambda_w), rtol=1e-8
    )


def test_cross_entropy_margin_solves_the_norm_equation():
    cfg = ufm.Config(**BASE, loss="ce")
    t = theory.ce_logit_margin(cfg)
    assert float(t) > 0
    assert abs(float(theory.ce_margin_equation(t, cfg))) < 1e-14
    strong = cfg.replace(lambda_w=1.0, lambda_h=1.0)  # K√(nλλ) ≥ 1: margin zero
    assert float(theory.ce_logit_margin(strong)) == 0.0


def test_predictions_vmap_over_a_grid_of_regularisation():
    import jax

    cfg = ufm.Config(**BASE)
    grid, _ = cj.expand_grid(cfg, {"lambda_w": [1e-3, 1e-2, 5e-2]})
    batched = jax.vmap(theory.min_loss)(grid)
    singles = [
        float(theory.min_loss(cfg.replace(lambda_w=v))) for v in (1e-3, 1e-2, 5e-2)
    ]
    np.testing.assert_allclose(batched, singles, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(loss="ce", per_class=(3, 2, 2, 2)), "needs balanced classes"),
        (dict(bias=True, per_class=(3, 2, 2, 2)), "no closed form is implemented"),
        (dict(dim=3), "needs dim >= num_classes"),
        (dict(loss="ce", dim=2), "simplex ETF needs dim >= num_classes - 1"),
    ],
)
def test_unsupported_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        theory.predict(ufm.Config(**{**BASE, **kwargs}))
