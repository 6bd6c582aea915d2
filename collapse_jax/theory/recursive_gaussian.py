"""Exact expectations for the recursively refitted Gaussian (models/recursive_gaussian).

The original is N(0, I_d); generation n's fit is (μ_n, Σ_n). With M samples per
generation, k = M − 1 degrees of freedom and divisor D = M − 1 (unbiased) or M (MLE),
the replace policy is the Markov chain (Shumailov et al. 2023, arXiv 2305.17493,
Sec. 3.2 and its appendix on the Gaussian case)

  μ_{n+1} = μ_n + Σ_n^{1/2} z / √M,   Σ_{n+1} = Σ_n^{1/2} (W / D) Σ_n^{1/2},

z ~ N(0, I_d) and W ~ Wishart_d(k, I) independent (diagonal fit: W's diagonal, i.e.
d independent χ²_k). The first and second moments of Σ_n follow exact linear
recursions (Wishart moments); E log det Σ_n (replace) and E W2² (replace, diagonal fit)
are exact too. Where no closed form exists (log det and W2 under accumulate and mix,
W2 of a full-covariance fit) the prediction is the second-order expansion of the
metric around Σ = I, with ``approximation_error`` giving the size of what it leaves
out. Derivations in theory/recursive_gaussian.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma, gammaln

from collapse_jax.models.recursive_gaussian import Config

__all__ = [
    "GOLDEN_RATIO_WEIGHT",
    "accumulate_moments",
    "approximation_error",
    "cov_err_sq",
    "log_det",
    "log_det_second_order",
    "mean_sq",
    "mean_sq_limit_mix",
    "mix_moments",
    "optimal_real_fraction",
    "predict",
    "second_moments",
    "sqrt_ratio_mean",
    "variance",
    "w2_sq",
    "w2_sq_second_order",
]

# 1/φ = (√5 − 1)/2: the real-data weight minimising the stationary mean error when
# real and synthetic sample sizes are equal (He, Xu, Cheng 2025, arXiv 2502.18049).
GOLDEN_RATIO_WEIGHT = (np.sqrt(5.0) - 1.0) / 2.0


def _divisor(cfg: Config) -> int:
    return cfg.samples - 1 if cfg.estimator == "unbiased" else cfg.samples


def _shrink(cfg: Config) -> float:
    """c = E[tr Σ_{n+1} | Σ_n] / tr Σ_n = (M − 1)/D: 1 unbiased, (M − 1)/M MLE."""
    return (cfg.samples - 1) / _divisor(cfg)


def _times(t) -> jnp.ndarray:
    """Generation indices as floats; ValueError unless whole numbers >= 0."""
    if not isinstance(t, jax.core.Tracer):
        arr = np.asarray(t, dtype=float)
        if np.any(arr < 0) or np.any(np.mod(arr, 1) != 0):
            raise ValueError(f"t={t!r}: generations must be whole numbers >= 0")
    return jnp.asarray(t, dtype=jnp.result_type(float))


def _replace_only(cfg: Config, name: str) -> None:
    if cfg.policy != "replace":
        raise ValueError(
            f"{name}: closed form for policy='replace' only "
            f"(got policy={cfg.policy!r}); use accumulate_moments or mix_moments"
        )


def variance(cfg: Config, t) -> jnp.ndarray:
    """E tr Σ_n = d·c^n under ``replace``, c = (M − 1)/D.

    Unbiased: tr Σ is a martingale, E tr Σ_n = d for all n although Σ_n → 0 a.s.;
    MLE: geometric decay ((M − 1)/M)^n. Shumailov et al. 2023 (arXiv 2305.17493),
    Sec. 3.2 (variance recursion of the single-Gaussian model); exact.
    """
    _replace_only(cfg, "variance")
    n = _times(t)
    return cfg.dim * _shrink(cfg) ** n


def mean_sq(cfg: Config, t) -> jnp.ndarray:
    """E‖μ_n − μ_0‖² = (d/M) Σ_{j<n} c^j under ``replace``.

    Each generation adds independent noise of covariance Σ_j / M to the mean;
    unbiased: n·d/M, a random walk (Shumailov et al. 2023, arXiv 2305.17493, Sec. 3.2,
    the Var(μ_n) = σ²·Σ 1/M_j step of their Theorem 3.1 argument); exact.
    """
    _replace_only(cfg, "mean_sq")
    n = _times(t)
    c = _shrink(cfg)
    d, M = cfg.dim, cfg.samples
    if c == 1.0:
        return d * n / M
    return d / M * (1 - c**n) / (1 - c)


def sqrt_ratio_mean(cfg: Config) -> float:
    """a = E sqrt(χ²_k / D) = sqrt(2/D)·Γ((k+1)/2)/Γ(k/2), k = M − 1 (< 1 always).

    The per-generation factor of E σ_n for one coordinate: E σ_n = a^n (σ_0 = 1).
    """
    k = cfg.samples - 1
    return float(
        np.sqrt(2.0 / _divisor(cfg)) * np.exp(gammaln((k + 1) / 2) - gammaln(k / 2))
    )


def w2_sq(cfg: Config, t) -> jnp.ndarray:
    """E W2²(N(μ_n, Σ_n), N(0, I)) = E‖μ_n‖² + d·c^n + d − 2d·a^n (diagonal fit).

    W2² between Gaussians with commuting covariances is
    ‖μ‖² + Σ_i (σ_i − 1)² (Dowson & Landau 1982); each σ_i is a product of n
    independent sqrt(χ²_k/D) factors, so E σ_i = a^n (``sqrt_ratio_mean``).
    For the unbiased estimator and n ≪ M this is ≈ (3/2)·d·n/M, the leading term of
    Shumailov et al. 2023 (arXiv 2305.17493), Theorem 3.1 (d = 1, M_i = M). Exact.
    A full-covariance fit has no closed form for E tr Σ_n^{1/2}: not predicted.
    """
    _replace_only(cfg, "w2_sq")
    if cfg.covariance != "diagonal":
        raise ValueError(
            "w2_sq: E tr Σ_n^{1/2} has a closed form only for covariance='diagonal' "
            f"(got covariance={cfg.covariance!r})"
        )
    n = _times(t)
    d = cfg.dim
    return (
        mean_sq(cfg, t) + d * _shrink(cfg) ** n + d - 2 * d * sqrt_ratio_mean(cfg) ** n
    )


def log_det(cfg: Config, t) -> jnp.ndarray:
    """E log det Σ_n = n·g, g = E log det(W/D) < 0: the variance collapses a.s.

    Full fit: g = Σ_{i=1}^{d} ψ((k − i + 1)/2) + d·log 2 − d·log D (log-determinant of
    a Wishart_d(k, I) matrix; Muirhead 1982, Thm 3.2.15). Diagonal fit:
    g = d·(ψ(k/2) + log 2 − log D). By Jensen g < log E det(W/D) ≤ 0, so log det Σ_n is
    a random walk with negative drift and Σ_n → 0 almost surely even when E tr Σ_n
    stays d — the collapse mechanism of Shumailov et al. 2023 (arXiv 2305.17493),
    Sec. 3.2. Exact.
    """
    _replace_only(cfg, "log_det")
    n = _times(t)
    k, D, d = cfg.samples - 1, _divisor(cfg), cfg.dim
    if cfg.covariance == "full":
        i = np.arange(1, d + 1)
        g = float(np.sum(digamma((k - i + 1) / 2.0))) + d * np.log(2.0) - d * np.log(D)
    else:
        g = d * (float(digamma(k / 2.0)) + np.log(2.0) - np.log(D))
    return n * g


def accumulate_moments(cfg: Config, n_max: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(E‖μ_n‖², E tr Σ_n) for n = 0..n_max under ``accumulate``; exact recursion.

    Generation j adds M samples of N(μ_{j−1}, Σ_{j−1}) to a pool of (j−1)M; with
    e_n = E‖μ_n‖², v_n = E tr Σ_n:

      e_n = e_{n−1} + v_{n−1} / (n² M),
      v_n = [M Σ_{j=1}^{n} (v_{j−1} + e_{j−1}) − nM·e_n] / (nM − δ),

    δ = 1 unbiased, 0 MLE (the pooled scatter is Σ‖x‖² − nM‖μ_n‖²). With v ≈ d the
    mean error stays below (d/M)·π²/6 — the bounded-error result of Gerstgrasser et al.
    2024 (arXiv 2404.01413), Sec. 3, for accumulated data.
    """
    d, M = cfg.dim, cfg.samples
    delta = 1.0 if cfg.estimator == "unbiased" else 0.0

    def body(carry, n):
        e, v, acc = carry  # acc = Σ_{j<=n-1} (v_j + e_j)
        acc = acc + v + e
        e_new = e + v / (n**2 * M)
        v_new = (M * acc - n * M * e_new) / (n * M - delta)
        return (e_new, v_new, acc), (e_new, v_new)

    zero = jnp.zeros((), jnp.result_type(float))
    ns = jnp.arange(1, n_max + 1, dtype=zero.dtype)
    _, (e, v) = lax.scan(body, (zero, zero + d, zero), ns)
    e = jnp.concatenate([zero[None], e])
    v = jnp.concatenate([zero[None] + d, v])
    return e, v


