"""Linear BYOL / SimSiam with a linear predictor, and DirectPred.

The setting of Tian, Chen, Ganguli 2021 (arXiv 2102.06810, Sec. 3): data
``x ~ N(0, I_d)`` (their isotropic assumption ``X = I``), two views
``x₁ = x + σ ε₁``, ``x₂ = x + σ ε₂`` with ``ε ~ N(0, I)`` (augmentation covariance
``X' = σ² I``), an online encoder ``W [d, d]``, a predictor ``W_p [d, d]`` and a target
encoder ``W_a`` that is an exponential moving average of ``W``:

  J = ½ E ‖W_p W x₁ − StopGrad(W_a x₂)‖²
  W_p ← W_p − lr (α_p ∂J/∂W_p + η W_p)        (learned predictor)
  W   ← W   − lr (∂J/∂W + η W)
  W_a ← W_a + ema (W − W_a)                    (ema = 1: SimSiam, W_a = W)

so that in continuous time ``t = lr · step`` this is their Eq. (2)–(4) with EMA rate
``β = ema / lr``. ``batch_size = 0`` uses the exact expected loss (population
gradient); ``batch_size = B`` samples B data points and their two views every step.

DirectPred (their Sec. 5): the predictor is not trained but set every step from a running
estimate ``F̂ ← ρ F̂ + (1 − ρ) F`` of the representation correlation ``F = W X Wᵀ``
(``X`` the clean-data correlation, estimated on the batch when ``batch_size > 0``):
``W_p = Û diag(√(c λ̂) + ε) Ûᵀ`` with ``F̂ = Û diag(λ̂) Ûᵀ``, ``c = dp_scale``,
``ρ = dp_rho``, ``ε = dp_eps``. The square root is the fixed-point relation
``p² = α_p s`` of the learned predictor, so ``dp_scale = α_p`` places DirectPred on
the learned predictor's invariant parabola (see theory/linear_byol.md).

Initialisation ``"aligned"``: ``W = U diag(√s₀ⱼ) Vᵀ``, ``W_p = U diag(p₀) Uᵀ``,
``W_a = W`` with random orthogonal ``U, V`` and ``s₀ⱼ = s0 · (d − j)/d``, ``j = 0..d−1``
— the aligned eigenmodes whose dynamics the theory module solves. ``"random"``:
Gaussian ``W`` (entries of variance ``s0/d``) and ``W_p`` (variance ``p0²/d``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range
from collapse_jax.metrics import spectral

__all__ = ["Config", "State", "init", "loss", "observe", "step"]


@struct.dataclass
class Config:
    """Linear BYOL hyperparameters. Sizes and code paths are static; floats sweep."""

    dim: int = struct.field(pytree_node=False, default=4)
    batch_size: int = struct.field(pytree_node=False, default=0)
    predictor: str = struct.field(pytree_node=False, default="learned")
    init: str = struct.field(pytree_node=False, default="aligned")
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.01
    alpha_p: float = 1.0
    ema: float = 1.0
    weight_decay: float = 0.0
    aug_var: float = 0.5
    p0: float = 0.3
    s0: float = 0.5
    dp_scale: float = 1.0
    dp_rho: float = 0.0
    dp_eps: float = 0.0

    def __post_init__(self):
        check_int("dim", self.dim, 1)
        check_int("batch_size", self.batch_size, 0)
        check_choice("predictor", self.predictor, ("learned", "directpred"))
        check_choice("init", self.init, ("aligned", "random"))
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("alpha_p", self.alpha_p, 0.0, low_open=True)
        check_range("ema", self.ema, 0.0, 1.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("aug_var", self.aug_var, 0.0)
        check_range("p0", self.p0, 0.0)
        check_range("s0", self.s0, 0.0, low_open=True)
        check_range("dp_scale", self.dp_scale, 0.0, low_open=True)
        check_range("dp_rho", self.dp_rho, 0.0, 1.0, high_open=True)
        check_range("dp_eps", self.dp_eps, 0.0)


class State(NamedTuple):
    W: jax.Array  # [d, d] online encoder
    Wp: jax.Array  # [d, d] predictor
    Wa: jax.Array  # [d, d] target encoder
    F_hat: jax.Array  # [d, d] running correlation estimate (DirectPred)
    key: jax.Array  # [2] uint32


def _orthogonal(key, d, dtype):
    Q, R = jnp.linalg.qr(cr.normal(key, (d, d), dtype))
    return Q * jnp.sign(jnp.diagonal(R))[None, :]


def init(key: jax.Array, cfg: Config) -> State:
    d, dtype = cfg.dim, jnp.dtype(cfg.dtype)
    key, ku, kv = jax.random.split(key, 3)
    if cfg.init == "aligned":
        U, V = _orthogonal(ku, d, dtype), _orthogonal(kv, d, dtype)
        s0 = cfg.s0 * (d - jnp.arange(d, dtype=dtype)) / d
        W = U @ (jnp.sqrt(s0)[:, None] * V.T)
        Wp = cfg.p0 * (U @ U.T)
    else:
        W = jnp.sqrt(cfg.s0 / d) * cr.normal(ku, (d, d), dtype)
        Wp = cfg.p0 / jnp.sqrt(d) * cr.normal(kv, (d, d), dtype)
    W, Wp = W.astype(dtype), Wp.astype(dtype)
    return State(W=W, Wp=Wp, Wa=W, F_hat=W @ W.T, key=key)


def loss(Wp, W, Wa, cfg: Config, batch=None) -> jax.Array:
    """``J`` with the target branch stopped. ``batch = (x₁, x₂)`` rows ``[B, d]``, or
    ``None`` for the exact expectation over ``x``, ``ε₁``, ``ε₂``."""
    Wa = jax.lax.stop_gradient(Wa)
    if batch is None:
        M = Wp @ W
        return 0.5 * (1 + cfg.aug_var) * (jnp.sum(M**2) + jnp.sum(Wa**2)) - jnp.sum(
            M * Wa
        )
    x1, x2 = batch
    diff = x1 @ (Wp @ W).T - x2 @ Wa.T
    return 0.5 * jnp.mean(jnp.sum(diff**2, axis=1))


def _batch(key, cfg: Config, dtype):
    kx, k1, k2 = jax.random.split(key, 3)
    shape = (cfg.batch_size, cfg.dim)
    x = cr.normal(kx, shape, dtype)
    sd = jnp.sqrt(cfg.aug_var).astype(dtype)
    x1 = x + sd * cr.normal(k1, shape, dtype)
    x2 = x + sd * cr.normal(k2, shape, dtype)
    return x, (x1, x2)


def _directpred(F_hat, cfg: Config):
    lam, U = jnp.linalg.eigh((F_hat + F_hat.T) / 2)
    p = jnp.sqrt(cfg.dp_scale * jnp.maximum(lam, 0.0)) + cfg.dp_eps
    return (U * p[None, :]) @ U.T


def step(state: State, cfg: Config) -> State:
    """One gradient step of ``W`` (and ``W_p``), then the EMA update of ``W_a``."""
    dtype = state.W.dtype
    key, sub = jax.random.split(state.key)
    if cfg.batch_size == 0:
        batch, F_now = None, state.W @ state.W.T
    else:
        x, batch = _batch(sub, cfg, dtype)
        Z = x @ state.W.T
        F_now = Z.T @ Z / cfg.batch_size
    F_hat = cfg.dp_rho * state.F_hat + (1 - cfg.dp_rho) * F_now
    Wp = _directpred(F_hat, cfg) if cfg.predictor == "directpred" else state.Wp
    g_p, g_w = jax.grad(loss, argnums=(0, 1))(Wp, state.W, state.Wa, cfg, batch)
    eta = cfg.weight_decay
    W = state.W - cfg.lr * (g_w + eta * state.W)
    if cfg.predictor == "learned":
        Wp = Wp - cfg.lr * (cfg.alpha_p * g_p + eta * Wp)
    Wa = state.Wa + cfg.ema * (W - state.Wa)
    cast = lambda a: a.astype(dtype)  # noqa: E731
    return State(W=cast(W), Wp=cast(Wp), Wa=cast(Wa), F_hat=cast(F_hat), key=key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Eigenmode metrics, ordered by decreasing mode strength ``s``.

    ``s [d]``: eigenvalues of ``F = W Wᵀ`` (the representation correlation, X = I);
    ``p [d]``: ``uⱼᵀ W_p uⱼ`` along the eigenvector ``uⱼ`` of ``F`` with eigenvalue
    ``sⱼ`` (the predictor eigenvalue of that mode once the eigenbases align);
    ``parabola_gap [d]``: ``sⱼ − pⱼ²/α_p``; ``alignment``: eigenbasis alignment of
    ``W_p`` with ``F`` (1 = commuting); ``effective_rank`` of the representation;
    ``target_gap``: ``‖W_a − W‖_F``; ``loss``: the expected loss ``J``.
    For DirectPred ``W_p`` is the predictor set from ``F̂`` updated with the population
    ``F`` (exactly the next step's predictor when ``batch_size = 0``).
    """
    F = state.W @ state.W.T
    s, U = jnp.linalg.eigh((F + F.T) / 2)
    s, U = s[::-1], U[:, ::-1]
    Wp = state.Wp
    if cfg.predictor == "directpred":
        Wp = _directpred(cfg.dp_rho * state.F_hat + (1 - cfg.dp_rho) * F, cfg)
    p = jnp.sum(U * (Wp @ U), axis=0)
    return {
        "s": s,
        "p": p,
        "parabola_gap": s - p**2 / cfg.alpha_p,
        "alignment": spectral.eigenbasis_alignment(Wp, F),
        "effective_rank": spectral.effective_rank_from_singular_values(
            jnp.sqrt(jnp.maximum(s, 0.0))
        ),
        "target_gap": jnp.sqrt(jnp.sum((state.Wa - state.W) ** 2)),
        "loss": loss(Wp, state.W, state.Wa, cfg),
    }
