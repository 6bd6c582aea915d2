"""Exact and asymptotic test errors of recursive linear regression.

Model: ``collapse_jax.models.recursive_regression`` (see its docstring and
``theory/recursive_regression.md`` for the derivations). Notation: ``d`` = dim,
``T0`` = generator_samples, ``T`` = samples, ``σ0``/``σ`` = generator_noise/noise,
``λ`` = ridge (downstream), ``ω`` = real_weight, ``n`` = generation, ``r`` = signal,
``s_k`` the spectrum of Σ and ``B_k = E w*_k²`` the source.

Every function is pure ``jnp`` of the Config, so it can be ``jax.vmap``-ed over a
grid config (leaves ``[G]``). Regimes without a formula raise ``ValueError`` when the
deciding values are concrete; under tracing they are NaN ("no prediction").
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma

from collapse_jax.models.recursive_regression import Config

__all__ = [
    "accumulate_limit",
    "downstream_error",
    "generator_error",
    "generator_limit",
    "golden_ratio_weight",
    "interpolation_variance",
    "mix_limit",
    "ols_variance_factor",
    "optimal_real_weight",
    "optimal_ridge",
    "predict",
    "ridge_clean_error",
    "ridge_equivalents",
    "tuned_downstream_error",
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


def interpolation_variance(cfg: Config):
    """``v = σ0² E tr (XXᵀ)⁻¹ = σ0² T0/(d − T0 − 1)``: one minimum-norm fit's noise.

    ``XXᵀ ~ Wishart(d, I_T0)`` for ``T0 <= d − 2`` isotropic rows, whose inverse has
    mean ``I/(d − T0 − 1)``; the noise ``X⁺ε`` has ``E‖X⁺ε‖² = σ0² tr E(XXᵀ)⁻¹``.
    Derived in the note (the ``T0 < d`` regime of arXiv 2402.07712).
    """
    T0 = jnp.asarray(cfg.generator_samples)
    return cfg.generator_noise**2 * T0 / (cfg.dim - T0 - 1.0)


def _accumulate_fresh(c_scale, T0, d: int, n):
    """``σ0² d Σ_{i=1}^n 1/(i (i T0 − d − 1))`` via digamma (``n = None``: n → ∞).

    ``1/(i(iT0 − a)) = (1/a)(1/(i − x) − 1/i)`` with ``a = d + 1``, ``x = a/T0`` and
    ``Σ_{i=1}^n (1/(i − x) − 1/i) = ψ(n+1−x) − ψ(1−x) − ψ(n+1) + ψ(1)``.
    """
    a = d + 1.0
    x = a / jnp.asarray(T0)
    total = digamma(1.0) - digamma(1.0 - x)
    if n is not None:
        n = jnp.asarray(n, dtype=jnp.result_type(x))
        total = total + digamma(n + 1.0 - x) - digamma(n + 1.0)
        total = jnp.where(n == 0, 0.0, total)  # exact 0, not a rounding residue
    return c_scale * d / a * total


def _check_regime(cfg: Config) -> None:
    """Raise for concrete configs outside every generator formula."""
    d = cfg.dim
    _require_zero(
        "generator_ridge",
        cfg.generator_ridge,
        "ridge generators are biased and their error has no closed form; the "
        "formulas are for OLS / minimum-norm generators (generator_ridge=0), as in "
        "arXiv 2402.07712",
    )
    if not cfg.interpolate:
        _require_samples("generator_samples", cfg.generator_samples, d)
        return
    if cfg.spectrum != "isotropic":
        raise ValueError(
            f"spectrum={cfg.spectrum!r} with interpolate=True: the projection law "
            "E‖Pw‖² = (T0/d)‖w‖² needs spectrum='isotropic'"
        )
    T0 = _concrete(cfg.generator_samples)
    if T0 is not None and np.any(T0 > d - 2):
        raise ValueError(
            f"generator_samples={cfg.generator_samples!r} with interpolate=True: the "
            f"formula needs generator_samples <= dim - 2 = {d - 2} (E tr(XXᵀ)⁻¹ = "
            "T0/(d − T0 − 1) is infinite at dim - 1)"
        )


def _valid(cfg: Config):
    """Traced counterpart of :func:`_check_regime`: False where no formula applies."""
    T0 = jnp.asarray(cfg.generator_samples)
    ok = jnp.asarray(cfg.generator_ridge) == 0
    if cfg.interpolate:
        return ok & (T0 <= cfg.dim - 2)
    return ok & (T0 >= cfg.dim + 2)


def _interpolation_moments(cfg: Config, n):
    """``(E‖ŵ_n − w*‖², E⟨w*, ŵ_n⟩)`` for minimum-norm generators (isotropic Σ).

    One fit maps ``u ↦ P u + X⁺ε`` with ``P`` the projection on the row space:
    ``E P = q I``, ``E‖P u‖² = q‖u‖²`` (``q = T0/d``), noise ``v``
    (:func:`interpolation_variance`). The label of ``mix`` is ``ω w* + (1−ω) ŵ_n``
    with noise ``s² v``, ``s² = ω² + (1−ω)²`` (``replace``: ω = 0). With
    ``b_n = E⟨w*, ŵ_n⟩``, ``a_n = E‖ŵ_n‖²``:

    - fresh design: ``b_{n+1} = q(ω r² + (1−ω) b_n)``, ``a_{n+1} = q E‖ω w* +
      (1−ω) ŵ_n‖² + s² v``, solved in closed form (two geometric rates
      ``β = q(1−ω)``, ``α = q(1−ω)²``); ``replace``: ``(1 − q^n)(r² + v/(1−q))``;
    - fixed design (``P² = P``): ``ŵ_n = P w* + noise`` for n >= 1, so
      ``(1−q) r² + s² v Σ_{k<n} (1−ω)^{2k}`` and ``b_n = q r²``.

    ``n = None`` gives the n → ∞ limits. Derived in the note (the over-parametrised
    regime of Dohmatob, Feng, Kempe 2024, arXiv 2402.07712).
    """
    r2 = jnp.asarray(cfg.signal) ** 2
    q = jnp.asarray(cfg.generator_samples) / cfg.dim
    v = interpolation_variance(cfg)
    omega = jnp.asarray(cfg.real_weight) if cfg.policy == "mix" else 0.0
    s2 = omega**2 + (1 - omega) ** 2
    if cfg.fixed_design:
        if n is None:
            loss = jnp.where(omega > 0, s2 * v / (omega * (2 - omega)), jnp.inf)
            return (1 - q) * r2 + loss, q * r2
        n = jnp.asarray(n)
        later = n >= 1
        err = jnp.where(later, (1 - q) * r2, 0.0) + s2 * v * _geometric(
            (1 - omega) ** 2, n
        )
        return err, jnp.where(later, q * r2, r2)
    beta, alpha = q * (1 - omega), q * (1 - omega) ** 2
    C = q * omega**2 * r2 + s2 * v
    D = 2 * q * omega * (1 - omega)
    b_inf = q * omega * r2 / (1 - beta)
    if n is None:
        b, a_n = b_inf, (C + D * b_inf) / (1 - alpha)
    else:
        n = jnp.asarray(n)
        b = b_inf + (r2 - b_inf) * beta**n
        gap = alpha - beta  # 0 only where D = 0 (ω = 0) or q = 0
        safe = jnp.where(gap == 0, 1.0, gap)
        cross = jnp.where(gap == 0, 0.0, (alpha**n - beta**n) / safe)
        a_n = (
            alpha**n * r2
            + (C + D * b_inf) * (1 - alpha**n) / (1 - alpha)
            + D * (r2 - b_inf) * cross
        )
    return r2 - 2 * b + a_n, b


def _generator_moments(cfg: Config, n):
    """``(E‖ŵ_n − w*‖²_Σ, E⟨w*, ŵ_n⟩)``; ``n = None``: the n → ∞ limits."""
    _check_regime(cfg)
    valid = _valid(cfg)
    r2 = jnp.asarray(cfg.signal) ** 2
    if cfg.interpolate:
        err, b = _interpolation_moments(cfg, n)
        return jnp.where(valid, err, jnp.nan), b
    c = cfg.generator_noise**2 * ols_variance_factor(cfg.generator_samples, cfg.dim)
    c = jnp.where(valid, c, jnp.nan)
    omega = jnp.asarray(cfg.real_weight)
    if cfg.policy == "replace":
        err = c * (jnp.inf if n is None else jnp.asarray(n))
    elif cfg.policy == "accumulate" and cfg.fixed_design:
        err = c * (math.pi**2 / 6 if n is None else _inverse_square_sum(n))
    elif cfg.policy == "accumulate":
        err = _accumulate_fresh(
            jnp.where(valid, cfg.generator_noise**2, jnp.nan),
            cfg.generator_samples,
            cfg.dim,
            n,
        )
    elif n is None:
        err = c * (omega**2 + (1 - omega) ** 2) / (omega * (2 - omega))
    else:
        err = c * (omega**2 + (1 - omega) ** 2) * _geometric((1 - omega) ** 2, n)
    return err, r2


def generator_error(cfg: Config, n):
    """``E ‖ŵ_n − w*‖²_Σ`` of the generation-``n`` generator.

    OLS generators (``T0 >= d + 2``), with ``c = σ0² d / (T0 − d − 1)`` (the
    one-generation OLS error, any Σ):

    - ``replace`` (fresh or fixed design): ``n c`` — linear growth. Dohmatob, Feng,
      Kempe 2024 (arXiv 2402.07712), Thm 4.1 (OLS); Gerstgrasser et al. 2024
      (arXiv 2404.01413), Sec. 3 (replace).
    - ``accumulate``, fixed design: ``c Σ_{i=1}^n 1/i²`` < ``c π²/6``. Gerstgrasser
      et al. 2024 (arXiv 2404.01413), Sec. 3 (accumulate).
    - ``accumulate``, fresh designs: ``σ0² d Σ_{i=1}^n 1/(i (i T0 − d − 1))``, exact
      for any Σ (derived in the note: each block adds ``σ0² G_i⁻¹X_iᵀε_i`` with
      ``G_i ~ Wishart(i T0, Σ)`` and ``E G_i⁻¹A_iG_i⁻¹ = E G_i⁻¹ / i`` by
      exchangeability); below the fixed-design value.
    - ``mix``: ``c (ω² + (1−ω)²) Σ_{k<n} (1−ω)^{2k}``; derived in the note, the
      setting of He, Xu, Cheng 2025 (arXiv 2502.18049) with equal counts.

    Minimum-norm generators (``interpolate=True``, ``T0 <= d − 2``, Σ = I): see
    :func:`_interpolation_moments`; ``replace`` forgets ``w*`` exponentially,
    ``(1 − (T0/d)^n)(r² + v/(1 − T0/d))``.

    Args:
      cfg: Config (scalar leaves, or traced inside ``vmap``).
      n: generation indices, any shape.

    Returns:
      Array of ``n``'s shape.
    """
    return _generator_moments(cfg, n)[0]


def generator_limit(cfg: Config):
    """``lim_n E‖ŵ_n − w*‖²_Σ`` (``inf`` where the error grows without bound)."""
    return _generator_moments(cfg, None)[0]


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
    ``γ λ g² + (1 − γ + λ) g − 1 = 0``; ``λ > 0``. Kept as an independent check of
    :func:`ridge_equivalents` at Σ = I.
    """
    b = 1.0 - gamma + lam
    g = 2.0 / (b + jnp.sqrt(b**2 + 4.0 * gamma * lam))
    dg = -(gamma * g**2 + g) / (2.0 * gamma * lam * g + b)
    return g, dg


