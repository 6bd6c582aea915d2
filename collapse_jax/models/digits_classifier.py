"""A flax MLP or small CNN trained on the scikit-learn digits, as an engine model.

Data: ``collapse_jax.datasets.digits()`` (1,797 8×8 images, K = 10), split per class in
file order: the last ``test_per_class`` images of every class are the test set, the
first ``per_class`` (one int, or one count per class for imbalanced training) the
training set. Both are fixed by the Config, so only the initialisation and the
minibatches differ between seeds.

Network: ``arch="mlp"``: Dense(w) + ReLU for each w in ``widths``, then a Dense
classifier ``z = W h + b``. ``arch="cnn"``: 3×3 Conv(c) + ReLU + 2×2 average pooling for
each c in ``channels``, flattened, then the same Dense layers and classifier. ``h`` (the
input of the classifier) are the penultimate features.

Objective (per step, on the full training set or a minibatch of ``batch_size`` drawn
without replacement from the key in State):

  L = mean_i ℓ(z_i, y_i) + λ/2 Σ_layers ‖kernel‖²_F,   λ = ``weight_decay``,

ℓ = cross-entropy (``loss="ce"``) or ½‖z − e_y‖² (``loss="mse"``). Biases are not
decayed, so the classifier's bias is free (theory/digits_classifier.md uses that).
Optimiser: plain SGD (``sgd``), heavy-ball ``momentum`` or ``adam`` (optax), with the
decay inside L, so a stationary point of the optimiser is one of L.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from collapse_jax import datasets
from collapse_jax import metrics as M
from collapse_jax._config import (
    ClassSizes,
    check_choice,
    check_dtype,
    check_int,
    check_per_class,
    check_range,
)
from collapse_jax.metrics import probe

__all__ = [
    "Config",
    "State",
    "init",
    "layer_names",
    "loss",
    "network",
    "observe",
    "step",
]

ARCHS = ("mlp", "cnn")
LOSSES = ("ce", "mse")
OPTIMIZERS = ("sgd", "momentum", "adam")
NUM_CLASSES = 10


@functools.cache
def _class_counts() -> tuple[int, ...]:
    return tuple(
        int(c) for c in np.bincount(datasets.digits().y, minlength=NUM_CLASSES)
    )


def _check_widths(name: str, value: Any, low: int) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise ValueError(f"{name}={value!r} must be a tuple of integers >= {low}")
    for i, w in enumerate(value):
        check_int(f"{name}[{i}]", w, low)
    return tuple(int(w) for w in value)


@struct.dataclass
class Config(ClassSizes):
    """Architecture, sizes, loss and optimiser are static; the floats sweep."""

    arch: str = struct.field(pytree_node=False, default="mlp")
    widths: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    channels: tuple[int, ...] = struct.field(pytree_node=False, default=(8, 16))
    per_class: int | tuple[int, ...] = struct.field(pytree_node=False, default=100)
    test_per_class: int = struct.field(pytree_node=False, default=50)
    loss: str = struct.field(pytree_node=False, default="ce")
    optimizer: str = struct.field(pytree_node=False, default="momentum")
    batch_size: int = struct.field(pytree_node=False, default=0)  # 0: full batch
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self):
        check_choice("arch", self.arch, ARCHS)
        object.__setattr__(self, "widths", _check_widths("widths", self.widths, 1))
        if not self.widths:
            raise ValueError("widths=() needs at least one hidden Dense layer")
        channels = _check_widths("channels", self.channels, 1)
        object.__setattr__(self, "channels", channels)
        if self.arch == "cnn" and not 1 <= len(channels) <= 3:
            raise ValueError(
                f"channels={channels}: arch='cnn' needs 1 to 3 conv layers (each "
                "halves the 8×8 image)"
            )
        test_max = min(_class_counts()) - 1
        check_int("test_per_class", self.test_per_class, 1, test_max)
        per_class = check_per_class("per_class", self.per_class, NUM_CLASSES)
        object.__setattr__(self, "per_class", per_class)
        room = min(_class_counts()) - self.test_per_class
        for k, n in enumerate(self.counts):
            if n > room:
                raise ValueError(
                    f"per_class[{k}]={n} is out of range: allowed [1, {room}] "
                    f"(the smallest class has {min(_class_counts())} images, "
                    f"test_per_class={self.test_per_class} of them held out)"
                )
        check_choice("loss", self.loss, LOSSES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_int("batch_size", self.batch_size, 0, self.num_samples)
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES


class State(NamedTuple):
    params: Any  # flax variables {"params": ...}
    opt_state: Any
    key: jax.Array  # minibatch draws


class _Net(nn.Module):
    arch: str
    widths: tuple[int, ...]
    channels: tuple[int, ...]
    num_classes: int
    dtype: Any

    @nn.compact
    def __call__(self, x):  # x: [N, 8, 8]
        kw = dict(dtype=self.dtype, param_dtype=self.dtype)
        if self.arch == "cnn":
            x = x[..., None]
            for i, c in enumerate(self.channels):
                x = nn.relu(nn.Conv(c, (3, 3), name=f"conv_{i}", **kw)(x))
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for i, w in enumerate(self.widths):
            x = nn.relu(nn.Dense(w, name=f"dense_{i}", **kw)(x))
        return nn.Dense(self.num_classes, name="classifier", **kw)(x)


def network(cfg: Config) -> nn.Module:
    """The flax module of ``cfg``: images ``[N, 8, 8]`` -> logits ``[N, K]``."""
    return _Net(cfg.arch, cfg.widths, cfg.channels, NUM_CLASSES, jnp.dtype(cfg.dtype))


def layer_names(cfg: Config) -> tuple[str, ...]:
    """The probed layers in order: conv layers (cnn), hidden Dense layers, classifier.
    Layer l's features are its input: layer 0 sees the images, the classifier ``h``."""
    convs = range(len(cfg.channels)) if cfg.arch == "cnn" else ()
    convs = tuple(f"conv_{i}" for i in convs)
    return convs + tuple(f"dense_{i}" for i in range(len(cfg.widths))) + ("classifier",)


