"""The global minimiser of the linear (conditional) β-VAE, latent by latent.

With ``c = βσ²`` and ``λ_1 ≥ … ≥ λ_D`` the eigenvalues of the covariance the latents
model (``Cov(x)``, or ``Cov(x | y)`` for the conditional VAE), the ``k`` latents take
the top ``k`` eigen-directions and, writing ``u_i = ‖w_i‖² + c``, each contributes
``(β/2)(λ_i/u_i + log(u_i/c))`` to the loss, minimised at ``u_i = max(λ_i, c)``:

  ‖w_i‖² = max(0, λ_i − βσ²),   s_i = βσ²/u_i,   KL_i = ½ log(u_i/(βσ²)) (= 0 collapsed)

so latent ``i`` collapses (``q(z_i|x) = p(z_i)``) exactly when ``λ_i ≤ βσ²`` (Lucas et
al. 2019, arXiv 1911.02469; Wang & Ziyin 2022, arXiv 2205.04009). An inverse-
Lipschitz decoder (``σ_min(W) ≥ L``) clamps ``u_i ≥ L² + c``: no latent collapses.
With learned ``σ²`` and ``β = 1`` the minimiser is probabilistic PCA (Tipping & Bishop
1999): ``σ²`` = the mean of the discarded eigenvalues. Derivations, including the ones
of our own, in theory/linear_vae.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from collapse_jax.models.linear_vae import Config

__all__ = [
    "latent_eigenvalues",
    "learned_sigma2",
    "optimum",
    "ppca_log_likelihood",
    "predict",
]


def latent_eigenvalues(cfg: Config) -> jax.Array:
    """``[D]`` eigenvalues of ``Cov(x | y)`` of the data model, descending.

    ``Cov(x_j, y_j) = ρ√λ_j`` and ``Var(y_j) = 1`` give ``λ_j (1 − ρ²)`` for
    ``j < D_y`` and ``λ_j`` otherwise (Dang et al. 2023, arXiv 2306.05023: the
    CVAE's latents model what the condition does not explain)."""
    lam = jnp.asarray(cfg.eigenvalues)
    j = jnp.arange(cfg.data_dim)
    rho2 = jnp.asarray(cfg.correlation) ** 2
    lam = jnp.where(j < cfg.condition_dim, lam * (1 - rho2), lam)
    return jnp.sort(lam)[::-1]


def learned_sigma2(eigs: jax.Array, beta, latent_dim: int) -> jax.Array:
    """The minimising ``σ²`` when it is learned, for descending ``eigs [D]``.

    With ``m`` active latents the loss is stationary at
    ``σ²_m = Σ_{i>m} λ_i / (D − mβ)``; ``σ²_m`` is a candidate when ``m`` latents are
    indeed active there (``λ_m > βσ²_m ≥ λ_{m+1}``, the second only for ``m < k``), and
    the global minimiser is the candidate of least loss (theory/linear_vae.md; ``β = 1``,
    ``m = k``: the mean of the discarded eigenvalues, pPCA)."""
    D = eigs.shape[0]
    m = jnp.arange(latent_dim + 1)
    tail = jnp.cumsum(eigs[::-1])[::-1]  # tail[i] = Σ_{j ≥ i} λ_j
    tail = jnp.concatenate([tail, jnp.zeros((1,), eigs.dtype)])
    denom = D - m * beta
    s2 = jnp.where(denom > 0, tail[m] / jnp.where(denom > 0, denom, 1.0), jnp.inf)
    lam_pad = jnp.concatenate([jnp.full((1,), jnp.inf, eigs.dtype), eigs])
    above = lam_pad[m] > beta * s2  # λ_m > βσ² (vacuous for m = 0)
    below = jnp.where(m < latent_dim, beta * s2 >= lam_pad[m + 1], True)
    ok = above & below & (s2 > 0) & jnp.isfinite(s2)
    losses = jax.vmap(lambda v: _parts(eigs, beta, v, 0.0, latent_dim)["loss"])(
        jnp.where(ok, s2, 1.0)
    )
    return s2[jnp.argmin(jnp.where(ok, losses, jnp.inf))]


def _parts(eigs, beta, sigma2, lipschitz, latent_dim):
    D, k = eigs.shape[0], latent_dim
    c = beta * sigma2
    top, rest = eigs[:k], eigs[k:]
    u = jnp.maximum(top, c + lipschitz**2)
    w2 = u - c
    s = c / u
    gain = jnp.sqrt(w2) / u  # encoder gain on the eigen-direction
    kl = 0.5 * (s + gain**2 * top - 1.0 - jnp.log(s))
    recon = (top * (c / u) ** 2 + s * w2) / (2 * sigma2)  # per latent
    base = 0.5 * D * jnp.log(2 * jnp.pi * sigma2) + jnp.sum(rest) / (2 * sigma2)
    return {
        "kl": kl,
        "decoder_norms": jnp.sqrt(w2),
        "encoder_variances": s,
        "loss": base + jnp.sum(recon + beta * kl),
        "elbo": -(base + jnp.sum(recon + kl)),
    }


def optimum(eigs, beta, sigma2, *, latent_dim: int, lipschitz=0.0, learn=False):
    """The minimiser's metrics for descending covariance eigenvalues ``eigs [D]``.

    Returns ``kl``, ``decoder_norms`` (descending) and ``encoder_variances`` (ascending),
    each ``[k]``; ``active`` (latents with ``λ_i > βσ²``, every one under an
    inverse-Lipschitz floor ``> 0``); ``sigma2``; ``loss`` (β-weighted) and ``elbo``
    (β = 1) at the minimiser. ``learn``: ``σ²`` is trained (``learned_sigma2``; only
    without the Lipschitz floor). Lucas et al. 2019 (arXiv 1911.02469);
    constrained and general-β forms derived in theory/linear_vae.md."""
    eigs = jnp.asarray(eigs)
    if learn:
        if not isinstance(lipschitz, jax.core.Tracer) and float(lipschitz) != 0.0:
            raise ValueError(
                "lipschitz > 0 with a learned sigma2 has no closed-form minimiser here: "
                "allowed lipschitz=0 when learn_sigma2=True"
            )
        sigma2 = learned_sigma2(eigs, beta, latent_dim)
    out = _parts(eigs, beta, sigma2, lipschitz, latent_dim)
    floor = jnp.asarray(lipschitz) > 0
    live = eigs[:latent_dim] > beta * sigma2
    out["active"] = jnp.where(floor, latent_dim, jnp.sum(live)).astype(eigs.dtype)
    out["sigma2"] = jnp.asarray(sigma2, eigs.dtype)
    return out


def ppca_log_likelihood(eigs, latent_dim: int) -> jax.Array:
    """Maximum pPCA log-likelihood per sample, ``−½[D log 2π + Σ_{i≤k} log λ_i +
    (D − k) log σ²_ML + D]``, ``σ²_ML`` the mean of the ``D − k`` smallest eigenvalues.
    Tipping & Bishop 1999 (J. R. Stat. Soc. B 61:611), Eq. 7 with Eqs. 15–16."""
    eigs = jnp.asarray(eigs)
    D, k = eigs.shape[0], latent_dim
    s2 = jnp.mean(eigs[k:])
    return -0.5 * (
        D * jnp.log(2 * jnp.pi) + jnp.sum(jnp.log(eigs[:k])) + (D - k) * jnp.log(s2) + D
    )


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Limits (t → ∞) of ``linear_vae.observe`` metrics at the population minimiser.

    ``t`` is ignored: the theory gives the limit, compared at the last record. For
    ``samples > 0`` this is the ``N → ∞`` limit; the minimiser of the finite sample is
    ``optimum`` of the run's recorded ``latent_eigs``."""
    lipschitz = cfg.lipschitz if cfg.decoder == "inverse_lipschitz" else 0.0
    out = optimum(
        latent_eigenvalues(cfg),
        jnp.asarray(cfg.beta),
        jnp.asarray(cfg.sigma2),
        latent_dim=cfg.latent_dim,
        lipschitz=lipschitz,
        learn=cfg.learn_sigma2,
    )
    out["latent_eigs"] = latent_eigenvalues(cfg)
    out["grad_norm"] = jnp.zeros_like(out["loss"])
    return out