def _spectrum(cfg: Config):
    """``[d]`` eigenvalues ``s_k`` of Σ (1, or ``k^-decay``)."""
    k = jnp.arange(1, cfg.dim + 1, dtype=jnp.result_type(float))
    if cfg.spectrum == "isotropic":
        return jnp.ones_like(k)
    return k ** (-jnp.asarray(cfg.decay))


def _source(cfg: Config):
    """``[d]`` ``B_k = E w*_k² = r² k^-a / Σ_j j^-a`` (the model's w* law)."""
    k = jnp.arange(1, cfg.dim + 1, dtype=jnp.result_type(float))
    tail = k ** (-jnp.asarray(cfg.target_decay))
    return jnp.asarray(cfg.signal) ** 2 * tail / jnp.sum(tail)


_BISECTIONS = 100  # halvings of [λ, λ + tr Σ/T]: below float64 resolution


def _effective_ridge(lam, s, T):
    """``κ`` solving ``λ = κ (1 − (1/T) Σ_k s_k/(s_k + κ))`` (``κ >= λ``).

    The left side is convex in κ with value 0 at 0, so {κ: f(κ) <= λ} is an interval
    and bisection on ``[λ, λ + tr Σ/T]`` (where f <= λ and f >= λ) finds its end.
    """

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = mid * (1.0 - jnp.sum(s / (s + mid)) / T) > lam
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = lax.fori_loop(0, _BISECTIONS, halve, (lam, lam + jnp.sum(s) / T))
    return 0.5 * (lo + hi)


