"""A stack of self-attention layers: attention entropy collapse and rank collapse.

Each sequence is a token matrix ``X [T, d]`` drawn from the key. Layer ``l`` has
``H`` heads with query/key weights ``W_Q, W_K [d, d_h]`` and value weights
``W_V [d, d]``; a head's attention is ``A = softmax(X W_Q (X W_K)ᵀ)`` (row-wise;
the usual ``1/√d_h`` is absorbed into ``qk_scale``) and the layer is

  pure:  X ← Σ_h A_h X W_V,h          skip:  X ← X + Σ_h A_h X W_V,h

optionally followed by a ReLU MLP block (``X ← [X +] relu(X W_1) W_2``). With
``sigma_reparam`` every weight matrix is used as ``Ŵ = γ W / ‖W‖₂`` (σReparam of
Zhai et al. 2023, arXiv 2303.06296), ``γ`` learned or fixed.

Two modes:

- ``sample``: every ``step`` draws a fresh network and token batch from the key
  carried in the state, so records over seeds and time are independent draws;
- ``train``: full-batch gradient descent (step ``lr``) on a retrieval regression.
  Token ``i`` of sequence ``b`` has target ``y_bi = uᵀ x_{b,j*(i)}`` with
  ``j*(i) = argmax_j x_{b,i}ᵀ M x_{b,j}`` for a random teacher ``(M, u)``; the
  prediction is a linear read-out of each output token. Fitting it needs one-hot
  attention rows, so gradient descent grows ``‖W_Q W_Kᵀ‖₂`` and a large ``lr``
  drives the attention entropy down (theory/attention.md).

Weight draws (``init``):

- ``gaussian``: ``W_Q`` entries ``N(0, qk_scale²)``, ``W_K`` orthonormal columns
  (``W_Q W_Kᵀ`` then has i.i.d. ``N(0, qk_scale²)`` entries when ``d_h = d``),
  ``W_V`` entries ``N(0, v_scale²/d)``;
- ``isotropic``: ``W_Q = W_K = √qk_scale · O`` (random orthogonal ``O``, so
  ``W_Q W_Kᵀ = qk_scale · I``) and ``W_V = v_scale · I``: the exactly solvable case.

Token draws (``tokens``), with a random unit mean direction ``m``:

- ``gaussian``: ``X = token_mean · 1 mᵀ + token_std · G / √d``, ``G`` standard normal;
- ``orthonormal``: ``X = token_mean · 1 mᵀ + token_std · Z``, ``Z`` with orthonormal
  rows orthogonal to ``m`` (needs ``d ≥ T + 1``), so ``X Xᵀ = token_mean² J +
  token_std² I``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "forward", "init", "loss", "observe", "step"]


@struct.dataclass
class Config:
    """Sizes and architecture choices are static; scales, ``gamma`` and ``lr`` sweep."""

    seq_len: int = struct.field(pytree_node=False, default=8)
    dim: int = struct.field(pytree_node=False, default=16)
    depth: int = struct.field(pytree_node=False, default=2)
    heads: int = struct.field(pytree_node=False, default=1)
    head_dim: int | None = struct.field(pytree_node=False, default=None)
    batch: int = struct.field(pytree_node=False, default=1)
    mode: str = struct.field(pytree_node=False, default="sample")
    init: str = struct.field(pytree_node=False, default="gaussian")
    tokens: str = struct.field(pytree_node=False, default="gaussian")
    skip: bool = struct.field(pytree_node=False, default=False)
    mlp: bool = struct.field(pytree_node=False, default=False)
    mlp_hidden: int = struct.field(pytree_node=False, default=32)
    sigma_reparam: bool = struct.field(pytree_node=False, default=False)
    learn_gamma: bool = struct.field(pytree_node=False, default=False)
    dtype: str = struct.field(pytree_node=False, default="float32")
    qk_scale: float = 1.0
    v_scale: float = 1.0
    token_mean: float = 0.0
    token_std: float = 1.0
    gamma: float = 1.0
    lr: float = 0.1
    mlp_scale: float = 1.0

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)
        check_int("dim", self.dim, 1)
        check_int("depth", self.depth, 1)
        check_int("heads", self.heads, 1)
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.dim)
        check_int("head_dim", self.head_dim, 1)
        check_int("batch", self.batch, 1)
        check_int("mlp_hidden", self.mlp_hidden, 1)
        check_choice("mode", self.mode, ("sample", "train"))
        check_choice("init", self.init, ("gaussian", "isotropic"))
        check_choice("tokens", self.tokens, ("gaussian", "orthonormal"))
        for name in ("skip", "mlp", "sigma_reparam", "learn_gamma"):
            check_choice(name, getattr(self, name), (False, True))
        check_dtype("dtype", self.dtype)
        if self.init == "isotropic" and self.head_dim != self.dim:
            raise ValueError(
                f"head_dim={self.head_dim} is not allowed with init='isotropic': "
                f"it needs head_dim == dim ({self.dim})"
            )
        if self.head_dim > self.dim and self.init == "gaussian":
            raise ValueError(
                f"head_dim={self.head_dim} is out of range: allowed [1, dim={self.dim}]"
            )
        if self.tokens == "orthonormal" and self.dim < self.seq_len + 1:
            raise ValueError(
                f"dim={self.dim} is out of range for tokens='orthonormal': allowed "
                f"dim >= seq_len + 1 = {self.seq_len + 1}"
            )
        check_range("qk_scale", self.qk_scale, 0.0)
        check_range("v_scale", self.v_scale, 0.0)
        check_range("token_mean", self.token_mean, 0.0)
        check_range("token_std", self.token_std, 0.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, low_open=True)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("mlp_scale", self.mlp_scale, 0.0)


class State(NamedTuple):
    params: dict  # q, k [L, H, d, d_h]; v [L, H, d, d]; mlp1/mlp2; gammas; readout
    tokens: jax.Array  # [B, T, d]
    targets: jax.Array  # [B, T] (train mode; zeros in sample mode)
    key: jax.Array


def _orthonormal_columns(G):
    """Haar-distributed orthonormal columns from Gaussian ``G [..., n, k]`` (QR with
    the sign of ``diag R`` fixed)."""
    Q, R = jnp.linalg.qr(G)
    return Q * jnp.sign(jnp.diagonal(R, axis1=-2, axis2=-1))[..., None, :]


def _shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Shapes of the standard-normal draws behind one network and token batch."""
    B, T, d = cfg.batch, cfg.seq_len, cfg.dim
    L, H, dh, dm = cfg.depth, cfg.heads, cfg.head_dim, cfg.mlp_hidden
    tokens = (B, d, T + 1) if cfg.tokens == "orthonormal" else (B, T + 1, d)
    qk = (L * H, d, d) if cfg.init == "isotropic" else (L * H, d, dh)
    return {
        "tokens": tokens,  # orthonormal: QR input; gaussian: T rows + the mean row
        "q": qk,
        "k": qk,
        "v": (L, H, d, d),
        "mlp1": (L, d, dm),
        "mlp2": (L, dm, d),
        "readout": (d,),
        "teacher": (d + 1, d),
    }


