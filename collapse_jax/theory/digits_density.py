"""Exact expectations for the single-Gaussian (K = 1) refit of the digits features
(models/digits_density).

With one component every EM iteration is the maximum-likelihood fit: mean and scatter
divided by the count, plus ``reg · I``. Generation 0 is that fit to the real features,
whose covariance Σ_real is diagonal with the top-d eigenvalues λ of the centred pixel
covariance (the features are principal components), mean 0. Generation n+1 fits M draws
of N(μ_n, Σ_n). Writing c = (M − 1)/M, R = tr Σ_real, N = 1797 real images:

  replace     E Σ_{n+1} = c E Σ_n + reg I, so E tr Σ_n = c^n (R + d reg) + d reg (1 − c^n)/(1 − c)
              — the MLE case of Shumailov et al. 2023 (arXiv 2305.17493, Sec. 3.2),
              started at Σ_real instead of I; for reg = 0 the whitened chain
              Σ_real^{-1/2} Σ_n Σ_real^{-1/2} is exactly ``models/recursive_gaussian``
              (MLE, full covariance), so log det Σ_n = log det Σ_real + n·g there.
  accumulate  the pool holds the N real points and every draw (our recursion, after
              Gerstgrasser et al. 2024, arXiv 2404.01413): bounded.

Derivations in theory/digits_density.md. The eigenvalues are computed here from the
pixels with ``numpy.linalg.eigvalsh``, independently of the model's SVD.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

from collapse_jax import datasets
from collapse_jax.models.digits_density import Config
from collapse_jax.models.recursive_gaussian import Config as GaussianConfig
from collapse_jax.theory import recursive_gaussian

__all__ = [
    "accumulate_moments",
    "kl",
    "log_det",
    "mean_sq",
    "predict",
    "real_eigenvalues",
    "variance",
]


@functools.cache
def _pixel_eigenvalues() -> np.ndarray:
    x = datasets.digits(np.float64).flat
    cov = np.cov(x.T, bias=True)  # MLE: the generation-0 fit divides by N
    return np.sort(np.linalg.eigvalsh(cov))[::-1]


def real_eigenvalues(cfg: Config) -> np.ndarray:
    """Top ``components`` eigenvalues of the pixel covariance (÷N), ``[d]``."""
    return _pixel_eigenvalues()[: cfg.components].copy()


def _check(cfg: Config) -> None:
    if cfg.num_mixture != 1:
        raise ValueError(
            f"num_mixture={cfg.num_mixture}: the Gaussian refit theory is exact only "
            "for num_mixture=1 (one EM iteration is then the maximum-likelihood fit)"
        )


def _c(cfg: Config) -> float:
    return (cfg.samples - 1) / cfg.samples


def _n(t) -> np.ndarray:
    n = np.asarray(t, dtype=float)
    if np.any(n < 0) or np.any(np.mod(n, 1) != 0):
        raise ValueError(f"t={t!r}: generations must be whole numbers >= 0")
    return n


def _replace_variance(cfg: Config, n: np.ndarray) -> np.ndarray:
    d, c, reg = cfg.components, _c(cfg), np.asarray(cfg.reg, float)
    v0 = real_eigenvalues(cfg).sum() + d * reg
    return c**n * v0 + d * reg * (1 - c**n) / (1 - c)


def variance(cfg: Config, t) -> jnp.ndarray:
    """E tr Σ_n under ``replace``: c^n (R + d·reg) + d·reg·(1 − c^n)/(1 − c).

    From E[Σ̂ | Σ_n] = c Σ_n for the MLE scatter of M Gaussian draws (Shumailov et al.
    2023, arXiv 2305.17493, Sec. 3.2: geometric variance decay of the MLE refit); the
    reg term is our addition. Exact.
    """
    _check(cfg)
    _policy(cfg, "replace", "variance")
    return jnp.asarray(_replace_variance(cfg, _n(t)))


def mean_sq(cfg: Config, t) -> jnp.ndarray:
    """E‖μ_n − μ_0‖² = Σ_{j<n} E tr Σ_j / M under ``replace`` (each refit moves the mean
    by an independent N(0, Σ_j/M) step; Shumailov et al. 2023, arXiv 2305.17493,
    Sec. 3.2). Exact."""
    _check(cfg)
    _policy(cfg, "replace", "mean_sq")
    n = _n(t)
    n_max = int(n.max()) if n.size else 0
    v = _replace_variance(cfg, np.arange(n_max + 1, dtype=float))
    e = np.concatenate([[0.0], np.cumsum(v)[:-1] / cfg.samples])
    return jnp.asarray(e[n.astype(int)])


def log_det(cfg: Config, t) -> jnp.ndarray:
    """E log det Σ_n = log det Σ_real + n·g under ``replace`` with reg = 0.

    g = Σ_{i=1}^d ψ((M − i)/2) + d log 2 − d log M, the Wishart log-determinant drift of
    ``theory.recursive_gaussian.log_det`` (MLE, full covariance; Muirhead 1982,
    Thm 3.2.15), which applies because log det is additive under the whitening by
    Σ_real. Exact; no closed form with reg > 0.
    """
    _check(cfg)
    _policy(cfg, "replace", "log_det")
    if np.any(np.asarray(cfg.reg) != 0):
        raise ValueError(f"log_det: exact only for reg=0 (got reg={cfg.reg!r})")
    g_cfg = GaussianConfig(
        dim=cfg.components, samples=cfg.samples, estimator="mle", covariance="full"
    )
    n = _n(t)
    return np.sum(np.log(real_eigenvalues(cfg))) + recursive_gaussian.log_det(g_cfg, n)


def kl(cfg: Config, t) -> jnp.ndarray:
    """E KL(N(μ_n, Σ_n) ‖ N(μ_0, Σ_0)) under ``replace`` with reg = 0:

      ½ [d c^n − d − n·g + (d/M) Σ_{j<n} c^j],

    from KL = ½[tr A − d − log det A + Δμᵀ Σ_0⁻¹ Δμ] with A = Σ_0^{-1/2} Σ_n Σ_0^{-1/2}
    the whitened chain of ``models/recursive_gaussian`` (E tr A = d c^n, E log det A =
    n·g as in ``log_det``, and the whitened mean a random walk of step covariance
    A_j/M). Our combination of Shumailov et al. 2023 (arXiv 2305.17493, Sec. 3.2)
    moments; exact.
    """
    _check(cfg)
    _policy(cfg, "replace", "kl")
    if np.any(np.asarray(cfg.reg) != 0):
        raise ValueError(f"kl: exact only for reg=0 (got reg={cfg.reg!r})")
    n = _n(t)
    d, M, c = cfg.components, cfg.samples, _c(cfg)
    drift = log_det(cfg, n) - np.sum(np.log(real_eigenvalues(cfg)))
    walk = d / M * (1 - c**n) / (1 - c)
    return jnp.asarray(0.5 * (d * c**n - d - drift + walk))


def accumulate_moments(cfg: Config, n_max: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(E‖μ_n − μ_0‖², E tr Σ_n) for n = 0..n_max under ``accumulate``; exact.

    With P_n = N + nM pooled points, R = tr Σ_real and e_n, v_n the two moments:

      e_n = e_{n−1} + M v_{n−1} / P_n²,
      v_n = [N R + M Σ_{j=1}^n (v_{j−1} + e_{j−1})] / P_n − e_n + d·reg,

    v_0 = R + d·reg, e_0 = 0 (our derivation, theory/digits_density.md; the
    bounded-error setting of Gerstgrasser et al. 2024, arXiv 2404.01413, Sec. 3, with a
    real pool of N instead of M points).
    """
    _check(cfg)
    N, M, d = 1797, cfg.samples, cfg.components
    reg = jnp.asarray(cfg.reg, jnp.result_type(float))  # a leaf: traceable in sweeps
    R = jnp.asarray(real_eigenvalues(cfg).sum(), reg.dtype)

    def body(carry, n):
        e, v, acc = carry  # acc = Σ_{j<=n-1} (v_j + e_j)
        pool = N + n * M
        acc = acc + v + e
        e_new = e + M * v / pool**2
        v_new = (N * R + M * acc) / pool - e_new + d * reg
        return (e_new, v_new, acc), (e_new, v_new)

    zero = jnp.zeros((), reg.dtype)
    v0 = R + d * reg
    ns = jnp.arange(1, n_max + 1, dtype=reg.dtype)
    _, (e, v) = lax.scan(body, (zero, v0, zero), ns)
    return jnp.concatenate([zero[None], e]), jnp.concatenate([v0[None], v])