def ridge_equivalents(cfg: Config) -> dict[str, jax.Array]:
    """Deterministic equivalents of the downstream ridge fit (any diagonal Σ).

    With ``R = (XᵀX/T + λ)⁻¹``, ``κ`` from ``λ = κ(1 − df1(κ)/T)``, ``G = (Σ + κ)⁻¹``,
    ``df1 = tr ΣG``, ``df2 = tr Σ²G²`` and ``D = 1 − df2/T``, the first- and
    second-order equivalents ``λR ≍ κG`` and ``λ² R A R ≍ κ² G A G +
    κ² tr(AΣG²) G Σ G / (T D)`` give (Bach 2024, arXiv 2303.01372, Sec. 3;
    Hastie et al. 2022, arXiv 1903.08560, Thm 5 for bias and variance):

    - ``bias``:     ``E‖(M − I) w*‖²_Σ ≍ κ² Σ_k s_k B_k G_k² / D``;
    - ``variance``: ``σ² df2 / (T D)``;
    - ``gain``:     ``(1/d) E tr(MᵀΣMΣ⁻¹) ≍ 1 − 2κ tr G/d + κ² tr G²/(d D)``, the
      factor on a generator error with covariance ∝ Σ⁻¹ (derived in the note);
    - ``m1``:       ``(1/d) E tr M ≍ 1 − κ tr G/d``; at Σ = I, ``(1/d) E tr M² = gain``.

    Here ``M = XᵀX(XᵀX + TλI)⁻¹``. Exact as ``d, T → ∞`` (finite-size bias O(1/d));
    ``λ > 0`` (a traced λ = 0 returns the λ → 0⁺ values).
    """
    s = _spectrum(cfg)
    T = jnp.asarray(cfg.samples)
    lam = jnp.asarray(cfg.ridge)
    kappa = _effective_ridge(lam, s, T)
    G = 1.0 / (s + kappa)
    df2 = jnp.sum(s**2 * G**2)
    D = 1.0 - df2 / T
    d = cfg.dim
    return {
        "kappa": kappa,
        "bias": kappa**2 * jnp.sum(s * _source(cfg) * G**2) / D,
        "variance": cfg.noise**2 * df2 / (T * D),
        "gain": 1.0 - 2.0 * kappa * jnp.sum(G) / d + kappa**2 * jnp.sum(G**2) / (d * D),
        "m1": 1.0 - kappa * jnp.sum(G) / d,
    }