def _draw(key, cfg: Config):
    """A fresh network (params), token batch ``[B, T, d]`` and targets ``[B, T]``.

    One standard-normal draw, sliced: a single random-number program keeps the
    compile time of ``init`` and of ``step`` in sample mode small."""
    dtype = jnp.dtype(cfg.dtype)
    B, T, d = cfg.batch, cfg.seq_len, cfg.dim
    L, H, dh, dm = cfg.depth, cfg.heads, cfg.head_dim, cfg.mlp_hidden
    shapes = _shapes(cfg)
    sizes = [int(np.prod(v)) for v in shapes.values()]
    flat = cr.normal(key, (sum(sizes),), dtype)
    parts = jnp.split(flat, np.cumsum(sizes)[:-1])
    g = {n: p.reshape(shapes[n]) for n, p in zip(shapes, parts, strict=True)}
    one = jnp.asarray(1.0, dtype)

    if cfg.tokens == "orthonormal":
        O = jnp.swapaxes(_orthonormal_columns(g["tokens"]), -1, -2)  # [B, T+1, d]
        Z, m = O[:, :T], O[:, T]
    else:
        Z = g["tokens"][:, :T] / jnp.sqrt(d * one)
        m = g["tokens"][:, T]
        m = m / jnp.linalg.norm(m, axis=-1, keepdims=True)
    tokens = cfg.token_mean * m[:, None, :] + cfg.token_std * Z

    if cfg.init == "isotropic":
        O = _orthonormal_columns(g["q"]).reshape(L, H, d, d)
        q = k = jnp.sqrt(cfg.qk_scale * one) * O
        v = cfg.v_scale * jnp.broadcast_to(jnp.eye(d, dtype=dtype), (L, H, d, d))
    else:
        q = cfg.qk_scale * g["q"].reshape(L, H, d, dh)
        k = _orthonormal_columns(g["k"]).reshape(L, H, d, dh)
        v = cfg.v_scale * g["v"] / jnp.sqrt(d * one)
    params = {
        "q": q,
        "k": k,
        "v": v,
        "gamma": jnp.full((L, H, 3), cfg.gamma, dtype),
        "mlp1": cfg.mlp_scale * g["mlp1"] * jnp.sqrt(2.0 / d * one),
        "mlp2": g["mlp2"] / jnp.sqrt(dm * one),
        "mlp_gamma": jnp.full((L, 2), cfg.gamma, dtype),
        "readout": g["readout"] / jnp.sqrt(d * one),
    }
    if cfg.mode == "sample":
        return params, tokens, jnp.zeros((B, T), dtype)
    # Retrieval targets: query i reads u·x_{j*(i)}, j*(i) = argmax_j x_iᵀ M x_j.
    M, u = g["teacher"][:d], g["teacher"][d] / cfg.token_std
    scores = jnp.einsum("bid,de,bje->bij", tokens, M, tokens)
    pick = jax.nn.one_hot(jnp.argmax(scores, axis=-1), T, dtype=dtype)
    return params, tokens, jnp.einsum("bij,bjd,d->bi", pick, tokens, u)


