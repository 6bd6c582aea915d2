"""Deep linear JEPA (self-distillation) vs MAE (reconstruction).

The setting of Littwin et al. 2024, "How JEPA avoids noisy features: the implicit bias
of deep linear self distillation networks" (arXiv 2407.03475, Sec. 3): a pair
``(x, y)`` with diagonal covariances, feature ``i`` having cross-covariance
``Σ_yx,i = λ_i`` and regression coefficient ``ρ_i = Σ_yx,i / Σ_xx,i`` (so
``Σ_xx,i = λ_i/ρ_i``). A deep linear encoder ``W = W_L ⋯ W_1`` (``W_l [d, d]``) and

  JEPA: ½ E ‖V W x − StopGrad(W y)‖²    (predictor V [d, d])
  MAE:  ½ E ‖D W x − y‖²                (decoder D [d, d])

trained by full-batch gradient descent on the exact (population) loss, step ``lr``
(time ``t = lr · step``). Initialisation is balanced and small:
``W_l = ε R_l R_{l−1}ᵀ`` with random orthogonal ``R_1..R_{L−1}`` and ``R_0 = R_L = I``
(so ``W = ε^L I`` is aligned with the features), and ``V = D = ε I``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "init", "loss", "observe", "step"]


@struct.dataclass
class Config:
    """Feature statistics and depth are static; ``lr`` and ``init_scale`` sweep."""

    lam: tuple[float, ...] = struct.field(pytree_node=False, default=(1.0, 1.0))
    rho: tuple[float, ...] = struct.field(pytree_node=False, default=(1.0, 0.5))
    depth: int = struct.field(pytree_node=False, default=2)
    objective: str = struct.field(pytree_node=False, default="jepa")
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.05
    init_scale: float = 0.1

    def __post_init__(self):
        for name in ("lam", "rho"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list) or len(value) == 0:
                raise ValueError(
                    f"{name}={value!r} must be a non-empty tuple of positive floats"
                )
            for i, v in enumerate(value):
                check_range(f"{name}[{i}]", v, 0.0, low_open=True)
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if len(self.lam) != len(self.rho):
            raise ValueError(
                f"rho has {len(self.rho)} entries; allowed: one per feature "
                f"(lam has {len(self.lam)})"
            )
        check_int("depth", self.depth, 1)
        check_choice("objective", self.objective, ("jepa", "mae"))
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("init_scale", self.init_scale, 0.0, low_open=True)

    @property
    def dim(self) -> int:
        return len(self.lam)


class State(NamedTuple):
    layers: jax.Array  # [L, d, d], W_1 first
    head: jax.Array  # [d, d]: predictor V (JEPA) or decoder D (MAE)


def _orthogonal(key, d, dtype):
    Q, R = jnp.linalg.qr(cr.normal(key, (d, d), dtype))
    return Q * jnp.sign(jnp.diagonal(R))[None, :]


def init(key: jax.Array, cfg: Config) -> State:
    d, L, dtype = cfg.dim, cfg.depth, jnp.dtype(cfg.dtype)
    eye = jnp.eye(d, dtype=dtype)
    inner = [_orthogonal(k, d, dtype) for k in jax.random.split(key, max(L - 1, 1))]
    R = [eye] + inner[: L - 1] + [eye]
    layers = jnp.stack([cfg.init_scale * R[l + 1] @ R[l].T for l in range(L)])
    return State(layers=layers.astype(dtype), head=(cfg.init_scale * eye).astype(dtype))


def _encoder(layers):
    W = layers[0]
    for l in range(1, layers.shape[0]):
        W = layers[l] @ W
    return W


def loss(layers, head, cfg: Config) -> jax.Array:
    """Exact population loss (JEPA: target branch stopped; constants dropped)."""
    lam = jnp.asarray(cfg.lam, layers.dtype)
    rho = jnp.asarray(cfg.rho, layers.dtype)
    sxx = lam / rho
    W = _encoder(layers)
    M = head @ W
    fit = 0.5 * jnp.sum(M**2 * sxx[None, :])
    if cfg.objective == "jepa":
        target = jax.lax.stop_gradient(W)
        return fit - jnp.sum(M * target * lam[None, :])
    return fit - jnp.sum(jnp.diagonal(M) * lam)


def step(state: State, cfg: Config) -> State:
    """One gradient-descent step on every layer and the head."""
    g_layers, g_head = jax.grad(loss, argnums=(0, 1))(state.layers, state.head, cfg)
    return State(
        layers=state.layers - cfg.lr * g_layers, head=state.head - cfg.lr * g_head
    )


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Per-feature metrics, ``[d]`` each.

    ``encoder``: ``‖W e_i‖``, the end-to-end encoder's gain on feature ``i``;
    ``head``: ``e_iᵀ V e_i`` (JEPA predictor) or ``e_iᵀ D e_i`` (MAE decoder);
    ``readout``: ``e_iᵀ (head · W) e_i`` — for MAE the learned regression coefficient,
    for JEPA the predicted target ``v_i w_i``; ``loss`` (scalar).
    """
    W = _encoder(state.layers)
    return {
        "encoder": jnp.sqrt(jnp.sum(W**2, axis=0)),
        "head": jnp.diagonal(state.head),
        "readout": jnp.diagonal(state.head @ W),
        "loss": loss(state.layers, state.head, cfg),
    }