def ridge_clean_error(cfg: Config):
    """Clean downstream excess risk (labels from ``w*``): ``bias + variance``.

    :func:`ridge_equivalents` for ``λ > 0`` (any Σ and source; at Σ = I the
    Marchenko–Pastur form ``r²λ²(−g') + σ²γ(g + λg')`` of Dobriban & Wager 2018,
    arXiv 1507.03003, Thm 2.1); for ``λ = 0`` the exact OLS value ``σ² d/(T − d − 1)``.
    """
    eq = ridge_equivalents(cfg)
    ols = cfg.noise**2 * ols_variance_factor(cfg.samples, cfg.dim)
    return jnp.where(jnp.asarray(cfg.ridge) > 0, eq["bias"] + eq["variance"], ols)


def _check_downstream(cfg: Config) -> None:
    lam = _concrete(cfg.ridge)
    if lam is not None and np.any(lam == 0):
        _require_samples("samples", cfg.samples, cfg.dim)


def _downstream(cfg: Config, err, overlap):
    """Downstream error from the generator's ``E‖e_n‖²_Σ`` and ``E⟨w*, ŵ_n⟩``.

    ``ŵ_pred = M ŵ_n + noise``, ``ŵ_n`` independent of the downstream data.
    OLS (λ = 0): ``σ² d/(T − d − 1) + err`` exactly (any Σ, any ŵ_n). Ridge:
    ``bias + gain · err + variance`` for unbiased generators with error covariance
    ∝ Σ⁻¹ (every OLS policy); for minimum-norm generators (Σ = I, biased:
    ``E ŵ_n ≠ w*``) the extra ``2 (gain − m1)(overlap − r²)`` (derived in the note).
    """
    eq = ridge_equivalents(cfg)
    r2 = jnp.asarray(cfg.signal) ** 2
    ridge = eq["bias"] + eq["gain"] * err + eq["variance"]
    ridge = ridge + 2.0 * (eq["gain"] - eq["m1"]) * (overlap - r2)
    ols = cfg.noise**2 * ols_variance_factor(cfg.samples, cfg.dim) + err
    lam = jnp.asarray(cfg.ridge)
    ok = jnp.where(lam > 0, True, jnp.asarray(cfg.samples) >= cfg.dim + 2)
    return jnp.where(ok, jnp.where(lam > 0, ridge, ols), jnp.nan)


