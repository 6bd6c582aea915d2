"""Exact and asymptotic test errors of recursive linear regression.

Model: ``collapse_jax.models.recursive_regression`` (see its docstring and
``theory/recursive_regression.md`` for the derivations). Notation: ``d`` = dim,
``T0`` = generator_samples, ``T`` = samples, ``σ0``/``σ`` = generator_noise/noise,
``λ`` = ridge (downstream), ``ω`` = real_weight, ``n`` = generation.

Every function is pure ``jnp`` of the Config, so it can be ``jax.vmap``-ed over a
grid config (leaves ``[G]``). Regimes without a formula raise ``ValueError`` when the
deciding values are concrete; under tracing the caller is responsible for the regime.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models.recursive_regression import Config

__all__ = [
    "accumulate_limit",
    "downstream_error",
    "generator_error",
    "golden_ratio_weight",
    "mix_limit",
    "ols_variance_factor",
    "optimal_real_weight",
    "optimal_ridge",
    "predict",
    "ridge_clean_error",
]


def _concrete(value) -> np.ndarray | None:
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value, dtype=float)


def _require_samples(name: str, value, d: int) -> None:
    arr = _concrete(value)
    if arr is not None and np.any(arr < d + 2):
        raise ValueError(
            f"{name}={value!r} is out of range for the OLS formula: it needs "
            f"{name} >= dim + 2 = {d + 2} (E tr(Σ(XᵀX)⁻¹) = d/({name} − d − 1) is "
            "infinite at dim + 1)"
        )


def _require_zero(name: str, value, why: str) -> None:
    arr = _concrete(value)
    if arr is not None and np.any(arr != 0):
        raise ValueError(f"{name}={value!r}: no formula here; {why}")


def ols_variance_factor(n_samples, d: int):
    """``E tr(Σ (XᵀX)⁻¹) = d / (n − d − 1)`` for n Gaussian rows ``N(0, Σ)``.

    The mean of an inverse Wishart matrix, ``E (XᵀX)⁻¹ = Σ⁻¹/(n − d − 1)``; needs
    ``n >= d + 2``. It does not depend on Σ. Used by Dohmatob, Feng, Kempe 2024
    (arXiv 2402.07712), Sec. 4 (OLS case of Thm 4.1).
    """
    return d / (jnp.asarray(n_samples) - d - 1.0)


def _geometric(q, n):
    """``Σ_{k<n} q^k`` for ``q`` in [0, 1], stable at q = 1 (= n)."""
    n = jnp.asarray(n, dtype=jnp.result_type(q, float))
    one = q >= 1.0
    safe = jnp.where(one, 0.5, q)
    return jnp.where(one, n, (1.0 - safe**n) / (1.0 - safe))


def _inverse_square_sum(n):
    """``Σ_{i=1}^n 1/i²`` for integer-valued ``n`` (any shape, n <= 10⁵)."""
    n = jnp.asarray(n)
    i = jnp.arange(1, 100_001, dtype=jnp.result_type(float))
    table = jnp.concatenate([jnp.zeros((1,), i.dtype), jnp.cumsum(1.0 / i**2)])
    return table[jnp.clip(n.astype(jnp.int32), 0, 100_000)]


def generator_error(cfg: Config, n):
    """``E ‖ŵ_n − w*‖²_Σ`` of the generation-``n`` generator (OLS generators).

    With ``c = σ0² d / (T0 − d − 1)`` (the one-generation OLS error, any Σ):

    - ``replace`` (fresh or fixed design): ``n c`` — linear growth. Dohmatob, Feng,
      Kempe 2024 (arXiv 2402.07712), Thm 4.1 (OLS); Gerstgrasser et al. 2024
      (arXiv 2404.01413), Sec. 3 (replace).
    - ``accumulate`` with a fixed design: ``c Σ_{i=1}^n 1/i²`` < ``c π²/6``.
      Gerstgrasser et al. 2024 (arXiv 2404.01413), Sec. 3 (accumulate). With fresh
      designs the blocks are weighted by random Gram matrices and no closed form is
      known: ``ValueError``.
    - ``mix`` (real labels with weight ω on the same inputs):
      ``c (ω² + (1−ω)²) Σ_{k<n} (1−ω)^{2k}``; derived in the note, the setting of
      He, Xu, Cheng 2025 (arXiv 2502.18049) with equal real and synthetic counts.

    Args:
      cfg: Config (scalar leaves, or traced inside ``vmap``).
      n: generation indices, any shape.

    Returns:
      Array of ``n``'s shape.
    """
    d = cfg.dim
    _require_samples("generator_samples", cfg.generator_samples, d)
    _require_zero(
        "generator_ridge",
        cfg.generator_ridge,
        "ridge generators are biased and their error has no closed form; the "
        "formulas are for OLS generators (generator_ridge=0), as in arXiv 2402.07712",
    )
    n = jnp.asarray(n)
    c = cfg.generator_noise**2 * ols_variance_factor(cfg.generator_samples, d)
    # Traced configs cannot raise: outside the formula's regime the value is NaN
    # ("no prediction" for collapse_jax.compare); concrete configs raised above.
    valid = (jnp.asarray(cfg.generator_ridge) == 0) & (
        jnp.asarray(cfg.generator_samples) >= d + 2
    )
    c = jnp.where(valid, c, jnp.nan)
    if cfg.policy == "replace":
        return c * n
    if cfg.policy == "accumulate":
        if not cfg.fixed_design:
            raise ValueError(
                "fixed_design=False with policy='accumulate': no exact formula (the "
                "accumulated blocks are weighted by independent random Gram "
                "matrices); the Σ 1/i² law of arXiv 2404.01413 needs fixed_design=True"
            )
        return c * _inverse_square_sum(n)
    omega = jnp.asarray(cfg.real_weight)
    return c * (omega**2 + (1 - omega) ** 2) * _geometric((1 - omega) ** 2, n)


def accumulate_limit(cfg: Config):
    """``lim_n E‖ŵ_n − w*‖²_Σ = (π²/6) σ0² d/(T0 − d − 1)`` under ``accumulate``.

    Gerstgrasser et al. 2024 (arXiv 2404.01413), Sec. 3: the accumulated error is
    bounded by the Basel sum ``Σ 1/i² = π²/6``.
    """
    _require_samples("generator_samples", cfg.generator_samples, cfg.dim)
    c = cfg.generator_noise**2 * ols_variance_factor(cfg.generator_samples, cfg.dim)
    return c * math.pi**2 / 6


def mix_limit(cfg: Config):
    """``lim_n`` of the ``mix`` generator error: ``c (ω² + (1−ω)²) / (1 − (1−ω)²)``.

    Infinite at ω = 0 (pure replace). Minimised at ``ω = 1/φ`` (see
    :func:`golden_ratio_weight`).
    """
    _require_samples("generator_samples", cfg.generator_samples, cfg.dim)
    c = cfg.generator_noise**2 * ols_variance_factor(cfg.generator_samples, cfg.dim)
    omega = jnp.asarray(cfg.real_weight)
    return c * (omega**2 + (1 - omega) ** 2) / (omega * (2 - omega))


def golden_ratio_weight() -> float:
    """``1/φ = (√5 − 1)/2 ≈ 0.618``: the real-data weight minimising :func:`mix_limit`.

    He, Xu, Cheng 2025 (arXiv 2502.18049): with as many synthetic as fresh real
    samples per generation, the optimal weight on the real data tends to the
    reciprocal of the golden ratio. Here ``d/dω`` of ``(ω² + (1−ω)²)/(ω(2−ω))``
    vanishes iff ``ω² + ω − 1 = 0``.
    """
    return (math.sqrt(5.0) - 1.0) / 2.0


def optimal_real_weight(cfg: Config, n, grid_size: int = 20_001):
    """The ω in [0, 1] minimising the ``mix`` generator error at generation ``n``.

    Minimised over a uniform grid of ``grid_size`` points (resolution 5e-5 by
    default); tends to :func:`golden_ratio_weight` as ``n → ∞``. Scalar ``n``.
    """
    omega = jnp.linspace(0.0, 1.0, grid_size)
    err = (omega**2 + (1 - omega) ** 2) * _geometric((1 - omega) ** 2, n)
    return omega[jnp.argmin(err)]


def _mp_resolvent(lam, gamma):
    """``g(λ) = lim (1/d) tr (XᵀX/T + λ I)⁻¹`` and ``g'(λ)`` for isotropic Gaussian X.

    Marchenko–Pastur law with aspect ratio ``γ = d/T``: ``g`` is the positive root of
    ``γ λ g² + (1 − γ + λ) g − 1 = 0``; ``λ > 0``.
    """
    b = 1.0 - gamma + lam
    g = 2.0 / (b + jnp.sqrt(b**2 + 4.0 * gamma * lam))
    dg = -(gamma * g**2 + g) / (2.0 * gamma * lam * g + b)
    return g, dg


def ridge_clean_error(cfg: Config):
    """Deterministic equivalent of the clean ridge excess risk (isotropic Σ).

    ``r² λ² (−g') + σ² γ (g + λ g')`` with ``r = ‖w*‖``, ``γ = d/T`` and ``g`` the
    Marchenko–Pastur resolvent (:func:`_mp_resolvent`); exact as ``d, T → ∞`` at
    fixed γ (Dobriban & Wager 2018, arXiv 1507.03003, Thm 2.1; the ``n = 0`` term
    of arXiv 2402.07712 Thm 4.1). For ``λ = 0`` the exact OLS value
    ``σ² d/(T − d − 1)`` is returned.
    """
    d = cfg.dim
    lam = jnp.asarray(cfg.ridge)
    gamma = d / jnp.asarray(cfg.samples)
    safe = jnp.where(lam > 0, lam, 1.0)
    g, dg = _mp_resolvent(safe, gamma)
    ridge = cfg.signal**2 * safe**2 * (-dg) + cfg.noise**2 * gamma * (g + safe * dg)
    return jnp.where(lam > 0, ridge, cfg.noise**2 * ols_variance_factor(cfg.samples, d))


def _collapse_gain(cfg: Config):
    """``(1/d) E tr (XᵀX (XᵀX + TλI)⁻¹)²`` → ``1 − 2λg − λ²g'`` (1 at λ = 0)."""
    lam = jnp.asarray(cfg.ridge)
    safe = jnp.where(lam > 0, lam, 1.0)
    g, dg = _mp_resolvent(safe, cfg.dim / jnp.asarray(cfg.samples))
    return jnp.where(lam > 0, 1.0 - 2.0 * safe * g - safe**2 * dg, 1.0)


