"""Embedding spectra of linear InfoNCE, VICReg and plain invariance.

Derivations in theory/linear_contrastive.md. Setting: data covariance
``C = diag(λ)``, augmentation noise ``σ² I``, view covariance ``Σ = C + σ²I`` with
eigenvalues ``s_j = λ_j + σ²``; the ``k`` embedding directions occupy the top-``k``
data directions (``λ`` decreasing).

- InfoNCE (distance form, Jing et al. 2022, arXiv 2110.09348, Sec. 4): dimensional
  collapse under strong augmentation. For the population objective (``B → ∞``) each
  direction's view-embedding variance is ``a_j = τ u*(r_j)``, ``r_j = σ²/s_j``,
  ``u* = 2/(√(1 + 8r) − 1) − 1``: it falls to 0 as ``σ²/λ_j → ∞``.
- VICReg (Bardes, Ponce, LeCun 2022, arXiv 2105.04906, Eq. 1–6), population
  objective, variance hinge active: water-filling eigenvalues ``a_i`` of the view
  covariance with ``diag = γ² − ε``.
- Invariance alone: ``E tr(W C Wᵀ)`` decays geometrically to 0 (complete collapse);
  exact for minibatch SGD.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models.linear_contrastive import Config

__all__ = [
    "infonce_variance",
    "invariance_total_variance",
    "predict",
    "vicreg_variance",
    "vicreg_hinge_active",
]


def _lam(cfg: Config):
    j = jnp.arange(cfg.dim, dtype=jnp.result_type(float))
    return (j + 1.0) ** (-cfg.data_decay)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _top_k(cfg: Config):
    if cfg.embed_dim > cfg.dim:
        raise ValueError(
            f"embed_dim={cfg.embed_dim} > dim={cfg.dim}: the spectrum predictions "
            "assume at most one embedding direction per data direction"
        )
    return _lam(cfg)[: cfg.embed_dim]


def infonce_variance(cfg: Config) -> jax.Array:
    """``[k]`` view-embedding variances ``a_j = τ u*_j`` at the minimum of the
    population InfoNCE objective, ``u* = 2/(√(1+8r) − 1) − 1``, ``r = σ²/(λ+σ²)``.

    Stationarity of ``σ²u/s − ½ log(1+u) − ½ u/(1+u)`` in ``u = a/τ`` (derived in
    theory/linear_contrastive.md from the distance-form InfoNCE of Jing et al. 2022,
    arXiv 2110.09348, Eq. 1, in the limit ``B → ∞``). Needs ``σ² > 0``: without
    augmentation the objective has no minimum (the embedding grows without bound).
    """
    if _concrete(cfg.aug_var) and np.any(np.asarray(cfg.aug_var) <= 0):
        raise ValueError(
            f"aug_var={cfg.aug_var}: InfoNCE has no finite optimum without "
            "augmentation (allowed: aug_var > 0)"
        )
    lam = _top_k(cfg)
    r = cfg.aug_var / (lam + cfg.aug_var)
    v = (jnp.sqrt(1 + 8 * r) - 1) / 2
    return cfg.temperature * (1 / v - 1)


def _vicreg_waterfill(cfg: Config):
    lam = _top_k(cfg)
    k = cfg.embed_dim
    s = lam + cfg.aug_var
    c = 2 * cfg.inv_weight * cfg.aug_var / s  # increasing in j
    target = cfg.gamma**2 - cfg.var_eps
    m = jnp.arange(1, k + 1)
    kappa_m = (4 * cfg.cov_weight * target + jnp.cumsum(c)) / m
    ok = kappa_m > c  # the top-m directions can all be active
    m_star = jnp.max(jnp.where(ok, m, 1))
    kappa = kappa_m[m_star - 1]
    a = jnp.maximum(kappa - c, 0.0) * k / (4 * cfg.cov_weight)
    return a, kappa, lam, s


def vicreg_hinge_active(cfg: Config) -> jax.Array:
    """True where the water-filling solution keeps every variance hinge at ``γ``:
    the marginal cost of trace ``κ`` is at most the hinge's marginal gain
    ``μ/(kγ)``. See theory/linear_contrastive.md."""
    _, kappa, _, _ = _vicreg_waterfill(cfg)
    return kappa <= cfg.var_weight / (cfg.embed_dim * cfg.gamma)


def vicreg_variance(cfg: Config) -> jax.Array:
    """``[k]`` eigenvalues of the view-embedding covariance at the population VICReg
    optimum with every variance hinge active (``diag A = γ² − ε``):
    ``a_i = (k/4ν) max(0, κ − 2λ_inv σ²/s_i)`` with ``κ`` set by ``Σ a_i = k(γ² − ε)``.

    Derived in theory/linear_contrastive.md from the VICReg loss (Bardes, Ponce, LeCun
    2022, arXiv 2105.04906, Eq. 1–6). Regime: needs ``vicreg_hinge_active``; a
    concrete config outside it raises ``ValueError``; under ``vmap`` the entries
    outside it are NaN ("no prediction", as ``compare`` reads them). Needs
    ``cov_weight > 0``.
    """
    if _concrete(cfg.cov_weight) and np.any(np.asarray(cfg.cov_weight) <= 0):
        raise ValueError(
            f"cov_weight={cfg.cov_weight}: the VICReg spectrum prediction needs "
            "cov_weight > 0 (allowed: (0, inf))"
        )
    a, kappa, _, _ = _vicreg_waterfill(cfg)
    active = kappa <= cfg.var_weight / (cfg.embed_dim * cfg.gamma)
    if _concrete(active) and not np.all(np.asarray(active)):
        raise ValueError(
            "VICReg spectrum: the variance hinge is not active at the optimum "
            f"(kappa={np.asarray(kappa)} > var_weight/(embed_dim*gamma)); the closed "
            "form covers only the active regime (raise var_weight or lower inv_weight)"
        )
    return jnp.where(active, a, jnp.nan)


def invariance_total_variance(cfg: Config, t) -> jax.Array:
    """``E tr(W_t C W_tᵀ) = k·init_scale²/d · tr(C) · ρ^t`` for the invariance loss.

    ``ρ = 1 − 2aq + a²q²(1 + (d+1)/B)`` with ``a = 2 lr λ_inv``, ``q = 2σ²``
    (minibatch SGD, exact: ``W_{t+1} = W_t(I − aS_t)`` with i.i.d. ``S_t``); for the
    population objective (``B = 0``) ``ρ = (1 − aq)²``. Derived in
    theory/linear_contrastive.md. ``[*t.shape]``.
    """
    a = 2 * cfg.lr * cfg.inv_weight
    q = 2 * cfg.aug_var
    if cfg.batch_size == 0:
        rho = (1 - a * q) ** 2
    else:
        rho = 1 - 2 * a * q + (a * q) ** 2 * (1 + (cfg.dim + 1) / cfg.batch_size)
    start = cfg.embed_dim * cfg.init_scale**2 / cfg.dim * jnp.sum(_lam(cfg))
    return start * rho ** jnp.asarray(np.asarray(t), dtype=jnp.result_type(float))


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """InfoNCE / VICReg (population objective): limits ``aug_spectrum`` and
    ``spectrum`` ``[k]`` (decreasing); ``t`` is not used. Invariance (any batch
    size): the trajectory ``total_variance`` ``[*t.shape]``; ``t=None``: its limit
    (0 when ``ρ < 1``, inf when ``ρ > 1``)."""
    if cfg.loss == "invariance":
        t = np.inf if t is None else t
        return {"total_variance": invariance_total_variance(cfg, t)}
    if cfg.batch_size != 0:
        raise ValueError(
            f"batch_size={cfg.batch_size}: the {cfg.loss} spectrum is predicted for "
            "the population objective (batch_size=0); minibatch runs differ by "
            "O(1/B) and O(lr) (see theory/linear_contrastive.md)"
        )
    a = infonce_variance(cfg) if cfg.loss == "infonce" else vicreg_variance(cfg)
    lam = _top_k(cfg)
    clean = a * lam / (lam + cfg.aug_var)
    return {"aug_spectrum": a, "spectrum": clean}