def _policy(cfg: Config, policy: str, name: str) -> None:
    if cfg.policy != policy:
        raise ValueError(
            f"{name}: closed form for policy={policy!r} only (got policy="
            f"{cfg.policy!r}); use predict or accumulate_moments"
        )


def predict(cfg: Config, t=None) -> dict[str, jnp.ndarray]:
    """Seed means at generations ``t`` (1-D integers) for K = 1.

    replace: ``variance``, ``mean_sq`` and (reg = 0) ``log_det`` and ``kl``; accumulate:
    ``variance`` and ``mean_sq``. ``t=None``: ``{}`` — these are finite-generation
    moments; their generation-to-infinity limits are not derived here.
    """
    _check(cfg)
    if t is None:
        return {}
    n = _n(t)
    if n.ndim != 1:
        raise ValueError(f"t must be 1-D; got shape {n.shape}")
    if cfg.policy == "accumulate":
        e, v = accumulate_moments(cfg, int(n.max()) if n.size else 0)
        idx = n.astype(int)
        return {"variance": jnp.asarray(v[idx]), "mean_sq": jnp.asarray(e[idx])}
    out = {"variance": variance(cfg, n), "mean_sq": mean_sq(cfg, n)}
    if np.all(np.asarray(cfg.reg) == 0):
        out["log_det"] = jnp.asarray(log_det(cfg, n))
        out["kl"] = kl(cfg, n)
    return out