def mix_moments(cfg: Config, n_max: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(E‖μ_n‖², E tr Σ_n) for n = 0..n_max under ``mix`` with weight w; exact.

      v_{n+1} = c·(w·d + (1 − w)·v_n),
      e_{n+1} = w²·d/M + (1 − w)²·(e_n + v_n/M),

    the real and synthetic fits being independent given generation n (the weighted
    estimator of He, Xu, Cheng 2025, arXiv 2502.18049, Sec. 3, Gaussian case).
    ``cfg.real_fraction`` may be a traced scalar, so this vmaps over a weight grid.
    """
    d, M, c = cfg.dim, cfg.samples, _shrink(cfg)
    w = jnp.asarray(cfg.real_fraction)

    def body(carry, _):
        e, v = carry
        e_new = w**2 * d / M + (1 - w) ** 2 * (e + v / M)
        v_new = c * (w * d + (1 - w) * v)
        return (e_new, v_new), (e_new, v_new)

    e0 = jnp.zeros(jnp.shape(w), jnp.result_type(float))
    v0 = e0 + d
    _, (e, v) = lax.scan(body, (e0, v0), None, length=n_max)
    return jnp.concatenate([e0[None], e]), jnp.concatenate([v0[None], v])


def mean_sq_limit_mix(cfg: Config) -> jnp.ndarray:
    """lim_n E‖μ_n‖² under ``mix``: the fixed point of ``mix_moments``.

    v_∞ = c·w·d / (1 − c(1 − w)), e_∞ = (w²·d + (1 − w)²·v_∞) / (M (1 − (1 − w)²)).
    For the unbiased estimator v_∞ = d and e_∞ = (d/M)(w² + (1 − w)²)/(1 − (1 − w)²),
    minimised at w = 1/φ (He, Xu, Cheng 2025, arXiv 2502.18049, Sec. 3: the golden-
    ratio weight for equal real and synthetic sample sizes). Needs w > 0.
    """
    d, M, c = cfg.dim, cfg.samples, _shrink(cfg)
    w = jnp.asarray(cfg.real_fraction)
    if not isinstance(w, jax.core.Tracer) and np.any(np.asarray(w) <= 0):
        raise ValueError(
            f"real_fraction={cfg.real_fraction!r}: with no real data (w = 0) the mean "
            "error grows without bound; the limit needs w in (0, 1]"
        )
    v_inf = c * w * d / (1 - c * (1 - w))
    return (w**2 * d + (1 - w) ** 2 * v_inf) / (M * (1 - (1 - w) ** 2))


def optimal_real_fraction(cfg: Config, grid: int = 20001) -> float:
    """argmin_w of ``mean_sq_limit_mix`` on a fine grid of (0, 1].

    For the unbiased estimator this is 1/φ ≈ 0.618 exactly (root of
    (1−w)² − 3(1−w) + 1 = 0); for MLE the shrinking variance moves it lower.
    """
    w = np.linspace(1.0 / grid, 1.0, grid)
    values = mean_sq_limit_mix(cfg.replace(real_fraction=jnp.asarray(w)))
    return float(w[int(np.argmin(np.asarray(values)))])


def second_moments(cfg: Config, n_max: int) -> tuple[jnp.ndarray, ...]:
    """(E tr Σ_n, E tr Σ_n², E (tr Σ_n)²) for n = 0..n_max, each ``[n_max + 1]``.

    Exact for ``replace`` (w = 0) and ``mix`` (weight w, traced or not). For a full
    fit the Wishart_d(k, I) identities E[W A W] = k(k+1)A + k·tr(A)·I and
    Var tr(WA) = 2k·tr A² give, with v, s, u = E tr Σ, E tr Σ², E (tr Σ)²,

      s' = [w²(k(k+1)d + k d²) + (1−w)²(k(k+1)s + k u) + 2w(1−w)k² v] / D²,
      u' = [w²(k² d² + 2k d) + (1−w)²(k² u + 2k s) + 2w(1−w)k² d v] / D²;

    a diagonal fit keeps only W's diagonal (χ²_k entries, E χ⁴ = k(k+2)):
    s' = [w² d k(k+2) + (1−w)² k(k+2) s + 2w(1−w)k² v] / D², u' as above. Our
    derivation (theory/recursive_gaussian.md), not a formula of the cited papers.
    """
    if cfg.policy == "accumulate":
        raise ValueError(
            "second_moments: exact recursion for policy='replace' or 'mix' only "
            "(got policy='accumulate'); cov_err_sq gives its leading order"
        )
    d, k, D = cfg.dim, cfg.samples - 1, _divisor(cfg)
    w = jnp.asarray(0.0 if cfg.policy == "replace" else cfg.real_fraction)
    w = w.astype(jnp.result_type(float))
    full = cfg.covariance == "full"
    s_real = k * (k + 1) * d + k * d * d if full else d * k * (k + 2)

    def body(carry, _):
        v, s, u = carry
        s_syn = k * (k + 1) * s + k * u if full else k * (k + 2) * s
        cross = 2 * w * (1 - w) * k * k
        s_new = (w**2 * s_real + (1 - w) ** 2 * s_syn + cross * v) / D**2
        u_new = (
            w**2 * (k * k * d * d + 2 * k * d)
            + (1 - w) ** 2 * (k * k * u + 2 * k * s)
            + cross * d * v
        ) / D**2
        v_new = k / D * (w * d + (1 - w) * v)
        return (v_new, s_new, u_new), (v_new, s_new, u_new)

    start = tuple(jnp.zeros_like(w) + x for x in (d, d, d * d))
    _, rows = lax.scan(body, start, None, length=n_max)
    return tuple(
        jnp.concatenate([x0[None], xs]) for x0, xs in zip(start, rows, strict=True)
    )


def _harmonic2(n: jnp.ndarray) -> jnp.ndarray:
    """Σ_{j=1}^{n} 1/j² for whole numbers n (any shape)."""
    j = jnp.arange(1, int(np.max(np.asarray(n), initial=0)) + 1, dtype=n.dtype)
    return jnp.sum(
        jnp.where(j[None, :] <= n.reshape(-1, 1), 1 / j**2, 0.0), -1
    ).reshape(n.shape)


def _static_times(t) -> np.ndarray:
    arr = np.asarray(t)
    _times(arr)
    return arr.astype(int)


def cov_err_sq(cfg: Config, t) -> jnp.ndarray:
    """E‖Σ_n − I‖_F² at generations ``t``: exact (replace, mix); leading order (accumulate).

    replace/mix: s − 2v + d from ``second_moments``. accumulate: to first order in
    the fluctuations the pooled fit moves by Δ_n = Δ_{n−1} + G_n/n, G_n the
    sampling noise of generation n's own fit, so
    E‖Σ_n − I‖² ≈ (v_n − d)²/d + g·Σ_{j≤n} 1/j² with g = E‖W/D − cI‖² =
    k d (d+1)/D² (full) or 2k d/D² (diagonal) — the π²/6 structure of Gerstgrasser
    et al. 2024 (arXiv 2404.01413) for the covariance; relative error O(1/M). Ours.
    """
    n = _static_times(t)
    d, k, D = cfg.dim, cfg.samples - 1, _divisor(cfg)
    if cfg.policy != "accumulate":
        v, s, _ = second_moments(cfg, int(n.max(initial=0)))
        idx = jnp.asarray(n)
        return s[idx] - 2 * v[idx] + d
    _, v = accumulate_moments(cfg, int(n.max(initial=0)))
    g = k * d * (d + 1) / D**2 if cfg.covariance == "full" else 2 * k * d / D**2
    nf = jnp.asarray(n, jnp.result_type(float))
    return (v[jnp.asarray(n)] - d) ** 2 / d + g * _harmonic2(nf)


def _first_moments(cfg: Config, n: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(E‖μ_n‖², E tr Σ_n) at the whole numbers ``n``, for any policy."""
    if cfg.policy == "replace":
        return mean_sq(cfg, n), variance(cfg, n)
    moments = accumulate_moments if cfg.policy == "accumulate" else mix_moments
    e, v = moments(cfg, int(n.max(initial=0)))
    idx = jnp.asarray(n)
    return e[idx], v[idx]


def log_det_second_order(cfg: Config, t) -> jnp.ndarray:
    """E log det Σ_n ≈ (E tr Σ_n − d) − E‖Σ_n − I‖_F²/2, any policy.

    log det Σ = Σ_i log λ_i and log λ = x − x²/2 + x³/3 − …, x = λ − 1; the first
    two terms are exact moments (``accumulate_moments``/``mix_moments`` and
    ``cov_err_sq``). Second order in the fluctuation of Σ_n: good while
    E‖Σ_n − I‖² ≪ d (mix and accumulate keep it O(d²/M)); see
    ``approximation_error``. Our expansion; exact alternative for replace:
    ``log_det``.
    """
    n = _static_times(t)
    _, v = _first_moments(cfg, n)
    return (v - cfg.dim) - cov_err_sq(cfg, n) / 2


def w2_sq_second_order(cfg: Config, t) -> jnp.ndarray:
    """E W2²(N(μ_n, Σ_n), N(0, I)) ≈ E‖μ_n‖² + E‖Σ_n − I‖_F²/4, any policy or fit.

    W2² = ‖μ‖² + Σ_i (√λ_i − 1)² (Dowson & Landau 1982, Σ_n and I commute) and
    (√λ − 1)² = x²/4 − x³/8 + …, x = λ − 1. The full-covariance counterpart of
    ``w2_sq`` (which needs E tr Σ_n^{1/2}, known in closed form only for a diagonal
    fit under replace). For n ≪ M under replace (unbiased) its leading term is
    (n d/M)·(1 + (d + 1)/4), which at d = 1 is the (3/2)·n/M of Shumailov et al.
    2023 (arXiv 2305.17493), Thm 3.1. Our expansion.
    """
    n = _static_times(t)
    e, _ = _first_moments(cfg, n)
    return e + cov_err_sq(cfg, n) / 4


def approximation_error(cfg: Config, t) -> dict[str, jnp.ndarray]:
    """Size of what each ``predict`` entry leaves out, per metric, ``t.shape``.

    0 for exact predictions. For the second-order ``log_det`` and ``w2_sq`` it is
    the first neglected (cubic) term, |x|³/3 and |x|³/8 per eigenvalue, evaluated
    as d·E|x|³ for Gaussian x of variance σ² = E‖Σ_n − I‖²/d (E|x|³ =
    2√(2/π)·σ³): an estimate of the remainder's size, not a proven bound. Under
    accumulate the covariance moments are leading order in 1/M; three terms of
    relative size ≤ 1/M are dropped (the pooled divisor, the scatter between
    generation means, the Σ_{j−1} scaling of G_j), so 3/M·|prediction| is added.
    """
    n = _static_times(t)
    pred = predict(cfg, n)
    d = cfg.dim
    sigma = jnp.sqrt(jnp.maximum(cov_err_sq(cfg, n), 0.0) / d)
    cube = d * 2 * np.sqrt(2 / np.pi) * sigma**3
    out = {k: jnp.zeros(np.shape(n)) for k in pred if k != "mean"}
    exact_log_det = cfg.policy == "replace"
    exact_w2 = exact_log_det and cfg.covariance == "diagonal"
    if not exact_log_det:
        out["log_det"] = cube / 3
    if not exact_w2:
        out["w2_sq"] = cube / 8
    if cfg.policy == "accumulate":
        for k in ("cov_err_sq", "log_det", "w2_sq"):
            out[k] = out[k] + 3 / cfg.samples * jnp.abs(pred[k])
    return out


def predict(cfg: Config, t=None) -> dict[str, jnp.ndarray]:
    """Predicted seed means at generations ``t`` (1-D whole numbers).

    ``t=None`` means every generation 0..``max_generations``. Exact: ``mean``,
    ``mean_sq``, ``variance`` (every policy), ``cov_err_sq`` (replace, mix),
    ``log_det`` (replace) and ``w2_sq`` (replace, diagonal fit). Second order in the
    fluctuation of Σ_n (``log_det_second_order``, ``w2_sq_second_order``): the other
    ``log_det``/``w2_sq`` entries; leading order in 1/M: ``cov_err_sq`` under
    accumulate. ``approximation_error`` sizes the remainders. Float fields may be
    traced (vmapped over a sweep); ``t`` must be concrete.
    """
    t_arr = np.arange(cfg.max_generations + 1) if t is None else np.asarray(t)
    if t_arr.ndim != 1:
        raise ValueError(f"t must be 1-D; got shape {t_arr.shape}")
    n = _static_times(t_arr)
    e, v = _first_moments(cfg, n)
    out = {
        "mean": jnp.zeros(t_arr.shape + (cfg.dim,)),
        "mean_sq": e,
        "variance": v,
        "cov_err_sq": cov_err_sq(cfg, n),
    }
    if cfg.policy == "replace":
        out["log_det"] = log_det(cfg, n)
    else:
        out["log_det"] = log_det_second_order(cfg, n)
    if cfg.policy == "replace" and cfg.covariance == "diagonal":
        out["w2_sq"] = w2_sq(cfg, n)
    else:
        out["w2_sq"] = w2_sq_second_order(cfg, n)
    return out