@functools.cache
def _split(per_class: tuple[int, ...], test_per_class: int, dtype: str):
    """Train and test images and labels, each sorted by class (numpy, read-only)."""
    data = datasets.digits(np.dtype(dtype))
    train, test = [], []
    for k, n in enumerate(per_class):
        idx = np.flatnonzero(data.y == k)
        train.append(idx[:n])
        test.append(idx[-test_per_class:])
    train, test = np.concatenate(train), np.concatenate(test)
    out = (data.x[train], data.y[train], data.x[test], data.y[test])
    for a in out:
        a.setflags(write=False)
    return out


def _data(cfg: Config):
    return _split(cfg.counts, cfg.test_per_class, cfg.dtype)


def _optimizer(cfg: Config) -> optax.GradientTransformation:
    if cfg.optimizer == "sgd":
        return optax.sgd(cfg.lr)
    if cfg.optimizer == "momentum":
        return optax.sgd(cfg.lr, momentum=cfg.momentum)
    return optax.adam(cfg.lr)


def _fit(logits: jax.Array, y: jax.Array, cfg: Config) -> jax.Array:
    """``[N]`` per-sample loss."""
    if cfg.loss == "ce":
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    onehot = jax.nn.one_hot(y, NUM_CLASSES, dtype=logits.dtype)
    return 0.5 * jnp.sum((logits - onehot) ** 2, axis=1)


