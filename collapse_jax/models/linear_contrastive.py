"""A linear encoder trained by InfoNCE, VICReg or plain invariance.

Data ``x ~ N(0, C)`` with ``C = diag(λ)``, ``λ_j = (j+1)^(−data_decay)``; two views
``x₁ = x + σε₁``, ``x₂ = x + σε₂`` (additive augmentation of variance ``σ² = aug_var``);
embeddings ``z = W x`` with ``W [k, d]``. Every step draws ``B`` data points and their
views and takes one SGD step of size ``lr``.

Losses over a batch ``Z = [z₁..z_B]``, ``Z' = [z'₁..z'_B]``:

- ``"infonce"`` (the distance form analysed by Jing et al. 2022, arXiv 2110.09348,
  Sec. 4): ``L = −(1/B) Σ_i log softmax_j(−‖z_i − z'_j‖²/(2τ))_i``.
- ``"vicreg"`` (Bardes, Ponce, LeCun 2022, arXiv 2105.04906, Eq. 1–6):
  ``λ_inv s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]`` with
  ``s = (1/B) Σ_b ‖z_b − z'_b‖²``, ``v = (1/k) Σ_j max(0, γ − √(Var(z^j) + ε))``,
  ``c = (1/k) Σ_{i≠j} Cov(Z)_ij²`` (unbiased batch variance and covariance).
- ``"invariance"``: ``λ_inv s(Z, Z')`` alone — nothing prevents collapse.

``batch_size = 0`` trains on the population (``B → ∞``) objective instead, exactly, with
``A = W(C + σ²I)Wᵀ`` the view-embedding covariance: invariance ``s = 2σ²‖W‖²_F``;
VICReg with ``Var(z^j) = A_jj`` and ``Cov = A``; and InfoNCE with the Gaussian
expectation of the log-partition (``log(B−1)`` dropped, see theory/linear_contrastive.md)

  L_∞(W) = σ²‖W‖²_F / τ − ½ log det(I + A/τ) − ½ tr(A (τI + A)⁻¹).

``W`` starts Gaussian with entries of standard deviation ``init_scale/√d``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range
from collapse_jax.metrics import spectral

__all__ = [
    "Config",
    "State",
    "data_variances",
    "init",
    "loss",
    "observe",
    "population_loss",
    "step",
]


@struct.dataclass
class Config:
    """Hyperparameters. Sizes and the loss are static; floats can be swept."""

    dim: int = struct.field(pytree_node=False, default=4)
    embed_dim: int = struct.field(pytree_node=False, default=4)
    batch_size: int = struct.field(pytree_node=False, default=128)
    loss: str = struct.field(pytree_node=False, default="infonce")
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.05
    aug_var: float = 0.5
    data_decay: float = 1.0
    temperature: float = 1.0
    inv_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    gamma: float = 1.0
    var_eps: float = 1e-4
    init_scale: float = 0.5

    def __post_init__(self):
        check_int("dim", self.dim, 1)
        check_int("embed_dim", self.embed_dim, 1)
        if self.batch_size == 1:
            raise ValueError(
                "batch_size=1 is out of range: allowed 0 (population) or >= 2"
            )
        check_int("batch_size", self.batch_size, 0)
        check_choice("loss", self.loss, ("infonce", "vicreg", "invariance"))
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("aug_var", self.aug_var, 0.0)
        check_range("data_decay", self.data_decay, 0.0)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("inv_weight", self.inv_weight, 0.0)
        check_range("var_weight", self.var_weight, 0.0)
        check_range("cov_weight", self.cov_weight, 0.0)
        check_range("gamma", self.gamma, 0.0, low_open=True)
        check_range("var_eps", self.var_eps, 0.0)
        check_range("init_scale", self.init_scale, 0.0, low_open=True)


class State(NamedTuple):
    W: jax.Array  # [k, d]
    key: jax.Array  # [2] uint32


def data_variances(cfg: Config, dtype=None) -> jax.Array:
    """``λ_j = (j+1)^(−data_decay)``, ``[d]``: the eigenvalues of the data covariance."""
    j = jnp.arange(cfg.dim, dtype=dtype or jnp.dtype(cfg.dtype))
    return (j + 1) ** (-cfg.data_decay)


def init(key: jax.Array, cfg: Config) -> State:
    key, sub = jax.random.split(key)
    dtype = jnp.dtype(cfg.dtype)
    W = (
        cfg.init_scale
        / jnp.sqrt(cfg.dim)
        * cr.normal(sub, (cfg.embed_dim, cfg.dim), dtype)
    )
    return State(W=W.astype(dtype), key=key)


def _variance_term(Z, cfg: Config):
    std = jnp.sqrt(jnp.var(Z, axis=0, ddof=1) + cfg.var_eps)
    return jnp.mean(jnp.maximum(cfg.gamma - std, 0.0))


def _covariance_term(Z, cfg: Config):
    Zc = Z - Z.mean(axis=0, keepdims=True)
    cov = Zc.T @ Zc / (Z.shape[0] - 1)
    off = cov - jnp.diag(jnp.diagonal(cov))
    return jnp.sum(off**2) / cfg.embed_dim


def loss(W: jax.Array, x1: jax.Array, x2: jax.Array, cfg: Config) -> jax.Array:
    """The batch loss for views ``x1, x2 [B, d]``."""
    Z, Zp = x1 @ W.T, x2 @ W.T
    inv = jnp.mean(jnp.sum((Z - Zp) ** 2, axis=1))
    if cfg.loss == "invariance":
        return cfg.inv_weight * inv
    if cfg.loss == "vicreg":
        var = _variance_term(Z, cfg) + _variance_term(Zp, cfg)
        cov = _covariance_term(Z, cfg) + _covariance_term(Zp, cfg)
        return cfg.inv_weight * inv + cfg.var_weight * var + cfg.cov_weight * cov
    sq = jnp.sum(Z**2, axis=1)[:, None] + jnp.sum(Zp**2, axis=1)[None, :] - 2 * Z @ Zp.T
    logits = -sq / (2 * cfg.temperature)
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))


def population_loss(W: jax.Array, cfg: Config) -> jax.Array:
    """The ``B → ∞`` objective (see the module docstring)."""
    lam = data_variances(cfg, W.dtype)
    A = (W * (lam + cfg.aug_var)[None, :]) @ W.T
    inv = 2 * cfg.aug_var * jnp.sum(W**2)
    if cfg.loss == "invariance":
        return cfg.inv_weight * inv
    if cfg.loss == "vicreg":
        std = jnp.sqrt(jnp.diagonal(A) + cfg.var_eps)
        var = 2 * jnp.mean(jnp.maximum(cfg.gamma - std, 0.0))
        off = A - jnp.diag(jnp.diagonal(A))
        cov = 2 * jnp.sum(off**2) / cfg.embed_dim
        return cfg.inv_weight * inv + cfg.var_weight * var + cfg.cov_weight * cov
    k, tau = cfg.embed_dim, cfg.temperature
    eye = jnp.eye(k, dtype=W.dtype)
    _, logdet = jnp.linalg.slogdet(eye + A / tau)
    return (
        cfg.aug_var * jnp.sum(W**2) / tau
        - 0.5 * logdet
        - 0.5 * jnp.trace(jnp.linalg.solve(tau * eye + A, A))
    )


def _views(key, cfg: Config, dtype):
    kx, k1, k2 = jax.random.split(key, 3)
    shape = (cfg.batch_size, cfg.dim)
    x = cr.normal(kx, shape, dtype) * jnp.sqrt(data_variances(cfg, dtype))[None, :]
    sd = jnp.sqrt(cfg.aug_var).astype(dtype)
    return (
        x + sd * cr.normal(k1, shape, dtype),
        x + sd * cr.normal(k2, shape, dtype),
    )


def step(state: State, cfg: Config) -> State:
    """One SGD step on a fresh batch of views (GD on ``L_∞`` when batch_size = 0)."""
    key, sub = jax.random.split(state.key)
    if cfg.batch_size == 0:
        g = jax.grad(population_loss)(state.W, cfg)
    else:
        x1, x2 = _views(sub, cfg, state.W.dtype)
        g = jax.grad(loss)(state.W, x1, x2, cfg)
    return State(W=(state.W - cfg.lr * g).astype(state.W.dtype), key=key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Population embedding spectra (exact, no sampling).

    ``spectrum [k]``: eigenvalues of the clean-embedding covariance ``W C Wᵀ``,
    decreasing; ``aug_spectrum [k]``: eigenvalues of the view-embedding covariance
    ``W (C + σ²I) Wᵀ``; ``effective_rank`` and ``rankme`` of the clean embedding
    (singular values ``√spectrum``); ``total_variance = tr(W C Wᵀ)``;
    ``invariance = E‖z − z'‖² = 2σ² ‖W‖²_F``.
    """
    W = state.W
    lam = data_variances(cfg, W.dtype)
    clean = (W * lam[None, :]) @ W.T
    aug = clean + cfg.aug_var * (W @ W.T)
    spec = jnp.linalg.eigvalsh(clean)[::-1]
    Z = W.T * jnp.sqrt(lam)[:, None]  # [d, k]: Zᵀ Z = W C Wᵀ
    return {
        "spectrum": spec,
        "aug_spectrum": jnp.linalg.eigvalsh(aug)[::-1],
        "effective_rank": spectral.effective_rank(Z),
        "rankme": spectral.rankme(Z),
        "total_variance": jnp.trace(clean),
        "invariance": 2 * cfg.aug_var * jnp.sum(W**2),
    }
