"""Supervised contrastive (SupCon) loss on free, normalised embeddings.

The unconstrained-features setting of Graf et al. 2021 (arXiv 2102.08817) and Kini
et al. 2023 (arXiv 2306.07960): one free embedding per sample, ``N`` samples in ``K``
classes with counts ``n_k`` (balanced or not), on the unit sphere of ``R^d``:

  h_i = u_i / ‖u_i‖                 (``relu=False``)
  h_i = ReLU(u_i) / ‖ReLU(u_i)‖     (``relu=True``: non-negative embeddings)

with unconstrained parameters ``u [N, d]``. Full-batch SupCon loss (Khosla et al.
2020, arXiv 2004.11362, the "out" form), averaged over anchors:

  L = (1/N) Σ_i (−1/(n_{y_i} − 1)) Σ_{p ≠ i, y_p = y_i}
          log( exp(h_i·h_p/τ) / Σ_{a ≠ i} exp(h_i·h_a/τ) )

trained by gradient descent (``gd``) or Adam (optax) on ``u``. Samples are ordered by
class. Because ``∇_u L ⊥ u`` row by row, plain GD never shrinks ‖u_i‖.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
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

__all__ = ["Config", "State", "embeddings", "init", "loss", "observe", "step"]


@struct.dataclass
class Config(ClassSizes):
    """Sizes, class counts and code paths are static; ``temperature`` and ``lr``
    sweep."""

    num_classes: int = struct.field(pytree_node=False, default=4)
    dim: int = struct.field(pytree_node=False, default=4)
    per_class: int | tuple[int, ...] = struct.field(pytree_node=False, default=4)
    relu: bool = struct.field(pytree_node=False, default=False)
    optimizer: str = struct.field(pytree_node=False, default="gd")
    dtype: str = struct.field(pytree_node=False, default="float32")
    temperature: float = 0.5
    lr: float = 0.5

    def __post_init__(self):
        check_int("num_classes", self.num_classes, 2)
        # d ≥ K: the predicted geometries (orthogonal frame; imbalanced optimum of
        # full rank) need K class means in general position.
        check_int("dim", self.dim, self.num_classes)
        per_class = check_per_class("per_class", self.per_class, self.num_classes)
        # Every anchor needs a positive: at least two samples per class.
        if isinstance(per_class, tuple):
            for k, n in enumerate(per_class):
                check_int(f"per_class[{k}]", n, 2)
        else:
            check_int("per_class", per_class, 2)
        object.__setattr__(self, "per_class", per_class)
        check_choice("relu", self.relu, (True, False))
        check_choice("optimizer", self.optimizer, ("gd", "adam"))
        check_dtype("dtype", self.dtype)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("lr", self.lr, 0.0, low_open=True)


class State(NamedTuple):
    u: jax.Array  # [N, d] unconstrained embedding parameters
    opt_state: Any


def _optimizer(cfg: Config) -> optax.GradientTransformation:
    if cfg.optimizer == "gd":
        return optax.sgd(cfg.lr)
    return optax.adam(cfg.lr)


def init(key: jax.Array, cfg: Config) -> State:
    """Rows of ``u`` uniform on the unit sphere; with ``relu`` in the positive orthant
    (|Gaussian| entries), since an embedding with no positive entry is undefined."""
    z = cr.normal(key, (cfg.num_samples, cfg.dim), jnp.dtype(cfg.dtype))
    if cfg.relu:
        z = jnp.abs(z)
    u = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    return State(u, _optimizer(cfg).init(u))


def embeddings(u: jax.Array, cfg: Config) -> jax.Array:
    """``[N, d]`` unit embeddings ``h_i`` from the parameters ``u [N, d]``."""
    r = jax.nn.relu(u) if cfg.relu else u
    norm = jnp.linalg.norm(r, axis=1, keepdims=True)
    return r / jnp.maximum(norm, jnp.finfo(r.dtype).tiny)


def _masks(cfg: Config):
    y = cfg.labels
    eye = np.eye(cfg.num_samples, dtype=bool)
    positive = (y[:, None] == y[None, :]) & ~eye
    return eye, positive


def _logits(h: jax.Array, cfg: Config):
    """``S = h hᵀ/τ`` with the self-pairs masked, its row log-partition, positives."""
    eye, positive = _masks(cfg)
    S = jnp.where(eye, -jnp.inf, (h @ h.T) / cfg.temperature)  # [N, N]
    return S, jax.nn.logsumexp(S, axis=1), positive


def loss(u: jax.Array, cfg: Config) -> jax.Array:
    """The full-batch SupCon loss (scalar), averaged over the ``N`` anchors."""
    S, log_partition, positive = _logits(embeddings(u, cfg), cfg)
    mean_pos = jnp.sum(jnp.where(positive, S, 0.0), axis=1) / positive.sum(axis=1)
    return jnp.mean(log_partition - mean_pos)


def _grad_h(h: jax.Array, cfg: Config) -> jax.Array:
    """``∂L/∂h [N, d]`` at unit ``h``, written out so that ``observe`` needs no
    backward pass: ``∂L/∂S_ij = A_ij/N`` with ``A = softmax_{a≠i}(S_i) − P_i/|P_i|``,
    so ``∂L/∂h = (A + Aᵀ) h / (Nτ)``."""
    S, log_partition, positive = _logits(h, cfg)
    weights = jnp.asarray(positive / positive.sum(1)[:, None], h.dtype)
    A = jnp.exp(S - log_partition[:, None]) - weights
    return (A + A.T) @ h / (cfg.num_samples * cfg.temperature)


def step(state: State, cfg: Config) -> State:
    """One full-batch optimiser step on ``u``."""
    grads = jax.grad(loss)(state.u, cfg)
    updates, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.u)
    return State(optax.apply_updates(state.u, updates), opt_state)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Scalar metrics of the embeddings.

    ``class_cos_{mean,min,max}``: off-diagonal entries of the Gram matrix of the
    normalised class means; ``within_cos``: mean cosine over same-class pairs
    ``i ≠ j`` (1 at collapse); ``nc1``; ``etf_distance`` and ``orth_distance``: NC2
    distances of the normalised (uncentred) class means to a simplex ETF and to an
    orthogonal frame; ``loss``; ``grad_norm``: the norm of the gradient on the
    sphere, ``‖(‖r_i‖ ∇_{u_i} L)_i‖_F`` with ``r_i = u_i`` (or ``ReLU(u_i)``), which
    does not depend on how far ‖u_i‖ has grown (with ReLU: over active entries).
    """
    u = state.u
    h = embeddings(u, cfg)
    g = _grad_h(h, cfg)
    # On the sphere: drop the radial part; with ReLU, only active entries move.
    tangent = g - jnp.sum(g * h, axis=1, keepdims=True) * h
    if cfg.relu:
        tangent = jnp.where(u > 0, tangent, 0.0)
    labels = jnp.asarray(cfg.labels)
    K = cfg.num_classes
    means, _ = M.class_means(h, labels, K)
    unit = means / jnp.linalg.norm(means, axis=1, keepdims=True)
    cos = unit @ unit.T
    off = ~np.eye(K, dtype=bool)
    _, positive = _masks(cfg)
    return {
        "class_cos_mean": jnp.sum(jnp.where(off, cos, 0.0)) / off.sum(),
        "class_cos_min": jnp.min(jnp.where(off, cos, jnp.inf)),
        "class_cos_max": jnp.max(jnp.where(off, cos, -jnp.inf)),
        "within_cos": jnp.sum(jnp.where(positive, h @ h.T, 0.0)) / positive.sum(),
        "nc1": M.nc1(h, labels, K),
        "etf_distance": M.nc2_etf_distance(unit),
        "orth_distance": M.nc2_orthogonal_distance(unit),
        "loss": loss(u, cfg),
        "grad_norm": jnp.linalg.norm(tangent),
    }