def _decay(params: Any) -> jax.Array:
    """Σ ‖kernel‖²_F over every layer (biases excluded)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(jnp.sum(v**2) for path, v in flat if path[-1].key == "kernel")


def loss(params: Any, cfg: Config, x: jax.Array, y: jax.Array) -> jax.Array:
    """The regularised objective L on images ``x [N, 8, 8]``, labels ``y [N]``."""
    logits = network(cfg).apply(params, x)
    return jnp.mean(_fit(logits, y, cfg)) + cfg.weight_decay / 2 * _decay(params)


def init(key: jax.Array, cfg: Config) -> State:
    """flax's default initialisers (LeCun normal kernels, zero biases)."""
    k_param, k_batch = jax.random.split(key)
    x = jnp.zeros((1, 8, 8), jnp.dtype(cfg.dtype))
    params = network(cfg).init(k_param, x)
    return State(params, _optimizer(cfg).init(params), k_batch)


def step(state: State, cfg: Config) -> State:
    """One optimiser step on the full training set or on a fresh minibatch."""
    x, y = (jnp.asarray(a) for a in _data(cfg)[:2])
    key = state.key
    if cfg.batch_size:
        key, sub = jax.random.split(key)
        idx = jax.random.choice(sub, cfg.num_samples, (cfg.batch_size,), replace=False)
        x, y = x[idx], y[idx]
    grads = jax.grad(loss)(state.params, cfg, x, y)
    updates, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.params)
    return State(optax.apply_updates(state.params, updates), opt_state, key)


def _residual(logits: jax.Array, y: jax.Array, cfg: Config) -> jax.Array:
    """``[N, K]`` ∂ℓ/∂z: p − e_y (ce) or z − e_y (mse)."""
    onehot = jax.nn.one_hot(y, NUM_CLASSES, dtype=logits.dtype)
    if cfg.loss == "ce":
        return jax.nn.softmax(logits, axis=1) - onehot
    return logits - onehot


