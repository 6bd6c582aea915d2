"""A linear (conditional) β-VAE: posterior collapse.

Data ``x ~ N(0, Σ)``, ``Σ = diag(eigenvalues)`` ``[D]``. With ``condition_dim = D_y > 0``
a condition ``y ∈ R^{D_y}`` comes with it, ``y_j = ρ x_j/√λ_j + √(1−ρ²) ξ_j``
(``ρ = correlation``, ``ξ ~ N(0, I)``), so ``Corr(x_j, y_j) = ρ`` for ``j < D_y``.
With ``u = [x; y]``:

  encoder  q(z|u) = N(A u, diag(s)),      A [k, D + D_y], s [k] (input independent)
  decoder  p(x|z, y) = N(W z + G y, σ² I), W [D, k], G [D, D_y]
  prior    p(z) = N(0, I_k)

and the β-weighted negative ELBO per sample (the loss)

  E ‖x − W z − G y‖²/(2σ²) + (D/2) log(2πσ²) + β Σ_i KL(q(z_i|u) ‖ N(0, 1)).

``objective="exact"`` takes the expectation over ``z`` and ``u`` in closed form from
the second moment ``S = E[u uᵀ]`` — the population moment (``samples = 0``) or that of
``samples`` points drawn once at ``init`` — and trains by full-batch GD or Adam.
``objective="mc"`` draws ``batch_size`` of the samples and one ``ε ~ N(0, I_k)`` per
point each step (the reparameterised ELBO; KL in closed form, as usual).

``decoder="inverse_lipschitz"`` keeps the smallest singular value of ``W`` at least
``lipschitz`` by projecting after every step (clamping singular values from below is
the Frobenius-nearest such matrix); Kinoshita et al. 2023 (arXiv 2304.12770). With
``learn_sigma2`` the decoder variance is trained too (as ``log σ²``); ``sigma2`` is then
its initial value. The learning rate is ``lr / (1 + lr_decay · step)``.

Posterior collapse: Lucas et al. 2019 (arXiv 1911.02469); Wang & Ziyin 2022
(arXiv 2205.04009); CVAE: Dang et al. 2023 (arXiv 2306.05023). Theory:
theory/linear_vae.md.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "init", "loss", "mc_loss", "observe", "step"]


@struct.dataclass
class Config:
    """Hyperparameters. Sizes and choices are static; floats can be swept."""

    eigenvalues: tuple[float, ...] = struct.field(
        pytree_node=False, default=(4.0, 2.0, 1.0, 0.5)
    )
    latent_dim: int = struct.field(pytree_node=False, default=3)
    condition_dim: int = struct.field(pytree_node=False, default=0)
    objective: str = struct.field(pytree_node=False, default="exact")
    samples: int = struct.field(pytree_node=False, default=0)
    batch_size: int = struct.field(pytree_node=False, default=32)
    decoder: str = struct.field(pytree_node=False, default="linear")
    learn_sigma2: bool = struct.field(pytree_node=False, default=False)
    optimizer: str = struct.field(pytree_node=False, default="gd")
    dtype: str = struct.field(pytree_node=False, default="float32")
    beta: float = 1.0
    sigma2: float = 1.0
    correlation: float = 0.0
    lipschitz: float = 0.0
    lr: float = 0.05
    lr_decay: float = 0.0
    init_scale: float = 0.5
    kl_threshold: float = 1e-2

    def __post_init__(self):
        eigs = self.eigenvalues
        if not isinstance(eigs, tuple | list) or len(eigs) == 0:
            raise ValueError(
                f"eigenvalues={eigs!r} must be a non-empty tuple of positive floats"
            )
        for i, v in enumerate(eigs):
            check_range(f"eigenvalues[{i}]", v, 0.0, low_open=True)
        object.__setattr__(self, "eigenvalues", tuple(float(v) for v in eigs))
        D = len(self.eigenvalues)
        check_int("latent_dim", self.latent_dim, 1, D)
        check_int("condition_dim", self.condition_dim, 0, D)
        check_choice("objective", self.objective, ("exact", "mc"))
        check_int("samples", self.samples, 0)
        if self.objective == "mc" and self.samples == 0:
            raise ValueError(
                "samples=0 is out of range for objective='mc': allowed >= 1 (the "
                "reparameterised ELBO trains on drawn samples)"
            )
        check_int("batch_size", self.batch_size, 1)
        check_choice("decoder", self.decoder, ("linear", "inverse_lipschitz"))
        check_choice("learn_sigma2", self.learn_sigma2, (False, True))
        check_choice("optimizer", self.optimizer, ("gd", "adam"))
        check_dtype("dtype", self.dtype)
        check_range("beta", self.beta, 0.0, low_open=True)
        check_range("sigma2", self.sigma2, 0.0, low_open=True)
        check_range("correlation", self.correlation, 0.0, 1.0, high_open=True)
        check_range("lipschitz", self.lipschitz, 0.0)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("lr_decay", self.lr_decay, 0.0)
        check_range("init_scale", self.init_scale, 0.0, low_open=True)
        check_range("kl_threshold", self.kl_threshold, 0.0, low_open=True)

    @property
    def data_dim(self) -> int:
        return len(self.eigenvalues)


class Params(NamedTuple):
    A: jax.Array  # [k, D + D_y] encoder mean
    W: jax.Array  # [D, k] decoder
    G: jax.Array  # [D, D_y] decoder weight on the condition
    log_s: jax.Array  # [k] encoder log-variances
    log_sigma2: jax.Array  # [] decoder log-variance


class State(NamedTuple):
    params: Params
    opt_state: optax.OptState
    moment: jax.Array  # [D + D_y, D + D_y] E[u uᵀ] the exact objective uses
    data: jax.Array  # [samples, D + D_y] (empty for the population objective)
    latent_eigs: jax.Array  # [D] eigenvalues of Cov(x | y) in `moment`, descending
    key: jax.Array
    step: jax.Array  # [] int32


def _population_moment(cfg: Config, dtype) -> jax.Array:
    lam = jnp.asarray(cfg.eigenvalues, dtype)
    D, Dy = cfg.data_dim, cfg.condition_dim
    cross = jnp.zeros((D, Dy), dtype)
    cross = cross.at[jnp.arange(Dy), jnp.arange(Dy)].set(
        cfg.correlation * jnp.sqrt(lam[:Dy])
    )
    return jnp.block([[jnp.diag(lam), cross], [cross.T, jnp.eye(Dy, dtype=dtype)]])


def _draw(key, cfg: Config, n: int, dtype) -> jax.Array:
    """``[n, D + D_y]`` samples of ``u = [x; y]``."""
    D, Dy = cfg.data_dim, cfg.condition_dim
    kx, ky = jax.random.split(key)
    sd = jnp.sqrt(jnp.asarray(cfg.eigenvalues, dtype))
    x = cr.normal(kx, (n, D), dtype) * sd[None, :]
    rho = jnp.asarray(cfg.correlation, dtype)
    xi = cr.normal(ky, (n, Dy), dtype)
    y = rho * x[:, :Dy] / sd[None, :Dy] + jnp.sqrt(1 - rho**2) * xi
    return jnp.concatenate([x, y], axis=1)


def _conditional_covariance(moment: jax.Array, D: int) -> jax.Array:
    """``Σ_xx − Σ_xy Σ_yy⁻¹ Σ_yx`` ``[D, D]`` of a joint second moment."""
    sxx, sxy, syy = moment[:D, :D], moment[:D, D:], moment[D:, D:]
    if syy.shape[0] == 0:
        return sxx
    return sxx - sxy @ jnp.linalg.solve(syy, sxy.T)


def _optimizer(cfg: Config) -> optax.GradientTransformation:
    # The step size is applied in `step` (it decays with the step count).
    if cfg.optimizer == "adam":
        return optax.scale_by_adam()
    return optax.identity()


def init(key: jax.Array, cfg: Config) -> State:
    dtype = jnp.dtype(cfg.dtype)
    D, Dy, k = cfg.data_dim, cfg.condition_dim, cfg.latent_dim
    k_data, k_a, k_w, k_run = jax.random.split(key, 4)
    if cfg.samples > 0:
        data = _draw(k_data, cfg, cfg.samples, dtype)
        moment = data.T @ data / cfg.samples
    else:
        data = jnp.zeros((0, D + Dy), dtype)
        moment = _population_moment(cfg, dtype)
    scale = jnp.asarray(cfg.init_scale, dtype)
    params = Params(
        A=scale * cr.normal(k_a, (k, D + Dy), dtype) / math.sqrt(D + Dy),
        W=scale * cr.normal(k_w, (D, k), dtype) / math.sqrt(k),
        G=jnp.zeros((D, Dy), dtype),
        log_s=jnp.zeros((k,), dtype),
        log_sigma2=jnp.log(jnp.asarray(cfg.sigma2, dtype)),
    )
    params = _project(params, cfg)
    latent_eigs = jnp.linalg.eigvalsh(_conditional_covariance(moment, D))[::-1]
    return State(
        params=params,
        opt_state=_optimizer(cfg).init(params),
        moment=moment,
        data=data,
        latent_eigs=latent_eigs,
        key=k_run,
        step=jnp.zeros((), jnp.int32),
    )


def _kl_per_latent(params: Params, moment: jax.Array) -> jax.Array:
    """``[k]`` ``E_u KL(q(z_i|u) ‖ N(0, 1))`` under the second moment ``moment``."""
    s = jnp.exp(params.log_s)
    mean_sq = jnp.einsum("ia,ab,ib->i", params.A, moment, params.A)
    return 0.5 * (s + mean_sq - 1.0 - params.log_s)


def _expected_terms(params: Params, moment: jax.Array, D: int):
    """(``E‖x − Wz − Gy‖²``, per-latent KL ``[k]``) in closed form."""
    Dy = moment.shape[0] - D
    eye = jnp.eye(D, D + Dy, dtype=moment.dtype)
    pick_y = jnp.eye(Dy, D + Dy, k=D, dtype=moment.dtype)
    M = eye - params.W @ params.A - params.G @ pick_y  # [D, D + D_y]
    s = jnp.exp(params.log_s)
    recon = jnp.einsum("da,ab,db->", M, moment, M) + jnp.sum(s[None, :] * params.W**2)
    return recon, _kl_per_latent(params, moment)


def _sigma2(params: Params, cfg: Config) -> jax.Array:
    if cfg.learn_sigma2:
        return jnp.exp(params.log_sigma2)
    return jnp.asarray(cfg.sigma2, params.W.dtype)


def _nll(recon, kl, sigma2, beta, D):
    return recon / (2 * sigma2) + 0.5 * D * jnp.log(2 * jnp.pi * sigma2) + beta * kl


def loss(params: Params, moment: jax.Array, cfg: Config) -> jax.Array:
    """Exact β-weighted negative ELBO per sample under the second moment ``moment``."""
    recon, kl = _expected_terms(params, moment, cfg.data_dim)
    return _nll(recon, jnp.sum(kl), _sigma2(params, cfg), cfg.beta, cfg.data_dim)


def mc_loss(params: Params, batch: jax.Array, eps: jax.Array, cfg: Config):
    """Reparameterised β-negative ELBO on ``batch [B, D + D_y]`` with ``eps [B, k]``."""
    D = cfg.data_dim
    x, y = batch[:, :D], batch[:, D:]
    s = jnp.exp(params.log_s)
    mean = batch @ params.A.T  # [B, k]
    z = mean + jnp.sqrt(s)[None, :] * eps
    recon = jnp.mean(jnp.sum((x - z @ params.W.T - y @ params.G.T) ** 2, axis=1))
    kl = 0.5 * jnp.sum(s + jnp.mean(mean**2, axis=0) - 1.0 - params.log_s)
    return _nll(recon, kl, _sigma2(params, cfg), cfg.beta, D)


def _project(params: Params, cfg: Config) -> Params:
    if cfg.decoder != "inverse_lipschitz":
        return params
    U, sv, Vt = jnp.linalg.svd(params.W, full_matrices=False)
    floor = jnp.asarray(cfg.lipschitz, sv.dtype)
    return params._replace(W=(U * jnp.maximum(sv, floor)[None, :]) @ Vt)


def _gradient(state: State, cfg: Config) -> Params:
    if cfg.objective == "exact":
        grads = jax.grad(loss)(state.params, state.moment, cfg)
    else:
        k_idx, k_eps = jax.random.split(jax.random.fold_in(state.key, state.step))
        idx = jax.random.randint(k_idx, (cfg.batch_size,), 0, cfg.samples)
        # ε is Monte Carlo noise: float32 resolution is plenty, and float64 normals
        # cost twice the random bits.
        eps_dtype = jnp.promote_types(state.data.dtype, jnp.float32)
        eps_dtype = jnp.float32 if eps_dtype == jnp.float64 else eps_dtype
        eps = cr.normal(k_eps, (cfg.batch_size, cfg.latent_dim), eps_dtype)
        eps = eps.astype(state.data.dtype)
        grads = jax.grad(mc_loss)(state.params, state.data[idx], eps, cfg)
    if not cfg.learn_sigma2:
        grads = grads._replace(log_sigma2=jnp.zeros_like(grads.log_sigma2))
    return grads


def step(state: State, cfg: Config) -> State:
    """One optimiser step (then the decoder projection, if constrained)."""
    grads = _gradient(state, cfg)
    direction, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.params)
    dtype = state.params.W.dtype
    lr = jnp.asarray(cfg.lr, dtype) / (
        1 + jnp.asarray(cfg.lr_decay, dtype) * state.step
    )
    params = jax.tree.map(lambda p, d: p - lr * d, state.params, direction)
    return state._replace(
        params=_project(params, cfg), opt_state=opt_state, step=state.step + 1
    )


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Metrics of the exact objective under the training moment.

    ``kl`` ``[k]``: per-latent ``E KL(q(z_i|u) ‖ p(z_i))``, descending; ``active``: how
    many exceed ``kl_threshold``; ``decoder_norms`` ``[k]``: ``‖W e_i‖`` descending;
    ``encoder_variances`` ``[k]``: ``s_i`` ascending; ``sigma2``; ``loss`` (β-weighted)
    and ``elbo`` (β = 1) per sample; ``latent_eigs`` ``[D]``: eigenvalues of
    ``Cov(x | y)`` of the training data, descending (of ``Cov(x)`` without a
    condition); ``grad_norm``: of the exact objective (for the constrained decoder, of
    its gradient mapping).
    """
    p = state.params
    recon, kl = _expected_terms(p, state.moment, cfg.data_dim)
    sigma2 = _sigma2(p, cfg)
    grads = jax.grad(loss)(p, state.moment, cfg)
    if not cfg.learn_sigma2:
        grads = grads._replace(log_sigma2=jnp.zeros_like(grads.log_sigma2))
    if cfg.decoder == "inverse_lipschitz":
        # The gradient mapping (θ − P(θ − lr ∇f))/lr: zero exactly at a constrained
        # stationary point, ∇f where the constraint is inactive.
        lr = jnp.asarray(cfg.lr, p.W.dtype)
        moved = _project(jax.tree.map(lambda q, g: q - lr * g, p, grads), cfg)
        grads = jax.tree.map(lambda q, r: (q - r) / lr, p, moved)
    grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    dtype = p.W.dtype
    return {
        "kl": jnp.sort(kl)[::-1],
        "active": jnp.sum(kl > cfg.kl_threshold).astype(dtype),
        "decoder_norms": jnp.sort(jnp.sqrt(jnp.sum(p.W**2, axis=0)))[::-1],
        "encoder_variances": jnp.sort(jnp.exp(p.log_s)),
        "sigma2": sigma2,
        "loss": _nll(recon, jnp.sum(kl), sigma2, cfg.beta, cfg.data_dim),
        "elbo": -_nll(recon, jnp.sum(kl), sigma2, 1.0, cfg.data_dim),
        "latent_eigs": state.latent_eigs,
        "grad_norm": grad_norm,
    }