def init(key: jax.Array, cfg: Config) -> State:
    key, sub = jax.random.split(key)
    params, tokens, targets = _draw(sub, cfg)
    return State(params=params, tokens=tokens, targets=targets, key=key)


def _spectral_norm(W):
    """Largest singular value of each matrix in ``W [..., m, n]``."""
    return jnp.linalg.svd(W, compute_uv=False)[..., 0]


def _effective(W, gamma, cfg: Config):
    """``γ W / ‖W‖₂`` per matrix under σReparam, else ``W``; ``W [..., m, n]``,
    ``gamma [...]``."""
    if cfg.sigma_reparam:
        return (gamma / _spectral_norm(W))[..., None, None] * W
    return W


def _layer_weights(params, cfg: Config):
    """Effective ``q, k [L, H, d, d_h]``, ``v [L, H, d, d]``, ``mlp1, mlp2``."""
    g, mg = params["gamma"], params["mlp_gamma"]
    return (
        _effective(params["q"], g[..., 0], cfg),
        _effective(params["k"], g[..., 1], cfg),
        _effective(params["v"], g[..., 2], cfg),
        _effective(params["mlp1"], mg[:, 0], cfg),
        _effective(params["mlp2"], mg[:, 1], cfg),
    )


def forward(params, X, cfg: Config):
    """Token matrices and attention of one sequence ``X [T, d]``.

    Returns ``(Xs [L+1, T, d], A [L, H, T, T])``: ``Xs[l]`` is the input of layer
    ``l`` (``Xs[L]`` the output of the stack), ``A[l, h]`` the attention of head
    ``h`` in layer ``l`` (rows sum to one).
    """
    q, k, v, mlp1, mlp2 = _layer_weights(params, cfg)
    Xs, As = [X], []
    for l in range(cfg.depth):
        logits = jnp.einsum("td,hde,hfe,sf->hts", X, q[l], k[l], X, optimize=True)
        A = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("hts,sd,hde->te", A, X, v[l])
        X = X + out if cfg.skip else out
        if cfg.mlp:
            h = jax.nn.relu(X @ mlp1[l]) @ mlp2[l]
            X = X + h if cfg.skip else h
        Xs.append(X)
        As.append(A)
    return jnp.stack(Xs), jnp.stack(As)


