"""Deep linear unconstrained features model: L linear layers on top of free features.

Loss, averaged over the N samples (Dang et al. 2023, arXiv 2301.00437, the deep linear
UFM; L = 1 is the plain UFM of ``models/ufm.py``):

  mse: 1/(2N) ‖W_L ⋯ W_1 H + b 1ᵀ − Y‖²_F + Σ_l λ_l/2 ‖W_l‖²_F + λ_H/2 ‖H‖²_F
  ce:  1/N Σ_i CE(W_L ⋯ W_1 h_i + b, y_i) + the same regularisers

H is ``[d, N]`` (columns are samples, ordered by class), W_1..W_{L−1} are ``[d, d]``,
W_L is ``[K, d]``; the last-layer bias b ``[K]`` (``bias=True``) is not regularised.
Per-layer weight decay λ_l = ``lambda_w`` · ``lambda_w_scale[l]``. Trained full batch by
gradient descent. ``observe`` reports NC metrics of the features entering every layer:
H_0 = H and H_l = W_l ⋯ W_1 H for l = 1..L−1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collapse_jax import metrics as M
from collapse_jax import random as cr
from collapse_jax._config import (
    ClassSizes,
    check_choice,
    check_dtype,
    check_int,
    check_per_class,
    check_range,
)

__all__ = ["Config", "State", "init", "loss", "observe", "step"]


@struct.dataclass
class Config(ClassSizes):
    """Deep linear UFM hyperparameters. Sizes and code paths are static; floats sweep."""

    num_classes: int = struct.field(pytree_node=False, default=4)
    dim: int = struct.field(pytree_node=False, default=8)
    depth: int = struct.field(pytree_node=False, default=2)
    per_class: int | tuple[int, ...] = struct.field(pytree_node=False, default=5)
    loss: str = struct.field(pytree_node=False, default="mse")
    bias: bool = struct.field(pytree_node=False, default=False)
    lambda_w_scale: tuple[float, ...] | None = struct.field(
        pytree_node=False, default=None
    )
    dtype: str = struct.field(pytree_node=False, default="float32")
    lambda_w: float = 5e-3
    lambda_h: float = 5e-3
    lr: float = 0.1
    init_scale: float = 1.0

    def __post_init__(self):
        check_int("num_classes", self.num_classes, 2)
        check_int("dim", self.dim, 1)
        check_int("depth", self.depth, 1)
        per_class = check_per_class("per_class", self.per_class, self.num_classes)
        object.__setattr__(self, "per_class", per_class)
        check_choice("loss", self.loss, ("mse", "ce"))
        check_choice("bias", self.bias, (True, False))
        if self.lambda_w_scale is not None:
            if (
                not isinstance(self.lambda_w_scale, tuple | list)
                or len(self.lambda_w_scale) != self.depth
            ):
                raise ValueError(
                    f"lambda_w_scale={self.lambda_w_scale!r}: allowed None or one "
                    f"positive factor per layer (depth={self.depth})"
                )
            object.__setattr__(
                self, "lambda_w_scale", tuple(float(x) for x in self.lambda_w_scale)
            )
            for l, x in enumerate(self.lambda_w_scale):
                check_range(f"lambda_w_scale[{l}]", x, 0.0, low_open=True)
        check_dtype("dtype", self.dtype)
        check_range("lambda_w", self.lambda_w, 0.0, low_open=True)
        check_range("lambda_h", self.lambda_h, 0.0, low_open=True)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("init_scale", self.init_scale, 0.0, low_open=True)

    @property
    def layer_scales(self) -> np.ndarray:
        """``[L]`` multipliers of ``lambda_w`` for W_1..W_L."""
        if self.lambda_w_scale is None:
            return np.ones(self.depth)
        return np.asarray(self.lambda_w_scale)


class Params(NamedTuple):
    H: jax.Array  # [d, N]
    Ws: tuple[jax.Array, ...]  # W_1..W_{L-1} [d, d], W_L [K, d]
    b: jax.Array  # [K]


class State(NamedTuple):
    params: Params


def init(key: jax.Array, cfg: Config) -> State:
    """Gaussian H and W_l with entries N(0, init_scale²/d) (W_L: N(0, init_scale²/d));
    b = 0."""
    dtype = jnp.dtype(cfg.dtype)
    K, d, N, L = cfg.num_classes, cfg.dim, cfg.num_samples, cfg.depth
    keys = jax.random.split(key, L + 1)
    scale = jnp.asarray(cfg.init_scale, dtype)
    H = scale * cr.normal(keys[0], (d, N), dtype)
    shapes = [(d, d)] * (L - 1) + [(K, d)]
    Ws = tuple(
        scale
        * jnp.asarray(1.0 / np.sqrt(d), dtype)
        * cr.normal(keys[l + 1], shapes[l], dtype)
        for l in range(L)
    )
    return State(Params(H=H, Ws=Ws, b=jnp.zeros((K,), dtype)))


def _features(p: Params) -> list[jax.Array]:
    """H_0 = H, H_l = W_l ⋯ W_1 H for l = 1..L (the last one is the logits)."""
    out = [p.H]
    for W in p.Ws:
        out.append(W @ out[-1])
    return out


def _logits(p: Params, cfg: Config) -> jax.Array:
    Z = _features(p)[-1]
    return Z + p.b[:, None] if cfg.bias else Z


def loss(params: Params, cfg: Config) -> jax.Array:
    """The regularised training loss (a scalar)."""
    labels = jnp.asarray(cfg.labels)
    logits = _logits(params, cfg)
    N = cfg.num_samples
    if cfg.loss == "mse":
        Y = jax.nn.one_hot(labels, cfg.num_classes, dtype=logits.dtype).T
        fit = jnp.sum((logits - Y) ** 2) / (2 * N)
    else:
        logp = jax.nn.log_softmax(logits, axis=0)
        fit = -jnp.mean(logp[labels, jnp.arange(N)])
    scales = cfg.layer_scales
    reg = cfg.lambda_h / 2 * jnp.sum(params.H**2)
    for l, W in enumerate(params.Ws):
        reg = reg + cfg.lambda_w * float(scales[l]) / 2 * jnp.sum(W**2)
    return fit + reg


def step(state: State, cfg: Config) -> State:
    """One full-batch gradient-descent step."""
    p = state.params
    g = jax.grad(loss)(p, cfg)
    new = jax.tree.map(lambda x, dx: x - cfg.lr * dx, p, g)
    if not cfg.bias:
        new = new._replace(b=p.b)
    return State(new)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Loss, gradient norm, per-layer NC metrics and the quantities the theory predicts.

    Per-layer arrays have a leading axis of size L over H_0..H_{L−1}:
      ``nc1`` ``[L]``; ``nc2_etf`` ``[L]`` (globally centred class means vs a simplex
      ETF); ``nc2_orth`` ``[L]`` (uncentred class means vs an orthogonal frame);
      ``mean_norm`` ``[L, K]`` (uncentred class-mean norms); ``mean_gram`` ``[L, K, K]``.
    Classifier: ``w_norm`` ``[K]`` (rows of W_L), ``w_gram`` ``[K, K]``, ``nc2_w_etf``,
    ``nc2_w_orth``. ``sv`` ``[K]``: singular values of the product W_L ⋯ W_1 H,
    descending. ``b_mean``: mean of the bias.
    """
    p = state.params
    K = cfg.num_classes
    labels = jnp.asarray(cfg.labels)
    value, grads = jax.value_and_grad(loss)(p, cfg)
    leaves = jax.tree.leaves(grads._replace(b=grads.b if cfg.bias else 0 * grads.b))
    grad_norm = jnp.sqrt(sum(jnp.sum(x**2) for x in leaves))
    feats = _features(p)
    nc1, etf, orth, norms, grams = [], [], [], [], []
    for Hl in feats[:-1]:
        X = Hl.T  # metrics take samples as rows
        means, _ = M.class_means(X, labels, K)
        centred = means - X.mean(axis=0)[None, :]
        nc1.append(M.nc1(X, labels, K))
        etf.append(M.nc2_etf_distance(centred))
        orth.append(M.nc2_orthogonal_distance(means))
        norms.append(jnp.linalg.norm(means, axis=1))
        grams.append(means @ means.T)
    WL = p.Ws[-1]
    sv = jnp.linalg.svd(feats[-1], compute_uv=False)[:K]
    return {
        "loss": value,
        "grad_norm": grad_norm,
        "nc1": jnp.stack(nc1),
        "nc2_etf": jnp.stack(etf),
        "nc2_orth": jnp.stack(orth),
        "mean_norm": jnp.stack(norms),
        "mean_gram": jnp.stack(grams),
        "w_norm": jnp.linalg.norm(WL, axis=1),
        "w_gram": WL @ WL.T,
        "nc2_w_etf": M.nc2_etf_distance(WL),
        "nc2_w_orth": M.nc2_orthogonal_distance(WL),
        "sv": sv,
        "b_mean": jnp.mean(p.b),
    }
