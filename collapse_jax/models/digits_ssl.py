"""SimSiam / BYOL on the digit images: a flax MLP encoder trained without negatives.

Data: the 1,797 digit images (``collapse_jax.datasets.digits``) as 64-vectors. Two views
of each image of a batch: the image shifted by a random offset in
``[−max_shift, max_shift]²`` (zero padding: a random crop) plus pixel noise of standard
deviation ``noise``, then centred by the dataset's pixel mean. Encoder ``f``: 64 →
``hidden`` → ReLU → ``embed_dim`` (``hidden = 0``: one bias-free linear map). Predictor
``h``: a bias-free linear map ``embed_dim → embed_dim`` (or none). Loss, symmetrised
over the two views (Chen & He 2021, arXiv 2011.10566, Eq. 2–3):

  L = ½ D(h(f(x₁)), sg(f_t(x₂))) + ½ D(h(f(x₂)), sg(f_t(x₁)))

with ``D = −cos`` (``loss="cosine"``) or ``D = ½‖·‖²`` (``"euclidean"``, the loss of
the linear theory of Tian, Chen, Ganguli 2021, arXiv 2102.06810); ``sg`` is a
stop-gradient when ``stop_gradient`` is set, and ``f_t`` is the online encoder
(``target="online"``, SimSiam) or its exponential moving average with rate ``ema``
(``target="ema"``, BYOL). SGD with heavy-ball momentum; weight decay ``weight_decay``
on every parameter (added to the gradient). The training set is all 1,797 images (the
model is unsupervised; nothing is evaluated on labels), and ``observe`` embeds all of
them without augmentation.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collapse_jax import datasets
from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range
from collapse_jax.metrics import spectral

__all__ = ["Config", "State", "init", "loss", "observe", "step"]

_SIDE = 8


@struct.dataclass
class Config:
    """Hyperparameters. Sizes and code paths are static; floats sweep.

    Attributes:
      hidden: encoder hidden width (0: a linear, bias-free encoder).
      embed_dim: k, embedding dimension.
      predictor: use the linear predictor h.
      stop_gradient: stop the gradient through the target branch.
      target: ``"online"`` (SimSiam) or ``"ema"`` (BYOL; needs ``stop_gradient``).
      loss: ``"cosine"`` or ``"euclidean"``.
      batch_size: images per step.
      max_shift: largest random shift of a view, in pixels (0..3).
      dtype: ``"float32"`` or ``"float64"``.
      lr, momentum, weight_decay: SGD step, heavy-ball momentum in [0, 1), L2 decay.
      ema: target update rate in (0, 1] (``target="ema"`` only).
      noise: pixel-noise standard deviation of a view.
      init_scale: multiplies the default (LeCun-normal) initial weights.
    """

    hidden: int = struct.field(pytree_node=False, default=64)
    embed_dim: int = struct.field(pytree_node=False, default=16)
    predictor: bool = struct.field(pytree_node=False, default=True)
    stop_gradient: bool = struct.field(pytree_node=False, default=True)
    target: str = struct.field(pytree_node=False, default="online")
    loss: str = struct.field(pytree_node=False, default="cosine")
    batch_size: int = struct.field(pytree_node=False, default=128)
    max_shift: int = struct.field(pytree_node=False, default=1)
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    ema: float = 0.01
    noise: float = 0.1
    init_scale: float = 1.0

    def __post_init__(self):
        check_int("hidden", self.hidden, 0)
        check_int("embed_dim", self.embed_dim, 1)
        for name in ("predictor", "stop_gradient"):
            check_choice(name, getattr(self, name), (True, False))
        check_choice("target", self.target, ("online", "ema"))
        if self.target == "ema" and not self.stop_gradient:
            raise ValueError(
                "target='ema' needs stop_gradient=True (the EMA target is not trained)"
            )
        check_choice("loss", self.loss, ("cosine", "euclidean"))
        check_int("batch_size", self.batch_size, 1)
        check_int("max_shift", self.max_shift, 0, 3)
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("ema", self.ema, 0.0, 1.0, low_open=True)
        check_range("noise", self.noise, 0.0)
        check_range("init_scale", self.init_scale, 0.0, low_open=True)


class State(NamedTuple):
    params: Any  # {"encoder": ..., "predictor": ...} flax parameter trees
    target: Any  # EMA encoder parameters (target="ema"), else None
    velocity: Any  # momentum buffer, same tree as params
    loss: jax.Array  # scalar: loss of the latest batch (at init: of a first batch)
    key: jax.Array  # uint32 [2]


class _Encoder(nn.Module):
    hidden: int
    embed_dim: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        if self.hidden == 0:
            return nn.Dense(self.embed_dim, use_bias=False, param_dtype=self.dtype)(x)
        x = nn.relu(nn.Dense(self.hidden, param_dtype=self.dtype)(x))
        return nn.Dense(self.embed_dim, param_dtype=self.dtype)(x)


def _nets(cfg: Config):
    dtype = jnp.dtype(cfg.dtype)
    encoder = _Encoder(cfg.hidden, cfg.embed_dim, dtype)
    predictor = nn.Dense(cfg.embed_dim, use_bias=False, param_dtype=dtype)
    return encoder, predictor


@functools.cache
def _images_float64() -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 8, 8]`` and their pixel mean ``[64]``."""
    x = datasets.digits(np.float64).x
    return x, x.reshape(x.shape[0], -1).mean(axis=0)