def loss(params, tokens, targets, cfg: Config) -> jax.Array:
    """Half mean squared error of the per-token read-out of the stack's output,
    over batch and tokens (``tokens [B, T, d]``, ``targets [B, T]``)."""
    out = jax.vmap(lambda X: forward(params, X, cfg)[0][-1])(tokens)  # [B, T, d]
    return 0.5 * jnp.mean((out @ params["readout"] - targets) ** 2)


def step(state: State, cfg: Config) -> State:
    """``train``: one full-batch gradient step; ``sample``: a fresh draw."""
    if cfg.mode == "sample":
        key, sub = jax.random.split(state.key)
        params, tokens, targets = _draw(sub, cfg)
        return State(params=params, tokens=tokens, targets=targets, key=key)
    grads = jax.grad(loss)(state.params, state.tokens, state.targets, cfg)
    if not cfg.learn_gamma:
        grads = {
            **grads,
            "gamma": 0 * grads["gamma"],
            "mlp_gamma": 0 * grads["mlp_gamma"],
        }
    params = jax.tree.map(lambda p, g: p - cfg.lr * g, state.params, grads)
    return state._replace(params=params)


def _centred(X):
    return X - jnp.mean(X, axis=-2, keepdims=True)


def _entropy(A):
    """Shannon entropy (nats) of each row; ``0 log 0 = 0``."""
    return -jnp.sum(jnp.where(A > 0, A * jnp.log(jnp.where(A > 0, A, 1)), 0), axis=-1)


def _energy_ratio(A):
    """``‖(I − J/T) A (I − J/T)‖_F² / (T − 1)``: the fraction of a white non-mean
    input's energy that the mixing ``A`` passes (``[..., T, T] -> [...]``)."""
    T = A.shape[-1]
    C = _centred(jnp.swapaxes(_centred(A), -1, -2))
    return jnp.sum(C**2, axis=(-2, -1)) / (T - 1)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Metrics of the stack on the state's token batch (batch-averaged).

    ``entropy [L, H]``: attention entropy, mean over query rows; ``qk_norm [L, H]``:
    ``‖Ŵ_Q Ŵ_Kᵀ‖₂`` of the effective weights; ``token_norm [L]``: ``‖X_l X_lᵀ‖₂``
    of each layer's input, max over the batch; ``residual [L+1]``:
    ``‖X_l − 1 x̄_lᵀ‖_F / ‖X_l‖_F`` (``l = 0`` the input, ``L`` the output);
    ``residual_norm [L+1]``: ``‖X_l − 1 x̄_lᵀ‖_F``; ``energy_ratio [L, H]``: the
    non-mean energy fraction a head's attention passes; ``loss`` (scalar).
    """
    Xs, A = jax.vmap(lambda X: forward(state.params, X, cfg))(state.tokens)
    q, k, _, _, _ = _layer_weights(state.params, cfg)
    qk = jnp.einsum("lhde,lhfe->lhdf", q, k)
    res = jnp.sqrt(jnp.sum(_centred(Xs) ** 2, axis=(-2, -1)))  # [B, L+1]
    full = jnp.sqrt(jnp.sum(Xs**2, axis=(-2, -1)))
    gram = jnp.einsum("bltd,blsd->blts", Xs[:, :-1], Xs[:, :-1])
    return {
        "entropy": jnp.mean(_entropy(A), axis=(0, -1)),
        "qk_norm": _spectral_norm(qk),
        "token_norm": jnp.max(jnp.linalg.eigvalsh(gram)[..., -1], axis=0),
        "residual": jnp.mean(res / full, axis=0),
        "residual_norm": jnp.mean(res, axis=0),
        "energy_ratio": jnp.mean(_energy_ratio(A), axis=0),
        # Sample mode has no objective: its loss is recorded as zero.
        "loss": (
            loss(state.params, state.tokens, state.targets, cfg)
            if cfg.mode == "train"
            else jnp.zeros((), state.tokens.dtype)
        ),
    }
