"""Deep linear network W_L ⋯ W_1 trained by full-batch gradient descent on a linear teacher.

Population (full-batch) squared loss of Saxe, McClelland & Ganguli 2014 (arXiv 1312.6120):

  loss(W) = 1/2 tr(W Σ11 Wᵀ) − tr(Σ31ᵀ W) + 1/2 Σ_α s_α²/λ_α,   W = W_L ⋯ W_1,

with input covariance Σ11 and input–output correlation Σ31 = U S Vᵀ. The teacher's
singular vectors are the first M standard basis vectors (U, V = identity columns), so mode
α's strength is the diagonal entry W[α, α]. Σ11 is the identity ("whitened") or has
eigenvalue λ_α along v_α and 1 elsewhere ("correlated", ``input_eigs``); the constant
makes the minimum 0 at W* = Σ31 Σ11⁻¹ (mode strengths s_α/λ_α).

One ``step`` is W_l ← W_l − lr ∂loss/∂W_l for every layer, i.e. an Euler step of the
gradient flow τ dW_l/dt = −∂loss/∂W_l with τ = 1 and time t = lr · step.

Initialisations:
  balanced: W_1 = a₀ R_1 Vᵀ, W_l = a₀ R_l R_{l−1}ᵀ, W_L = a₀ U R_{L−1}ᵀ with random
    orthonormal R_l (``[hidden, M]``): every mode starts at strength a₀^L and the layers
    stay balanced and decoupled under GD (Saxe et al. Sec. 3).
  random: every entry i.i.d. N(0, init_scale²).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "init", "loss", "observe", "step"]


@struct.dataclass
class Config:
    """Deep linear network hyperparameters; sizes, teacher and init kind are static.

    ``depth`` counts weight matrices (L ≥ 2). ``init_scale`` is the per-layer mode
    strength a₀ for a balanced init (each mode starts at a₀^L) and the entry standard
    deviation for a random init.
    """

    depth: int = struct.field(pytree_node=False, default=2)
    in_dim: int = struct.field(pytree_node=False, default=4)
    hidden: int = struct.field(pytree_node=False, default=8)
    out_dim: int = struct.field(pytree_node=False, default=4)
    singular_values: tuple[float, ...] = struct.field(
        pytree_node=False, default=(3.0, 2.0, 1.0)
    )
    input_eigs: tuple[float, ...] | None = struct.field(pytree_node=False, default=None)
    init: str = struct.field(pytree_node=False, default="balanced")
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.01
    init_scale: float = 0.05

    def __post_init__(self):
        check_int("depth", self.depth, 2)
        check_int("in_dim", self.in_dim, 1)
        check_int("hidden", self.hidden, 1)
        check_int("out_dim", self.out_dim, 1)
        if (
            not isinstance(self.singular_values, tuple | list)
            or not self.singular_values
        ):
            raise ValueError(
                f"singular_values={self.singular_values!r}: allowed a non-empty tuple "
                "of positive floats"
            )
        object.__setattr__(
            self, "singular_values", tuple(float(s) for s in self.singular_values)
        )
        modes = len(self.singular_values)
        limit = min(self.in_dim, self.out_dim, self.hidden)
        if modes > limit:
            raise ValueError(
                f"singular_values has {modes} modes; allowed at most "
                f"min(in_dim, out_dim, hidden) = {limit}"
            )
        for a, s in enumerate(self.singular_values):
            check_range(f"singular_values[{a}]", s, 0.0, low_open=True)
        if self.input_eigs is not None:
            if (
                not isinstance(self.input_eigs, tuple | list)
                or len(self.input_eigs) != modes
            ):
                raise ValueError(
                    f"input_eigs={self.input_eigs!r}: allowed None (whitened) or one "
                    f"positive eigenvalue per mode ({modes})"
                )
            object.__setattr__(
                self, "input_eigs", tuple(float(x) for x in self.input_eigs)
            )
            for a, x in enumerate(self.input_eigs):
                check_range(f"input_eigs[{a}]", x, 0.0, low_open=True)
        check_choice("init", self.init, ("balanced", "random"))
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("init_scale", self.init_scale, 0.0, low_open=True)

    @property
    def num_modes(self) -> int:
        return len(self.singular_values)

    @property
    def eigs(self) -> np.ndarray:
        """``[M]`` input variance λ_α along each teacher input direction."""
        if self.input_eigs is None:
            return np.ones(self.num_modes)
        return np.asarray(self.input_eigs)


class State(NamedTuple):
    weights: tuple[jax.Array, ...]  # W_1 [hidden, in], ..., W_L [out, hidden]


def _teacher(cfg: Config, dtype) -> tuple[jax.Array, jax.Array]:
    """Σ31 ``[out, in]`` and Σ11 ``[in, in]``."""
    M = cfg.num_modes
    s = np.zeros((cfg.out_dim, cfg.in_dim))
    s[np.arange(M), np.arange(M)] = cfg.singular_values
    lam = np.ones(cfg.in_dim)
    lam[:M] = cfg.eigs
    return jnp.asarray(s, dtype), jnp.asarray(np.diag(lam), dtype)


def _product(weights) -> jax.Array:
    W = weights[0]
    for A in weights[1:]:
        W = A @ W
    return W


def _orthonormal(key, n: int, k: int, dtype) -> jax.Array:
    """``[n, k]`` with orthonormal columns (QR of a Gaussian, signs fixed)."""
    q, r = jnp.linalg.qr(cr.normal(key, (n, k), dtype))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def init(key: jax.Array, cfg: Config) -> State:
    """Balanced mode-aligned or i.i.d. Gaussian weights (see the module docstring)."""
    dtype = jnp.dtype(cfg.dtype)
    L, M, h = cfg.depth, cfg.num_modes, cfg.hidden
    dims = [cfg.in_dim] + [h] * (L - 1) + [cfg.out_dim]
    keys = jax.random.split(key, L)
    scale = jnp.asarray(cfg.init_scale, dtype)
    if cfg.init == "random":
        weights = tuple(
            scale * cr.normal(keys[l], (dims[l + 1], dims[l]), dtype) for l in range(L)
        )
        return State(weights)
    E_in = jnp.eye(cfg.in_dim, M, dtype=dtype)  # V: first M input directions
    E_out = jnp.eye(cfg.out_dim, M, dtype=dtype)  # U
    R = [_orthonormal(keys[l], h, M, dtype) for l in range(L - 1)]
    bases = [E_in] + R + [E_out]
    weights = tuple(scale * bases[l + 1] @ bases[l].T for l in range(L))
    return State(weights)


def loss(weights, cfg: Config) -> jax.Array:
    """Population squared loss (scalar); 0 at the teacher's optimum."""
    W = _product(weights)
    S31, S11 = _teacher(cfg, W.dtype)
    const = 0.5 * float(np.sum(np.asarray(cfg.singular_values) ** 2 / cfg.eigs))
    return 0.5 * jnp.sum((W @ S11) * W) - jnp.sum(S31 * W) + const


def step(state: State, cfg: Config) -> State:
    """One full-batch gradient-descent step on every layer."""
    grads = jax.grad(loss)(state.weights, cfg)
    return State(
        tuple(W - cfg.lr * g for W, g in zip(state.weights, grads, strict=True))
    )


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """``modes`` ``[M]`` (u_α = u_αᵀ W v_α), ``loss``, and ``cross`` (Frobenius norm of
    the product outside the mode entries: zero while the modes stay decoupled)."""
    W = _product(state.weights)
    M = cfg.num_modes
    modes = jnp.diagonal(W)[:M]
    mask = jnp.asarray(np.eye(cfg.out_dim, cfg.in_dim) * (np.arange(cfg.in_dim) < M))
    cross = jnp.sqrt(jnp.sum(jnp.where(mask > 0, 0.0, W) ** 2))
    return {"modes": modes, "loss": loss(state.weights, cfg), "cross": cross}
