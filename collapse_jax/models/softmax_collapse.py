"""Softmax collapse: cross-entropy gradients that vanish at floating-point precision.

The setting of Prieto, Barsbey, Mediano & Birdal 2025, "Grokking at the edge of
numerical stability" (arXiv 2501.04697), reduced to a classifier whose logit gap grows
predictably. Data: ``C`` classes, ``per_class`` points each (``n = C · per_class``),
``x = m e_y ± ξ`` with class means ``m e_y`` on the first ``C`` axes and Gaussian
noise ``ξ`` (std ``noise``) on the other ``dim − C`` axes, drawn in antithetic pairs
``±ξ`` so that every class's noise sums to zero (the data are linearly separable).

Model: a linear classifier ``z = W x`` (``W [C, d]``) or, with ``hidden > 0``, a
bias-free two-layer ReLU network ``z = W₂ relu(W₁ x)`` (both positively homogeneous).
The linear model starts from a warm, aligned ``W₀ = (g₀/m)(I − J/C)`` on the class
axes (every logit gap equals ``init_gap = g₀``) plus ``init_scale`` Gaussian noise.

Training: full-batch gradient descent, step ``lr``, on the mean of

  softmax:    ℓ = −log_softmax(z)_y        computed as jax.nn.log_softmax does:
              s = z − max z,  ℓ = log Σ_j exp(s_j) − s_y
  stablemax:  ℓ = log Σ_j S(z_j) − log S(z_y),  S(x) = x + 1 (x ≥ 0), 1/(1 − x) (x < 0)

with the logits cast to the working ``dtype`` (float16, bfloat16, float32, float64)
before the loss; parameters and data are held in ``param_dtype``. ``grad="perp"`` is
⊥Grad: each parameter tensor's gradient loses its component along that tensor and is
rescaled to the original gradient's norm (the paper's Sec. 6 and its reference code).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = [
    "Config",
    "State",
    "init",
    "logit_grad",
    "loss",
    "observe",
    "step",
    "working_logits",
]

_WORKING_DTYPES = ("float16", "bfloat16", "float32", "float64")
_TINY = 1e-30  # ⊥Grad's guard against 0/0, as in the paper's code


@struct.dataclass
class Config:
    """Sizes, loss, gradient rule and dtypes are static; the floats sweep.

    ``init_gap`` sets the linear model's aligned start; the two-layer network
    (``hidden > 0``) starts from ``init_scale`` Gaussian weights and ignores it.
    ``param_dtype='float64'`` (and ``dtype='float64'``) need ``jax_enable_x64``.
    """

    num_classes: int = struct.field(pytree_node=False, default=2)
    dim: int = struct.field(pytree_node=False, default=4)
    per_class: int = struct.field(pytree_node=False, default=4)
    hidden: int = struct.field(pytree_node=False, default=0)
    loss: str = struct.field(pytree_node=False, default="softmax")
    grad: str = struct.field(pytree_node=False, default="plain")
    dtype: str = struct.field(pytree_node=False, default="float32")
    param_dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 1.0
    margin: float = 1.0
    noise: float = 0.5
    init_gap: float = 2.0
    init_scale: float = 0.0

    def __post_init__(self):
        check_int("num_classes", self.num_classes, 2)
        check_int("dim", self.dim, self.num_classes)
        check_int("per_class", self.per_class, 2)
        if self.per_class % 2:
            raise ValueError(
                f"per_class={self.per_class} must be even: the noise is drawn in "
                "antithetic pairs"
            )
        check_int("hidden", self.hidden, 0)
        check_choice("loss", self.loss, ("softmax", "stablemax"))
        check_choice("grad", self.grad, ("plain", "perp"))
        check_choice("dtype", self.dtype, _WORKING_DTYPES)
        check_dtype("param_dtype", self.param_dtype)
        if self.dtype == "float64" and self.param_dtype != "float64":
            raise ValueError(
                "dtype='float64' needs param_dtype='float64' (and jax_enable_x64): "
                "the loss cannot be more precise than the logits it is given"
            )
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("margin", self.margin, 0.0, low_open=True)
        check_range("noise", self.noise, 0.0)
        check_range("init_gap", self.init_gap, 0.0)
        check_range("init_scale", self.init_scale, 0.0)

    @property
    def samples(self) -> int:
        return self.num_classes * self.per_class


class State(NamedTuple):
    params: tuple  # (W,) linear, [C, d]; (W1 [h, d], W2 [C, h]) two-layer ReLU
    x: jax.Array  # [n, d] fixed training inputs
    y: jax.Array  # [n] int32 labels


def init(key: jax.Array, cfg: Config) -> State:
    """Draws the data (antithetic noise pairs) and the initial weights."""
    C, d, n, pdt = cfg.num_classes, cfg.dim, cfg.samples, jnp.dtype(cfg.param_dtype)
    k_noise, k_w1, k_w2 = jax.random.split(key, 3)
    y = jnp.repeat(jnp.arange(C, dtype=jnp.int32), cfg.per_class)
    xi = cr.normal(k_noise, (n // 2, d - C), pdt)
    xi = jnp.stack([xi, -xi], axis=1).reshape(n, d - C)  # pairs ±ξ within a class
    means = cfg.margin * jax.nn.one_hot(y, C, dtype=pdt)
    x = jnp.concatenate([means, cfg.noise * xi], axis=1)
    if cfg.hidden == 0:
        centred = jnp.eye(C, d, dtype=pdt) - jnp.pad(
            jnp.full((C, C), 1.0 / C, pdt), ((0, 0), (0, d - C))
        )
        W = (cfg.init_gap / cfg.margin) * centred
        W = W + cfg.init_scale * cr.normal(k_w1, (C, d), pdt)
        params = (W.astype(pdt),)
    else:
        h = cfg.hidden
        W1 = cr.normal(k_w1, (h, d), pdt) / jnp.sqrt(jnp.asarray(d, pdt))
        W2 = cfg.init_scale * cr.normal(k_w2, (C, h), pdt)
        W2 = W2 / jnp.sqrt(jnp.asarray(h, pdt))
        params = (W1, W2)
    return State(params=params, x=x, y=y)


def _logits(params, x):
    if len(params) == 1:
        return x @ params[0].T
    W1, W2 = params
    return jax.nn.relu(x @ W1.T) @ W2.T


def _stablemax_s(z):
    # Both branches are finite everywhere, so the unused one never poisons gradients.
    return jnp.where(z >= 0, z + 1, 1 / (1 - jnp.minimum(z, 0)))


def _per_sample_loss(z, y, kind: str):
    """``[n]`` losses of logits ``z [n, C]`` (already in the working dtype)."""
    if kind == "softmax":
        logp = jax.nn.log_softmax(z, axis=-1)
    else:
        s = _stablemax_s(z)
        logp = jnp.log(s) - jnp.log(jnp.sum(s, axis=-1, keepdims=True))
    return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]


def working_logits(params, x, cfg: Config) -> jax.Array:
    """``[n, C]`` logits in the working dtype (computed in ``param_dtype``, cast)."""
    return _logits(params, x).astype(cfg.dtype)


def loss(params, x, y, cfg: Config) -> jax.Array:
    """Mean loss, computed in the working dtype, returned in ``param_dtype``."""
    z = working_logits(params, x, cfg)
    return _mean_loss(z, y, cfg).astype(cfg.param_dtype)


def _mean_loss(z, y, cfg: Config):
    return jnp.mean(_per_sample_loss(z, y, cfg.loss))


def logit_grad(z, y, cfg: Config) -> jax.Array:
    """``[n, C]`` gradient of the mean loss w.r.t. the logits ``z [n, C]`` in their
    dtype: what backpropagation hands to the weights (each sample's own gradient
    divided by ``n``)."""
    return jax.grad(_mean_loss)(z, y, cfg)


def _perp(g, w):
    """⊥Grad for one tensor: drop the component along ``w``, keep ``‖g‖``."""
    g_perp = g - (jnp.vdot(w, g) / (jnp.vdot(w, w) + _TINY)) * w
    return g_perp * (jnp.linalg.norm(g) / (jnp.linalg.norm(g_perp) + _TINY))


def step(state: State, cfg: Config) -> State:
    """One full-batch gradient-descent (or ⊥Grad) step."""
    grads = jax.grad(loss)(state.params, state.x, state.y, cfg)
    if cfg.grad == "perp":
        grads = tuple(_perp(g, w) for g, w in zip(grads, state.params, strict=True))
    params = tuple(w - cfg.lr * g for w, g in zip(state.params, grads, strict=True))
    return state._replace(params=params)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Scalar metrics (``param_dtype``) of one state.

    ``gap_mean``/``gap_min``: correct logit minus the largest other, in the working
    dtype, mean/min over samples; ``collapsed``: fraction of samples whose computed
    gradient w.r.t. their correct-class logit is exactly zero (softmax collapse; the
    other classes' components are ``≈ p_c``, exactly zero only once those underflow:
    ``zero_grad`` counts samples whose whole logit gradient is zero); ``loss``;
    ``weight_norm`` ``‖θ‖`` and ``grad_norm`` ``‖∇L‖`` (plain gradient) over all
    tensors; ``accuracy``; ``nlm``: cosine between
    ``−∇L`` and ``θ`` (the naïve-loss-minimisation alignment).
    """
    pdt = jnp.dtype(cfg.param_dtype)
    z, pullback = jax.vjp(lambda p: working_logits(p, state.x, cfg), state.params)
    g_z = logit_grad(z, state.y, cfg)
    (grads,) = pullback(g_z)
    C = cfg.num_classes
    onehot = jax.nn.one_hot(state.y, C, dtype=bool)
    zp = z.astype(pdt)
    correct = jnp.sum(jnp.where(onehot, zp, 0), axis=-1)
    other = jnp.max(jnp.where(onehot, -jnp.inf, zp), axis=-1)
    gap = correct - other
    g_correct = jnp.sum(jnp.where(onehot, g_z, 0), axis=-1)
    flat_w = jnp.concatenate([w.ravel() for w in state.params])
    flat_g = jnp.concatenate([g.ravel() for g in grads])
    w_norm = jnp.linalg.norm(flat_w)
    nlm = -jnp.vdot(flat_w, flat_g) / (w_norm * jnp.linalg.norm(flat_g) + _TINY)
    return {
        "gap_mean": jnp.mean(gap),
        "gap_min": jnp.min(gap),
        "collapsed": jnp.mean((g_correct == 0).astype(pdt)),
        "zero_grad": jnp.mean(jnp.all(g_z == 0, axis=-1).astype(pdt)),
        "loss": _mean_loss(z, state.y, cfg).astype(pdt),
        "weight_norm": w_norm,
        "grad_norm": jnp.linalg.norm(flat_g),
        "accuracy": jnp.mean((jnp.argmax(zp, axis=-1) == state.y).astype(pdt)),
        "nlm": nlm,
    }