def images(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The training images ``[1797, 8, 8]`` and pixel mean ``[64]`` in ``cfg.dtype``."""
    x, mean = _images_float64()
    return x.astype(cfg.dtype), mean.astype(cfg.dtype)


def _augment(key, x, mean, cfg: Config):
    """One view ``[B, 64]`` of images ``x [B, 8, 8]``: shift, noise, centring."""
    k_shift, k_noise = jax.random.split(key)
    s = cfg.max_shift
    padded = jnp.pad(x, ((0, 0), (s, s), (s, s)))
    offsets = jax.random.randint(k_shift, (x.shape[0], 2), 0, 2 * s + 1)
    crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, o, (_SIDE, _SIDE)))(
        padded, offsets
    )
    flat = crop.reshape(x.shape[0], -1)
    noise = cr.normal(k_noise, flat.shape, flat.dtype)
    return flat + cfg.noise * noise - mean[None, :]


def _distance(p, z, cfg: Config):
    """Per-example D(p, z), ``[B]``."""
    if cfg.loss == "euclidean":
        return 0.5 * jnp.sum((p - z) ** 2, axis=-1)
    return -jnp.sum(_unit(p) * _unit(z), axis=-1)


def _unit(z):
    """Rows of ``z`` scaled to unit length; a zero row (all ReLUs dead) stays zero
    with a finite gradient (the norm's gradient is NaN at 0, a squared norm's is 0)."""
    tiny = jnp.finfo(z.dtype).eps ** 2
    return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z**2, axis=-1, keepdims=True), tiny))


def loss(params, target, x1, x2, cfg: Config) -> jax.Array:
    """Symmetrised SimSiam/BYOL loss of two views ``x1, x2 [B, 64]``, a scalar."""
    encoder, predictor = _nets(cfg)
    z1 = encoder.apply(params["encoder"], x1)
    z2 = encoder.apply(params["encoder"], x2)
    if cfg.target == "ema":
        t1 = encoder.apply(target, x1)
        t2 = encoder.apply(target, x2)
    else:
        t1, t2 = z1, z2
    if cfg.stop_gradient:
        t1, t2 = jax.lax.stop_gradient(t1), jax.lax.stop_gradient(t2)
    if cfg.predictor:
        p1 = predictor.apply(params["predictor"], z1)
        p2 = predictor.apply(params["predictor"], z2)
    else:
        p1, p2 = z1, z2
    return 0.5 * jnp.mean(_distance(p1, t2, cfg) + _distance(p2, t1, cfg))


def _batch(key, cfg: Config):
    x, mean = images(cfg)
    k_idx, k1, k2 = jax.random.split(key, 3)
    idx = jax.random.randint(k_idx, (cfg.batch_size,), 0, x.shape[0])
    batch = jnp.asarray(x)[idx]
    mean = jnp.asarray(mean)
    return _augment(k1, batch, mean, cfg), _augment(k2, batch, mean, cfg)


def init(key: jax.Array, cfg: Config) -> State:
    """Default flax initialisation scaled by ``init_scale``; zero momentum."""
    encoder, predictor = _nets(cfg)
    key, k_enc, k_pred, k_batch = jax.random.split(key, 4)
    dtype = jnp.dtype(cfg.dtype)
    dummy = jnp.zeros((1, _SIDE * _SIDE), dtype)
    params = {
        "encoder": encoder.init(k_enc, dummy),
        "predictor": predictor.init(k_pred, jnp.zeros((1, cfg.embed_dim), dtype)),
    }
    params = jax.tree.map(lambda p: cfg.init_scale * p, params)
    target = params["encoder"] if cfg.target == "ema" else None
    x1, x2 = _batch(k_batch, cfg)
    return State(
        params=params,
        target=target,
        velocity=jax.tree.map(jnp.zeros_like, params),
        loss=loss(params, target, x1, x2, cfg),
        key=key,
    )


def step(state: State, cfg: Config) -> State:
    """One SGD step on a fresh batch of two augmented views; then the EMA target."""
    key, k_batch = jax.random.split(state.key)
    x1, x2 = _batch(k_batch, cfg)
    value, grad = jax.value_and_grad(loss)(state.params, state.target, x1, x2, cfg)
    grad = jax.tree.map(lambda g, p: g + cfg.weight_decay * p, grad, state.params)
    velocity = jax.tree.map(lambda v, g: cfg.momentum * v + g, state.velocity, grad)
    params = jax.tree.map(lambda p, v: p - cfg.lr * v, state.params, velocity)
    target = state.target
    if cfg.target == "ema":
        target = jax.tree.map(
            lambda t, p: t + cfg.ema * (p - t), target, params["encoder"]
        )
    return State(params, target, velocity, value, key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Embeddings of all 1,797 clean (centred, unshifted) images.

    Returns:
      ``spectrum`` ([k], eigenvalues of the embedding covariance in decreasing order,
      divided by their sum), ``effective_rank`` (Roy–Vetterli effective rank of the
      centred embeddings, in [1, k]), ``output_std`` (mean over the k axes of the
      standard deviation of the l2-normalised embeddings: about 1/√k when spread,
      0 at complete collapse; Chen & He 2021, arXiv 2011.10566, Sec. 4.1),
      ``embed_var`` (tr of the embedding covariance) and ``loss`` (latest batch).
    """
    x, mean = images(cfg)
    flat = jnp.asarray(x).reshape(x.shape[0], -1) - jnp.asarray(mean)[None, :]
    encoder, _ = _nets(cfg)
    z = encoder.apply(state.params["encoder"], flat)
    centred = z - jnp.mean(z, axis=0, keepdims=True)
    eig = jnp.sort(jnp.linalg.eigvalsh(centred.T @ centred / z.shape[0]))[::-1]
    eig = jnp.maximum(eig, 0)
    total = jnp.sum(eig)
    unit = _unit(z)
    return {
        "spectrum": eig / jnp.where(total > 0, total, 1.0),
        "effective_rank": spectral.effective_rank(centred),
        "output_std": jnp.mean(jnp.std(unit, axis=0)),
        "embed_var": total,
        "loss": state.loss,
    }
