"""Global minimisers of full-batch SupCon on free unit embeddings.

Every global minimiser collapses each class to one unit vector ``μ_k`` (d ≥ K), so
the loss becomes a function of the class-mean Gram ``C`` (``C_kk = 1``) alone,

  f(C) = (1/N) Σ_k n_k log( n_k − 1 + Σ_{l≠k} n_l exp((C_kl − 1)/τ) ),

convex in ``C`` and strictly convex when every ``n_k ≥ 2``; it is minimised over
``C ⪰ 0`` (no ReLU) or over ``C ⪰ 0, C ≥ 0`` entrywise (ReLU). Derivation in
theory/supcon.md. Results:

- ReLU, any class sizes: ``C = I`` (orthogonal frame), loss
  ``(1/N) Σ_k n_k log(n_k − 1 + (N − n_k) e^{−1/τ})``
  (Kini et al. 2023, arXiv 2306.07960, Thm 1).
- No ReLU, balanced: simplex ETF, ``C_kl = −1/(K−1)``, loss
  ``log(n − 1 + (N − n) e^{−K/((K−1)τ)})`` (Graf et al. 2021, arXiv 2102.08817,
  their supervised-contrastive minimiser; re-derived in the note).
- No ReLU, imbalanced: the unique minimiser of ``f`` over the elliptope, computed
  here by Riemannian gradient descent on ``K`` unit vectors of ``R^{K−1}``
  (``optimal_gram``) and certified by the KKT conditions of the convex problem
  (``kkt_residuals``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models.supcon import Config

__all__ = [
    "collapsed_loss",
    "etf_gram",
    "etf_loss",
    "kkt_residuals",
    "optimal_gram",
    "orthogonal_frame_loss",
    "pair_forces",
    "predict",
]

_ITERS = 6000  # Riemannian GD iterations of the reduced K-point problem
_STEP = 0.1  # step in units of the inverse curvature at the ETF (see optimal_gram)


def _dtype(cfg: Config):
    return jnp.dtype(cfg.dtype)


def _counts(cfg: Config) -> jax.Array:
    return jnp.asarray(cfg.counts, _dtype(cfg))


def _balanced(cfg: Config) -> bool:
    return len(set(cfg.counts)) == 1


def collapsed_loss(C: jax.Array, cfg: Config) -> jax.Array:
    """SupCon loss of a collapsed configuration with class-mean Gram ``C [K, K]``
    (unit diagonal): ``f(C)`` above. Derived in theory/supcon.md (Sec. 2)."""
    n = _counts(cfg)
    off = ~np.eye(cfg.num_classes, dtype=bool)
    E = jnp.where(off, jnp.exp((C - 1.0) / cfg.temperature), 0.0)
    Z = n - 1.0 + E @ n
    return jnp.sum(n * jnp.log(Z)) / jnp.sum(n)


def orthogonal_frame_loss(cfg: Config) -> jax.Array:
    """``(1/N) Σ_k n_k log(n_k − 1 + (N − n_k) e^{−1/τ})``: the minimum with ReLU, any
    class sizes. Kini et al. 2023 (arXiv 2306.07960), Thm 1 (per-anchor average)."""
    n = _counts(cfg)
    N = jnp.sum(n)
    return jnp.sum(n * jnp.log(n - 1.0 + (N - n) * jnp.exp(-1.0 / cfg.temperature))) / N


def etf_loss(cfg: Config) -> jax.Array:
    """``(1/N) Σ_k n_k log(n_k − 1 + (N − n_k) e^{−K/((K−1)τ)})``: the loss at the
    collapsed simplex ETF; the minimum without ReLU when classes are balanced.
    Graf et al. 2021 (arXiv 2102.08817); lower-bound proof re-derived in
    theory/supcon.md (Sec. 3)."""
    n = _counts(cfg)
    N = jnp.sum(n)
    K = cfg.num_classes
    decay = jnp.exp(-K / ((K - 1) * cfg.temperature))
    return jnp.sum(n * jnp.log(n - 1.0 + (N - n) * decay)) / N


def etf_gram(cfg: Config) -> jax.Array:
    """``[K, K]`` Gram of a unit simplex ETF: 1 on the diagonal, ``−1/(K−1)`` off it."""
    K = cfg.num_classes
    eye = jnp.eye(K, dtype=_dtype(cfg))
    return (K * eye - 1.0) / (K - 1)


def _sym_grad(C, cfg):
    g = jax.grad(collapsed_loss)(C, cfg)
    return 0.5 * (g + g.T)


def pair_forces(C: jax.Array, cfg: Config) -> jax.Array:
    """``[K, K]`` gradient of ``f`` over symmetric ``C`` (zero diagonal): entry ``kl``
    is ``n_k n_l e^{(C_kl−1)/τ} (1/Z_k + 1/Z_l) / (2Nτ)``, the push apart of classes
    ``k`` and ``l``. At a rank-``(K−1)`` optimum it is rank one off the diagonal,
    ``s w_k w_l`` with ``C w = 0`` (theory/supcon.md, Sec. 3)."""
    return _sym_grad(C, cfg)


def kkt_residuals(C: jax.Array, cfg: Config) -> tuple[jax.Array, jax.Array]:
    """Optimality certificate of ``C`` for ``min f(C)`` s.t. ``C ⪰ 0``, ``C_kk = 1``.

    With ``S = ∇f(C) + diag(ν)``, ``ν_k = −(∇f(C) C)_kk``, ``C`` is optimal iff
    ``S ⪰ 0`` and ``S C = 0``. Returns ``(max(0, −λ_min(S)), ‖S C‖_F)`` relative to
    ``‖∇f(C)‖_F`` (so they do not scale with ``e^{−1/τ}``), both 0 at the minimiser
    (theory/supcon.md, Sec. 3)."""
    G = _sym_grad(C, cfg)
    nu = -jnp.diagonal(G @ C)
    S = G + jnp.diag(nu)
    lam_min = jnp.linalg.eigvalsh(S)[0]
    scale = jnp.linalg.norm(G)
    return jnp.maximum(-lam_min, 0.0) / scale, jnp.linalg.norm(S @ C) / scale


def _reduced_solve(cfg: Config) -> jax.Array:
    K = cfg.num_classes
    dtype = _dtype(cfg)
    tau = jnp.asarray(cfg.temperature, dtype)
    n = _counts(cfg)
    N = jnp.sum(n)
    # Precondition by the curvature of f near the ETF: its forces scale like
    # n̄² e^{−K/((K−1)τ)} / (N Z̄ τ²) for small τ and like 1/τ for large τ.
    n_bar = N / K
    decay = jnp.exp(-K / ((K - 1) * tau))
    z_bar = n_bar - 1.0 + (N - n_bar) * decay
    step = _STEP * tau * jnp.minimum(tau, 1.0) * N * z_bar / (n_bar**2 * decay)

    def unit(V):
        return V / jnp.linalg.norm(V, axis=1, keepdims=True)

    def objective(V):
        U = unit(V)
        return collapsed_loss(U @ U.T, cfg)

    def body(_, V):
        return unit(V - step * jax.grad(objective)(V))

    # The optimum is singular (a full-rank C would need ∇f = 0 off the diagonal, but
    # every pair force is positive), so K − 1 dimensions suffice; in them GD converges
    # linearly, where a rank-K factor would creep towards the boundary. Start at the
    # ETF, which has the symmetry of the unique optimum under swaps of equal classes.
    lam, Q = jnp.linalg.eigh(etf_gram(cfg))
    V0 = Q[:, 1:] * jnp.sqrt(lam[1:])[None, :]
    U = jax.lax.fori_loop(0, _ITERS, body, V0)
    C = U @ U.T
    return 0.5 * (C + C.T)


def optimal_gram(cfg: Config) -> jax.Array:
    """``[K, K]`` Gram of the class means at the global minimiser.

    ReLU: ``I`` for any class sizes (Kini et al. 2023, arXiv 2306.07960, Thm 1).
    No ReLU, balanced: the simplex ETF (Graf et al. 2021, arXiv 2102.08817).
    No ReLU, imbalanced: ``argmin f`` over the elliptope, solved numerically (our
    reduction, theory/supcon.md); ``kkt_residuals`` certifies it."""
    if cfg.relu:
        return jnp.eye(cfg.num_classes, dtype=_dtype(cfg))
    if _balanced(cfg):
        return etf_gram(cfg)
    return _reduced_solve(cfg)


def _gram_distance(C, target):
    C = C / jnp.linalg.norm(C)
    return jnp.linalg.norm(C - target / jnp.linalg.norm(target))


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Limits (t → ∞) of ``supcon.observe`` metrics at the global minimiser.

    Args:
      cfg: a supcon Config.
      t: ignored; only the limit is known, compared at the last record.

    Returns:
      Metric name -> scalar: the off-diagonal mean/min/max of the class-mean Gram,
      ``within_cos = 1``, ``nc1 = 0``, ``grad_norm = 0``, the NC2 distances of the
      class means to an ETF and to an orthogonal frame, and the minimum loss.
    """
    K = cfg.num_classes
    C = optimal_gram(cfg)
    off = ~np.eye(K, dtype=bool)
    dtype = _dtype(cfg)
    if cfg.relu:
        value = orthogonal_frame_loss(cfg)
    elif _balanced(cfg):
        value = etf_loss(cfg)
    else:
        value = collapsed_loss(C, cfg)
    return {
        "class_cos_mean": jnp.sum(jnp.where(off, C, 0.0)) / off.sum(),
        "class_cos_min": jnp.min(jnp.where(off, C, jnp.inf)),
        "class_cos_max": jnp.max(jnp.where(off, C, -jnp.inf)),
        "within_cos": jnp.ones((), dtype),
        "nc1": jnp.zeros((), dtype),
        "etf_distance": _gram_distance(C, etf_gram(cfg)),
        "orth_distance": _gram_distance(C, jnp.eye(K, dtype=dtype)),
        "loss": value,
        "grad_norm": jnp.zeros((), dtype),
    }