def _error(logits, y):
    # a mean of 0/1 mismatches, as nc4 and ncc_error are: 1 − accuracy would round
    # below zero in float32
    return jnp.mean((jnp.argmax(logits, axis=1) != y).astype(logits.dtype))


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Losses, accuracies, NC metrics per layer and of the last layer, on the full
    training set (test metrics on the test set).

    Shapes: scalars, except ``nc1``, ``cdnv``, ``nc2_h`` (``[L]``, one per probed layer
    of ``layer_names``: NC1, CDNV and the simplex-ETF distance of the centred class
    means of the features entering that layer), ``w_norm``, ``h_norm`` (``[K]``:
    classifier rows and centred class means of the penultimate features ``h``) and
    ``w_cos`` (``[K, K]`` cosines between classifier rows). The last layer adds
    ``nc2_w``, ``nc3``, ``nc4``, equinorms, ``norm_ratio`` (mean ‖w_k‖ / mean
    ‖μ_k − μ_G‖), ``logit_gap`` (mean z_y − max_{k≠y} z_k), ``p_true`` (mean softmax
    probability of the true class), ``true_residual`` (mean −∂ℓ/∂z_y: 1 − p_y for
    ce, 1 − z_y for mse), ``ncc_error`` (training error of the nearest-class-mean rule
    on ``h``), ``w_outside_means`` (‖W(I − Π)‖_F/‖W‖_F, Π the
    projector on the span of the centred class means) and the quantities bounding it
    (theory/digits_classifier.md): ``grad_w_norm``, ``grad_b_norm`` (L's gradient in
    the classifier's kernel and bias), ``global_mean_norm`` ‖μ_G‖, ``within_trace``
    tr Σ_W(h), ``residual_rms`` √(mean_i ‖∂ℓ/∂z_i‖²), ``w_fro`` ‖W‖_F.
    """
    x, y, x_test, y_test = (jnp.asarray(a) for a in _data(cfg))
    net = network(cfg)
    K = NUM_CLASSES
    value, grads = jax.value_and_grad(loss)(state.params, cfg, x, y)
    logits, feats = probe.apply_with_features(net, state.params, x)
    names = layer_names(cfg)
    per_layer = [feats[n] for n in names]
    H = per_layer[-1]
    head = state.params["params"]["classifier"]
    W, b = head["kernel"].T, head["bias"]  # [K, d], [K]
    means, _ = M.class_means(H, y, K)
    mu_g = H.mean(axis=0)
    centred = means - mu_g[None, :]
    w_norm = jnp.linalg.norm(W, axis=1)
    h_norm = jnp.linalg.norm(centred, axis=1)
    unit = W / jnp.maximum(w_norm, jnp.finfo(W.dtype).tiny)[:, None]
    outside = W - (W @ jnp.linalg.pinv(centred)) @ centred
    true = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, K, dtype=bool), -jnp.inf, logits)
    resid = _residual(logits, y, cfg)
    head_grads = grads["params"]["classifier"]
    test_logits = net.apply(state.params, x_test)
    return {
        "loss": value,
        "train_loss": jnp.mean(_fit(logits, y, cfg)),
        "train_error": _error(logits, y),
        "test_loss": jnp.mean(_fit(test_logits, y_test, cfg)),
        "test_error": _error(test_logits, y_test),
        "grad_norm": jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))),
        **_per_layer_metrics(per_layer, y),
        "nc2_w": M.nc2_etf_distance(W),
        "nc3": M.nc3_self_duality(W, H, y, K),
        "nc4": M.nc4_ncc_mismatch(W, H, y, K, b),
        "equinorm_h": M.equinorm(centred),
        "equinorm_w": M.equinorm(W),
        "w_norm": w_norm,
        "h_norm": h_norm,
        "w_cos": unit @ unit.T,
        "norm_ratio": jnp.mean(w_norm) / jnp.mean(h_norm),
        "logit_gap": jnp.mean(true - jnp.max(others, axis=1)),
        "p_true": jnp.mean(
            jnp.take_along_axis(jax.nn.softmax(logits, axis=1), y[:, None], axis=1)
        ),
        "true_residual": -jnp.mean(jnp.take_along_axis(resid, y[:, None], axis=1)),
        "ncc_error": jnp.mean((_nearest_mean(H, means) != y).astype(H.dtype)),
        "w_outside_means": jnp.linalg.norm(outside) / jnp.linalg.norm(W),
        "grad_w_norm": jnp.linalg.norm(head_grads["kernel"]),
        "grad_b_norm": jnp.linalg.norm(head_grads["bias"]),
        "global_mean_norm": jnp.linalg.norm(mu_g),
        "within_trace": jnp.trace(M.within_class_covariance(H, y, K)),
        "residual_rms": jnp.sqrt(jnp.mean(jnp.sum(resid**2, axis=1))),
        "w_fro": jnp.linalg.norm(W),
    }


def _nearest_mean(H: jax.Array, means: jax.Array) -> jax.Array:
    """``[N]`` index of the class mean nearest to each row of ``H``."""
    return jnp.argmin(
        jnp.sum((H[:, None, :] - means[None, :, :]) ** 2, axis=-1), axis=1
    )


def _per_layer_metrics(
    per_layer: list[jax.Array], y: jax.Array
) -> dict[str, jax.Array]:
    """NC1, CDNV and the ETF distance of the centred class means of every layer, ``[L]``.

    The layers are zero-padded to one width and stacked, so one vmapped copy of the
    metrics compiles whatever the depth; padding with zero coordinates changes none of
    the three (traces, distances and Gram matrices ignore them).
    """
    width = max(h.shape[1] for h in per_layer)
    stacked = jnp.stack(
        [jnp.pad(h, ((0, 0), (0, width - h.shape[1]))) for h in per_layer]
    )

    def metrics(H):
        means, _ = M.class_means(H, y, NUM_CLASSES)
        return {
            "nc1": M.nc1(H, y, NUM_CLASSES),
            "cdnv": M.cdnv(H, y, NUM_CLASSES),
            "nc2_h": M.nc2_etf_distance(means - H.mean(axis=0)[None, :]),
        }

    return jax.vmap(metrics)(stacked)
