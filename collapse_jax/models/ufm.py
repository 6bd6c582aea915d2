"""Unconstrained features model (UFM): free features H and a linear classifier W.

Loss, averaged over the N samples, with weight decay λ/2‖·‖²_F (Zhu et al. 2021,
arXiv 2105.02375; Zhou et al. 2022, arXiv 2203.01238):

  mse:    1/(2N) ‖W H + b 1ᵀ − Y‖²_F + λ_W/2 ‖W‖²_F + λ_H/2 ‖H‖²_F + λ_b/2 ‖b‖²
  ce:     1/N Σ_i CE(W h_i + b, y_i)   + the same regularisers
  ls:     cross-entropy against the smoothed target (1 − ε) e_y + ε/K (label
          smoothing, ε = ``smoothing``)
  maxsup: 1/N Σ_i [CE(z_i, y_i) + ε (max_k z_ki − mean_k z_ki)] (Zhou et al. 2025,
          arXiv 2502.15798), z_i = W h_i + b

With ``tether=True`` the features are held near fixed inputs X instead of the origin,
λ_H/2 ‖H − X‖²_F (Tirer, Huang & Niles-Weed 2023, arXiv 2210.16658). X is drawn once
from the key in ``init``: class means ``input_scale`` · U (U ``[d, K]`` a random
orthonormal frame) plus within-class noise whose sample covariance is exactly
``input_noise``² · I (Gaussian, made class-centred and whitened), see theory/ufm.md.

With ``mixup=True`` (MSE only) the UFM is trained on mixed samples (Fisher, Meng &
Papyan 2024, arXiv 2402.06171): sample i of class a mixed with a partner of class b
(uniform, as partners are for balanced classes) at λ ~ Beta(α, α), target
λ e_a + (1 − λ) e_b, each mixed sample with its own free feature. The expectation over
λ is exact with the two nodes λ = 1/2 ± sd(λ), weight 1/2 each, because the objective
minimised over the features is quadratic in λ (theory/ufm.md). H is then
``[d, 2KN]``, column (i, b, q) = ``(i K + b) 2 + q``; the metrics are taken on the
pure columns (b = a, q = 0), ``N`` of them, plus the classifier spectrum.

H is ``[d, N]`` (columns are samples, ordered by class), W is ``[K, d]``, b is ``[K]``.
Trained full batch by gradient descent (``gd``, alias ``sgd``), heavy-ball momentum or
Adam (optax).
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

__all__ = ["Config", "State", "init", "loss", "observe", "step"]

LOSSES = ("mse", "ce", "ls", "maxsup")
SOFTMAX_LOSSES = ("ce", "ls", "maxsup")


@struct.dataclass
class Config(ClassSizes):
    """UFM hyperparameters. Sizes and code paths are static; floats can be swept."""

    num_classes: int = struct.field(pytree_node=False, default=4)
    dim: int = struct.field(pytree_node=False, default=8)
    per_class: int | tuple[int, ...] = struct.field(pytree_node=False, default=5)
    loss: str = struct.field(pytree_node=False, default="mse")
    bias: bool = struct.field(pytree_node=False, default=False)
    optimizer: str = struct.field(pytree_node=False, default="gd")
    dtype: str = struct.field(pytree_node=False, default="float32")
    lambda_w: float = 5e-3
    lambda_h: float = 5e-3
    lambda_b: float = 0.0
    lr: float = 0.1
    momentum: float = 0.9
    init_scale: float = 0.1
    smoothing: float = 0.0  # ε of ``ls`` and ``maxsup``; unused by the other losses
    tether: bool = struct.field(pytree_node=False, default=False)
    input_scale: float = 1.0  # norm (> 0) of the inputs' class means (tether only)
    input_noise: float = 0.5  # within-class std of the inputs per direction (tether)
    mixup: bool = struct.field(pytree_node=False, default=False)
    mixup_alpha: float = 1.0  # α of the Beta(α, α) mixing weight (mixup only)

    def __post_init__(self):
        check_int("num_classes", self.num_classes, 2)
        check_int("dim", self.dim, 1)
        per_class = check_per_class("per_class", self.per_class, self.num_classes)
        object.__setattr__(self, "per_class", per_class)
        check_choice("loss", self.loss, LOSSES)
        check_choice("bias", self.bias, (True, False))
        check_choice("optimizer", self.optimizer, ("gd", "sgd", "momentum", "adam"))
        check_dtype("dtype", self.dtype)
        check_range("lambda_w", self.lambda_w, 0.0, low_open=True)
        check_range("lambda_h", self.lambda_h, 0.0, low_open=True)
        check_range("lambda_b", self.lambda_b, 0.0)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("init_scale", self.init_scale, 0.0)
        check_range("smoothing", self.smoothing, 0.0, 1.0, high_open=True)
        check_choice("tether", self.tether, (True, False))
        check_choice("mixup", self.mixup, (True, False))
        check_range("mixup_alpha", self.mixup_alpha, 0.0, low_open=True)
        if self.mixup and (self.loss != "mse" or self.tether):
            raise ValueError(
                f"mixup=True needs loss='mse' and tether=False (got loss={self.loss!r}, "
                f"tether={self.tether})"
            )
        check_range("input_scale", self.input_scale, 0.0, low_open=True)
        check_range("input_noise", self.input_noise, 0.0)
        if self.tether and not (
            self.num_classes <= self.dim <= self.num_samples - self.num_classes
        ):
            raise ValueError(
                f"tether=True needs num_classes <= dim <= num_samples - num_classes "
                f"(got dim={self.dim}, num_classes={self.num_classes}, "
                f"num_samples={self.num_samples}): the inputs' class means form a "
                "K-frame and their whitened within-class noise spans all of R^dim"
            )

    @property
    def num_columns(self) -> int:
        """Columns of H: N, or 2KN mixed samples with ``mixup``."""
        return self.num_samples * (2 * self.num_classes if self.mixup else 1)


class Params(NamedTuple):
    W: jax.Array  # [K, d]
    H: jax.Array  # [d, N]
    b: jax.Array  # [K]


class State(NamedTuple):
    params: Params
    opt_state: Any
    inputs: jax.Array | None = None  # [d, N] tether targets X (tether only)


def _optimizer(cfg: Config) -> optax.GradientTransformation:
    if cfg.optimizer in ("gd", "sgd"):  # full batch, so SGD is gradient descent
        return optax.sgd(cfg.lr)
    if cfg.optimizer == "momentum":
        return optax.sgd(cfg.lr, momentum=cfg.momentum)
    return optax.adam(cfg.lr)


def _onehot(cfg: Config, dtype) -> jax.Array:
    """``[K, N]`` one-hot labels Y."""
    return jax.nn.one_hot(jnp.asarray(cfg.labels), cfg.num_classes, dtype=dtype).T


def _draw_inputs(key: jax.Array, cfg: Config) -> jax.Array:
    """``[d, N]`` X = input_scale · U Y + E, with UᵀU = I_K, E Yᵀ = 0, E Eᵀ = Nσ² I_d."""
    ku, ke = jax.random.split(key)
    dtype = jnp.dtype(cfg.dtype)
    K, d, N = cfg.num_classes, cfg.dim, cfg.num_samples
    U, _ = jnp.linalg.qr(cr.normal(ku, (d, K), dtype))
    Y = _onehot(cfg, dtype)
    G = cr.normal(ke, (d, N), dtype)
    G = G - (G @ Y.T / jnp.asarray(cfg.counts, dtype)[None, :]) @ Y  # class-centred
    u, _, vt = jnp.linalg.svd(G, full_matrices=False)  # rows of vt ⊥ rows of Y
    E = cfg.input_noise * jnp.sqrt(jnp.asarray(N, dtype)) * (u @ vt)
    return cfg.input_scale * U @ Y + E


def init(key: jax.Array, cfg: Config) -> State:
    """Gaussian W, H with std ``init_scale``; b = 0. Tethered: X drawn (see above)
    and H = X + that Gaussian."""
    dtype = jnp.dtype(cfg.dtype)
    K, d = cfg.num_classes, cfg.dim
    # One draw for W and H: XLA on CPU compiles each vmapped random draw for about a
    # second, so two would double the cost of every start program.
    z = cr.normal(jax.random.split(key)[0], (K * d + d * cfg.num_columns,), dtype)
    params = Params(
        W=cfg.init_scale * z[: K * d].reshape(K, d),
        H=cfg.init_scale * z[K * d :].reshape(d, cfg.num_columns),
        b=jnp.zeros((K,), dtype),
    )
    inputs = None
    if cfg.tether:
        # A separate stream for X leaves the draws of W and H as without a tether.
        inputs = _draw_inputs(jax.random.fold_in(key, 1), cfg)
        # Features start at their inputs, as a network's would: from H ≈ 0 some modes
        # of W can settle with the wrong sign, a spurious minimum (theory/ufm.md).
        params = params._replace(H=params.H + inputs)
    return State(params, _optimizer(cfg).init(params), inputs)


def _logits(p: Params, cfg: Config) -> jax.Array:
    """``[K, columns]``."""
    out = p.W @ p.H
    return out + p.b[:, None] if cfg.bias else out


def _mixup_nodes(cfg: Config, dtype) -> jax.Array:
    """``[2]`` λ = 1/2 ± sd of Beta(α, α), sd = 1/(2√(2α + 1))."""
    half_width = 0.5 / jnp.sqrt(2 * cfg.mixup_alpha + 1)
    return jnp.stack([0.5 + half_width, 0.5 - half_width]).astype(dtype)


def _mixup_targets(cfg: Config, dtype) -> jax.Array:
    """``[K, 2KN]`` targets λ_q e_a + (1 − λ_q) e_b of column (i, b, q), a = y_i."""
    K, N = cfg.num_classes, cfg.num_samples
    lam = _mixup_nodes(cfg, dtype).reshape(1, 1, 2, 1)
    a = jax.nn.one_hot(jnp.asarray(cfg.labels), K, dtype=dtype).reshape(N, 1, 1, K)
    b = jnp.eye(K, dtype=dtype).reshape(1, K, 1, K)
    return (lam * a + (1 - lam) * b).reshape(N * K * 2, K).T


def _pure_columns(cfg: Config) -> np.ndarray:
    """``[N]`` the mixup columns (i, b = y_i, q = 0): each sample unmixed."""
    K = cfg.num_classes
    return (np.arange(cfg.num_samples) * K + cfg.labels) * 2


def loss(params: Params, cfg: Config, inputs: jax.Array | None = None) -> jax.Array:
    """The regularised training loss (a scalar); ``inputs`` is X when tethered."""
    labels = jnp.asarray(cfg.labels)
    logits = _logits(params, cfg)
    N = cfg.num_samples
    if cfg.mixup:  # every mixed sample weighs 1/(2K): K partner classes × 2 nodes
        Y = _mixup_targets(cfg, logits.dtype)
        fit = jnp.sum((logits - Y) ** 2) / (2 * N * 2 * cfg.num_classes)
    elif cfg.loss == "mse":
        Y = jax.nn.one_hot(labels, cfg.num_classes, dtype=logits.dtype).T
        fit = jnp.sum((logits - Y) ** 2) / (2 * N)
    elif cfg.loss == "ce":
        logp = jax.nn.log_softmax(logits, axis=0)
        fit = -jnp.mean(logp[labels, jnp.arange(N)])
    elif cfg.loss == "ls":  # by its definition; theory/ufm.md derives CE + ε(z_y − z̄)
        logp = jax.nn.log_softmax(logits, axis=0)
        onehot = jax.nn.one_hot(labels, cfg.num_classes, dtype=logits.dtype).T
        target = (1 - cfg.smoothing) * onehot + cfg.smoothing / cfg.num_classes
        fit = -jnp.sum(target * logp) / N
    else:  # maxsup
        logp = jax.nn.log_softmax(logits, axis=0)
        penalty = jnp.max(logits, axis=0) - jnp.mean(logits, axis=0)
        fit = -jnp.mean(logp[labels, jnp.arange(N)]) + cfg.smoothing * jnp.mean(penalty)
    H = params.H - inputs if cfg.tether else params.H
    h_sq = jnp.sum(H**2) / (2 * cfg.num_classes) if cfg.mixup else jnp.sum(H**2)
    reg = cfg.lambda_w / 2 * jnp.sum(params.W**2) + cfg.lambda_h / 2 * h_sq
    if cfg.bias:
        reg = reg + cfg.lambda_b / 2 * jnp.sum(params.b**2)
    return fit + reg


def step(state: State, cfg: Config) -> State:
    """One full-batch optimiser step."""
    grads = jax.grad(loss)(state.params, cfg, state.inputs)
    updates, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.params)
    return State(optax.apply_updates(state.params, updates), opt_state, state.inputs)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Loss, gradient norm, NC1–NC4, CDNV, norms and mean class logits.

    Shapes: scalars, except ``w_norm`` and ``h_norm`` (per class, ``[K]``) and
    ``class_logits`` (``[K, K]``, row k = mean logits of class k's samples). The
    softmax losses add ``logit_gap``: the mean over samples of z_y − max_{k≠y} z_k;
    a tether adds ``nc1_input``, NC1 of the inputs X. Mixup takes every metric on the
    pure columns and adds ``w_spectrum`` (``[K]`` singular values of W, descending) and
    ``interpolation_error``, ‖H − H_interp‖_F/‖H_interp‖_F with column (i, b, q) of
    H_interp = λ_q μ_{y_i} + (1 − λ_q) μ_b, μ the pure class means.
    """
    value, grads = jax.value_and_grad(loss)(state.params, cfg, state.inputs)
    grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    p = state.params
    if cfg.mixup:
        p = p._replace(H=p.H[:, _pure_columns(cfg)])
    K = cfg.num_classes
    labels = jnp.asarray(cfg.labels)
    H = p.H.T  # metrics take samples as rows
    b = p.b if cfg.bias else None
    means, _ = M.class_means(H, labels, K)
    centred = means - H.mean(axis=0)[None, :]
    logits = _logits(p, cfg).T
    class_logits, _ = M.class_means(logits, labels, K)
    out = {
        "loss": value,
        "grad_norm": grad_norm,
        "nc1": M.nc1(H, labels, K),
        "nc2_h": M.nc2_etf_distance(centred),
        "nc2_w": M.nc2_etf_distance(p.W),
        "equinorm_h": M.equinorm(centred),
        "equinorm_w": M.equinorm(p.W),
        "equiangular_h": M.equiangularity(centred),
        "equiangular_w": M.equiangularity(p.W),
        "nc3": M.nc3_self_duality(p.W, H, labels, K),
        "nc4": M.nc4_ncc_mismatch(p.W, H, labels, K, b),
        "cdnv": M.cdnv(H, labels, K),
        "w_norm": jnp.linalg.norm(p.W, axis=1),
        "h_norm": jnp.linalg.norm(means, axis=1),
        "b_mean": jnp.mean(p.b),
        "class_logits": class_logits,
    }
    if cfg.loss in SOFTMAX_LOSSES:
        Z = _logits(p, cfg)  # [K, N]
        true = Z[labels, jnp.arange(cfg.num_samples)]
        others = jnp.where(jax.nn.one_hot(labels, K, dtype=bool).T, -jnp.inf, Z)
        out["logit_gap"] = jnp.mean(true - jnp.max(others, axis=0))
    if cfg.tether:
        out["nc1_input"] = M.nc1(state.inputs.T, labels, K)
    if cfg.mixup:
        out["w_spectrum"] = jnp.linalg.svd(p.W, compute_uv=False)[:K]
        # Mixing weights of each column on the pure means: λ_q on μ_a, 1 − λ_q on μ_b.
        coeff = _mixup_targets(cfg, means.dtype)  # [K, 2KN]
        interp = means.T @ coeff
        gap = jnp.linalg.norm(state.params.H - interp)
        out["interpolation_error"] = gap / jnp.linalg.norm(interp)
    return out
