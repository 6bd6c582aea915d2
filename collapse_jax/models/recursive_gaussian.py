"""A d-dimensional Gaussian refitted each generation on samples of its previous fit.

Generation 0 is the original distribution N(0, I_d). Generation n+1 draws M samples from
generation n's fit and refits mean and covariance (Shumailov et al. 2023, arXiv
2305.17493, Sec. 3 "Gaussian model collapse"). Data policies:

  replace     fit on the M newest samples only;
  accumulate  fit on every sample drawn so far (the first M are real, drawn from the
              original), kept in a preallocated, masked pool of ``max_generations * M``
              rows;
  mix         each generation also draws M fresh real samples; the new fit is the
              weighted estimate w·(real fit) + (1−w)·(synthetic fit) with
              w = ``real_fraction`` (the weighted scheme of He, Xu, Cheng 2025,
              arXiv 2502.18049).

Covariance is fitted in full or diagonal; the estimator divides the scatter matrix by
M−1 (``unbiased``) or M (``mle``). ``check_steps`` refuses runs longer than the
``accumulate`` pool before they start.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "check_steps", "init", "observe", "step"]


@struct.dataclass
class Config:
    """Hyperparameters. Sizes and code paths are static; ``real_fraction`` can be swept.

    Attributes:
      dim: dimension d of the Gaussian.
      samples: M, samples drawn from the current fit each generation.
      estimator: ``"unbiased"`` (scatter / (M−1)) or ``"mle"`` (scatter / M).
      policy: ``"replace"``, ``"accumulate"`` or ``"mix"``.
      covariance: ``"full"`` or ``"diagonal"`` fit.
      max_generations: capacity of the ``accumulate`` pool; ``check_steps`` refuses
        longer runs, and a generation past it called directly makes every metric
        NaN rather than overwrite data.
      real_fraction: w in [0, 1], weight of the fresh real data under ``mix``.
      dtype: ``"float32"`` or ``"float64"``.
    """

    dim: int = struct.field(pytree_node=False, default=2)
    samples: int = struct.field(pytree_node=False, default=20)
    estimator: str = struct.field(pytree_node=False, default="unbiased")
    policy: str = struct.field(pytree_node=False, default="replace")
    covariance: str = struct.field(pytree_node=False, default="diagonal")
    max_generations: int = struct.field(pytree_node=False, default=100)
    dtype: str = struct.field(pytree_node=False, default="float32")
    real_fraction: float = 0.5

    def __post_init__(self):
        check_int("dim", self.dim, 1)
        check_choice("estimator", self.estimator, ("unbiased", "mle"))
        check_choice("policy", self.policy, ("replace", "accumulate", "mix"))
        check_choice("covariance", self.covariance, ("full", "diagonal"))
        # A full covariance fitted from M samples is singular unless M − 1 >= d.
        low = self.dim + 1 if self.covariance == "full" else 2
        check_int("samples", self.samples, low)
        check_int("max_generations", self.max_generations, 1)
        check_dtype("dtype", self.dtype)
        check_range("real_fraction", self.real_fraction, 0.0, 1.0)


def check_steps(cfg: Config, steps: int) -> None:
    """Raises ``ValueError`` if ``steps`` generations overflow the ``accumulate`` pool.

    The pool holds ``max_generations * samples`` rows, one block per generation; the
    other policies keep no pool and accept any ``steps``.
    """
    if cfg.policy == "accumulate" and steps > cfg.max_generations:
        raise ValueError(
            f"steps={steps} exceeds max_generations={cfg.max_generations}: the "
            "accumulate pool holds that many generations; raise max_generations "
            f"to at least {steps}"
        )


class State(NamedTuple):
    mean: jax.Array  # [d]
    cov: jax.Array  # [d, d]
    pool: jax.Array  # [max_generations * M, d] under accumulate, else [0, d]
    generation: jax.Array  # int32 scalar
    key: jax.Array  # uint32 [2]


def init(key: jax.Array, cfg: Config) -> State:
    """The original distribution N(0, I_d); an empty pool."""
    dtype = jnp.dtype(cfg.dtype)
    rows = cfg.max_generations * cfg.samples if cfg.policy == "accumulate" else 0
    return State(
        mean=jnp.zeros((cfg.dim,), dtype),
        cov=jnp.eye(cfg.dim, dtype=dtype),
        pool=jnp.zeros((rows, cfg.dim), dtype),
        generation=jnp.zeros((), jnp.int32),
        key=key,
    )


def _sample(key, mean, cov, cfg: Config) -> jax.Array:
    """``[M, d]`` samples of N(mean, cov)."""
    z = cr.normal(key, (cfg.samples, cfg.dim), mean.dtype)
    if cfg.covariance == "diagonal":
        return mean[None, :] + z * jnp.sqrt(jnp.diagonal(cov))[None, :]
    return mean[None, :] + z @ jnp.linalg.cholesky(cov).T


def _fit(x, weight, count, cfg: Config):
    """Mean and covariance of the rows of ``x`` whose 0/1 ``weight`` is 1."""
    mean = jnp.sum(x * weight[:, None], axis=0) / count
    centred = (x - mean[None, :]) * weight[:, None]
    divisor = count - 1 if cfg.estimator == "unbiased" else count
    cov = centred.T @ centred / divisor
    if cfg.covariance == "diagonal":
        cov = jnp.diag(jnp.diagonal(cov))
    return mean, cov


def step(state: State, cfg: Config) -> State:
    """One generation: sample M points from the current fit and refit."""
    key, k_syn, k_real = jax.random.split(state.key, 3)
    x = _sample(k_syn, state.mean, state.cov, cfg)
    dtype = x.dtype
    M = cfg.samples
    if cfg.policy == "replace":
        mean, cov = _fit(x, jnp.ones((M,), dtype), M, cfg)
    elif cfg.policy == "mix":
        real = _sample(
            k_real, jnp.zeros_like(state.mean), jnp.eye(cfg.dim, dtype=dtype), cfg
        )
        ones = jnp.ones((M,), dtype)
        m_syn, c_syn = _fit(x, ones, M, cfg)
        m_real, c_real = _fit(real, ones, M, cfg)
        w = jnp.asarray(cfg.real_fraction, dtype)
        mean = w * m_real + (1 - w) * m_syn
        cov = w * c_real + (1 - w) * c_syn
    else:  # accumulate
        start = jnp.minimum(state.generation, cfg.max_generations - 1) * M
        pool = jax.lax.dynamic_update_slice(
            state.pool, x, (start, jnp.zeros_like(start))
        )
        count = (state.generation + 1) * M
        weight = (jnp.arange(pool.shape[0]) < count).astype(dtype)
        mean, cov = _fit(pool, weight, count.astype(dtype), cfg)
        overflow = state.generation >= cfg.max_generations
        mean = jnp.where(overflow, jnp.nan, mean)
        cov = jnp.where(overflow, jnp.nan, cov)
        return State(mean, cov, pool, state.generation + 1, key)
    return State(mean, cov, state.pool, state.generation + 1, key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Fit of the current generation against the original N(0, I_d).

    Returns:
      ``mean`` ([d]), ``mean_sq`` (‖μ‖²), ``variance`` (tr Σ), ``cov_err_sq``
      (‖Σ − I‖_F²), ``log_det`` (log det Σ), ``w2_sq`` and ``w2`` (squared and
      plain Wasserstein-2 distance to N(0, I_d): ‖μ‖² + tr Σ + d − 2 tr Σ^{1/2});
      all scalars but ``mean``.
    """
    mu, cov = state.mean, state.cov
    eye = jnp.eye(cfg.dim, dtype=cov.dtype)
    eig = jnp.linalg.eigvalsh(cov)
    mean_sq = jnp.sum(mu**2)
    variance = jnp.trace(cov)
    w2_sq = mean_sq + variance + cfg.dim - 2 * jnp.sum(jnp.sqrt(jnp.maximum(eig, 0)))
    return {
        "mean": mu,
        "mean_sq": mean_sq,
        "variance": variance,
        "cov_err_sq": jnp.sum((cov - eye) ** 2),
        "log_det": jnp.sum(jnp.log(eig)),
        "w2_sq": w2_sq,
        "w2": jnp.sqrt(jnp.maximum(w2_sq, 0)),
    }