def downstream_error(cfg: Config, n):
    """``E ‖ŵ_pred − w*‖²_Σ``: ridge(λ) on T samples labelled by ``ŵ_n`` (+ noise σ).

    ``ŵ_pred − w* = (M − I) w* + M δ_n + noise term``, ``M = XᵀX (XᵀX + TλI)⁻¹``,
    ``δ_n = ŵ_n − w*`` independent of the downstream data, mean 0, covariance
    ``∝ Σ⁻¹``. Hence (Dohmatob, Feng, Kempe 2024, arXiv 2402.07712, Thm 4.1):

    - OLS (λ = 0, T >= d + 2), any Σ, exact:
      ``σ² d/(T − d − 1) + generator_error(n)``;
    - ridge (λ > 0), isotropic Σ, deterministic equivalent (d, T → ∞, d/T fixed):
      ``ridge_clean_error + generator_error(n) · (1 − 2λg − λ²g')``.

    Power-law spectra with λ > 0 raise ``ValueError`` (not derived here); so do
    OLS with ``T < d + 2``. Under tracing (a vmapped grid) those points are NaN,
    i.e. "no prediction" for ``collapse_jax.compare``.
    """
    lam = _concrete(cfg.ridge)
    if lam is not None:
        if np.any(lam == 0):
            _require_samples("samples", cfg.samples, cfg.dim)
        if np.any(lam > 0) and cfg.spectrum != "isotropic":
            raise ValueError(
                f"ridge={cfg.ridge!r} with spectrum={cfg.spectrum!r}: the ridge "
                "formula implemented here is for spectrum='isotropic'; use ridge=0 "
                "(exact for any spectrum)"
            )
    lam = jnp.asarray(cfg.ridge)
    ok = jnp.where(lam > 0, cfg.spectrum == "isotropic", cfg.samples >= cfg.dim + 2)
    value = ridge_clean_error(cfg) + generator_error(cfg, n) * _collapse_gain(cfg)
    return jnp.where(ok, value, jnp.nan)


def optimal_ridge(cfg: Config, n, lams=None):
    """The λ minimising :func:`downstream_error` at generation ``n`` (isotropic).

    Searched over ``lams`` (default: 2001 log-spaced values in [1e-4, 1e2]); grows
    with ``n``: the noise that the generations add is shrunk like label noise, so
    the clean-data optimum ``σ² d/(T r²)`` (Dobriban & Wager 2018) is too small
    for synthetic data — the adaptive penalty of arXiv 2402.07712, Sec. 5.
    """
    lams = jnp.logspace(-4, 2, 2001) if lams is None else jnp.asarray(lams)
    errs = jax.vmap(lambda lam: downstream_error(cfg.replace(ridge=lam), n))(lams)
    return lams[jnp.argmin(errs)]


def predict(cfg: Config, t) -> dict[str, jax.Array]:
    """Predicted ``test_error`` and ``downstream_error`` at generations ``t``.

    Both have ``t``'s shape. Raises ``ValueError`` where no formula applies (see
    :func:`generator_error` and :func:`downstream_error`).
    """
    t = jnp.asarray(t)
    return {
        "test_error": generator_error(cfg, t),
        "downstream_error": downstream_error(cfg, t),
    }