def downstream_error(cfg: Config, n):
    """``E ‖ŵ_pred − w*‖²_Σ``: ridge(λ) on T samples labelled by ``ŵ_n`` (+ noise σ).

    Dohmatob, Feng, Kempe 2024 (arXiv 2402.07712), Thm 4.1 (OLS generators; the
    collapse term is the clean variance term with σ² replaced by the accumulated
    generator noise): exact for OLS downstream (λ = 0, ``T >= d + 2``, any Σ);
    for ridge the deterministic equivalent of :func:`ridge_equivalents`, any
    diagonal Σ and power-law source (the anisotropic collapse factor ``gain`` is
    derived in the note). Minimum-norm generators: Σ = I. Points outside every
    formula raise (concrete) or are NaN (traced). ``n``: any shape.
    """
    _check_downstream(cfg)
    err, overlap = _generator_moments(cfg, n)
    return _downstream(cfg, err, overlap)


def optimal_ridge(cfg: Config, n, lams=None):
    """The λ minimising :func:`downstream_error` at generation ``n`` (scalar ``n``).

    Searched over ``lams`` (default: 2001 log-spaced values in [1e-4, 1e2]); grows
    with ``n``: the noise that the generations add is shrunk like label noise, so
    the clean-data optimum (isotropic: ``σ² d/(T r²)``, Dobriban & Wager 2018) is too
    small for synthetic data — the adaptive penalty of arXiv 2402.07712, Sec. 5.
    """
    return _tuned(cfg, n, lams)[0]


def tuned_downstream_error(cfg: Config, n, lams=None):
    """``min_λ`` :func:`downstream_error` at generation ``n`` (λ re-tuned per n)."""
    return _tuned(cfg, n, lams)[1]


def _tuned(cfg: Config, n, lams):
    lams = jnp.logspace(-4, 2, 2001) if lams is None else jnp.asarray(lams)
    errs = jax.vmap(lambda lam: downstream_error(cfg.replace(ridge=lam), n))(lams)
    best = jnp.argmin(errs)
    return lams[best], errs[best]


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Predicted ``test_error`` and ``downstream_error`` at generations ``t``.

    Both have ``t``'s shape. ``t = None`` gives the ``n → ∞`` limits (scalars;
    ``inf`` where the error grows without bound, as under ``replace`` with OLS
    generators). Traceable in the Config (vmapped over sweeps). Raises
    ``ValueError`` where no formula applies (see :func:`generator_error` and
    :func:`downstream_error`).
    """
    _check_downstream(cfg)
    err, overlap = _generator_moments(cfg, None if t is None else jnp.asarray(t))
    return {"test_error": err, "downstream_error": _downstream(cfg, err, overlap)}
