"""A Gaussian mixture fitted by EM to the digit images' PCA features, refitted on its
own samples generation after generation (model collapse of a real density model).

Data: the 1,797 digit images (``collapse_jax.datasets.digits``), centred and projected on
their top ``components`` principal directions (pixel units, no whitening), ``x [N, d]``.
Generation 0 is ``em_iters`` EM iterations of a ``K``-component full-covariance mixture
on the real features (means started at K random real points, covariances at the data
covariance, equal weights). Generation n+1 draws ``samples`` = M points from generation
n's fit and runs ``em_iters`` EM iterations warm-started from generation n's fit on

  replace     the M new samples only;
  accumulate  the real features and every sample drawn so far, kept in a preallocated
              pool of ``N + max_generations·M`` rows with a 0/1 mask.

Every M-step adds ``reg · I`` to each covariance (keeps EM away from singular
components). With ``K = 1`` one EM iteration is the maximum-likelihood Gaussian fit, so
the chain is the recursively refitted Gaussian of ``models/recursive_gaussian`` (MLE
estimator, full covariance) started from the real data's covariance.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp

from collapse_jax import datasets
from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "init", "observe", "step"]

_NUM_IMAGES = 1797
_PIXELS = 64


@struct.dataclass
class Config:
    """Hyperparameters. Sizes and code paths are static; ``reg`` can be swept.

    Attributes:
      components: d, PCA features kept (1..64).
      num_mixture: K, mixture components.
      samples: M, points drawn from the current fit each generation.
      em_iters: EM iterations per generation (and for generation 0).
      policy: ``"replace"`` or ``"accumulate"``.
      max_generations: capacity of the ``accumulate`` pool; later generations make
        every metric NaN (the engine reports them as diverged).
      probe_samples: draws from the current fit used by ``observe`` for the tail mass.
      dtype: ``"float32"`` or ``"float64"``.
      reg: covariance regulariser added in every M-step (>= 0).
    """

    components: int = struct.field(pytree_node=False, default=8)
    num_mixture: int = struct.field(pytree_node=False, default=1)
    samples: int = struct.field(pytree_node=False, default=200)
    em_iters: int = struct.field(pytree_node=False, default=1)
    policy: str = struct.field(pytree_node=False, default="replace")
    max_generations: int = struct.field(pytree_node=False, default=50)
    probe_samples: int = struct.field(pytree_node=False, default=512)
    dtype: str = struct.field(pytree_node=False, default="float32")
    reg: float = 0.0

    def __post_init__(self):
        check_int("components", self.components, 1, _PIXELS)
        check_int("num_mixture", self.num_mixture, 1, _NUM_IMAGES)
        # M points must determine a full d-dimensional covariance.
        check_int("samples", self.samples, self.components + 1)
        check_int("em_iters", self.em_iters, 1)
        check_choice("policy", self.policy, ("replace", "accumulate"))
        check_int("max_generations", self.max_generations, 1)
        check_int("probe_samples", self.probe_samples, 1)
        check_dtype("dtype", self.dtype)
        check_range("reg", self.reg, 0.0)


class State(NamedTuple):
    weights: jax.Array  # [K]
    means: jax.Array  # [K, d]
    covs: jax.Array  # [K, d, d]
    pool: jax.Array  # [N + max_generations·M, d] under accumulate, else [0, d]
    mean0: jax.Array  # [d] mean of the generation-0 fit
    cov0: jax.Array  # [d, d] covariance of the generation-0 fit (moment-matched)
    generation: jax.Array  # int32 scalar
    key: jax.Array  # uint32 [2]


@functools.cache
def _features_float64(components: int) -> tuple[np.ndarray, np.ndarray]:
    """Real PCA features ``[N, d]`` and their covariance eigenvalues ``[d]``."""
    x = datasets.digits(np.float64).flat
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    feats = x @ vt[:components].T
    return feats, s[:components] ** 2 / x.shape[0]


def features(cfg: Config) -> np.ndarray:
    """The real data: centred digits on their top ``components`` principal axes,
    ``[1797, d]`` in ``cfg.dtype``."""
    return _features_float64(cfg.components)[0].astype(cfg.dtype)


def _tail_threshold(cfg: Config) -> float:
    """99th percentile of the real data's squared Mahalanobis radius."""
    feats, eig = _features_float64(cfg.components)
    return float(np.quantile(np.sum(feats**2 / eig, axis=1), 0.99))


def _log_resp(x, weights, means, covs):
    """``[n, K]`` log responsibilities and ``[n]`` log densities of the rows of x."""
    d = x.shape[-1]
    chol = jnp.linalg.cholesky(covs)  # [K, d, d]
    # L⁻¹ on the identity, then a matmul: XLA:CPU's batched triangular solve with n
    # right-hand sides is ~300x slower here.
    eye = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype), covs.shape)
    chol_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
    diff = x[None, :, :] - means[:, None, :]  # [K, n, d]
    sol = jnp.einsum("kij,knj->kni", chol_inv, diff)
    maha = jnp.sum(sol**2, axis=2)  # [K, n]
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    log_p = (
        jnp.log(weights)[:, None]
        - 0.5 * (maha + log_det[:, None] + d * jnp.log(2 * jnp.pi))
    ).T  # [n, K]
    log_norm = logsumexp(log_p, axis=1)
    return log_p - log_norm[:, None], log_norm


def _em(x, mask, weights, means, covs, cfg: Config):
    """``em_iters`` EM iterations on the rows of ``x [n, d]`` with 0/1 ``mask [n]``."""
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    tiny = jnp.finfo(x.dtype).tiny

    def body(_, fit):
        w, mu, cov = fit
        log_r, _ = _log_resp(x, w, mu, cov)
        r = jnp.exp(log_r) * mask[:, None]  # [n, K]
        nk = jnp.sum(r, axis=0) + tiny  # [K]
        mu = (r.T @ x) / nk[:, None]
        diff = x[None, :, :] - mu[:, None, :]  # [K, n, d]
        weighted = diff * r.T[:, :, None]
        cov = jnp.einsum("kni,knj->kij", weighted, diff) / nk[:, None, None]
        cov = cov + cfg.reg * eye[None]
        return nk / jnp.sum(mask), mu, cov

    return jax.lax.fori_loop(0, cfg.em_iters, body, (weights, means, covs))


def _moments(weights, means, covs):
    """Mean ``[d]`` and covariance ``[d, d]`` of the mixture."""
    mean = weights @ means
    diff = means - mean[None, :]
    cov = jnp.einsum("k,kij->ij", weights, covs) + jnp.einsum(
        "k,ki,kj->ij", weights, diff, diff
    )
    return mean, cov


def _sample(key, weights, means, covs, n: int):
    """``[n, d]`` draws of the mixture."""
    k_comp, k_z = jax.random.split(key)
    comp = jax.random.categorical(k_comp, jnp.log(weights), shape=(n,))
    z = cr.normal(k_z, (n, means.shape[-1]), means.dtype)
    chol = jnp.linalg.cholesky(covs)[comp]  # [n, d, d]
    return means[comp] + jnp.einsum("nij,nj->ni", chol, z)


def _pool_rows(cfg: Config) -> int:
    if cfg.policy != "accumulate":
        return 0
    return _NUM_IMAGES + cfg.max_generations * cfg.samples


def init(key: jax.Array, cfg: Config) -> State:
    """Generation 0: EM on the real features from K random real points."""
    x = jnp.asarray(features(cfg))
    dtype = x.dtype
    key, k_init = jax.random.split(key)
    K = cfg.num_mixture
    start = jax.random.choice(k_init, x.shape[0], (K,), replace=False)
    cov = x.T @ x / x.shape[0]
    weights, means, covs = _em(
        x,
        jnp.ones((x.shape[0],), dtype),
        jnp.full((K,), 1.0 / K, dtype),
        x[start],
        jnp.broadcast_to(cov, (K,) + cov.shape),
        cfg,
    )
    mean0, cov0 = _moments(weights, means, covs)
    pool = jnp.zeros((_pool_rows(cfg), cfg.components), dtype)
    if cfg.policy == "accumulate":
        pool = pool.at[: x.shape[0]].set(x)
    return State(weights, means, covs, pool, mean0, cov0, jnp.zeros((), jnp.int32), key)


def step(state: State, cfg: Config) -> State:
    """One generation: draw M points from the current fit, refit by warm-started EM."""
    key, k_sample = jax.random.split(state.key)
    fit = (state.weights, state.means, state.covs)
    x = _sample(k_sample, *fit, cfg.samples)
    dtype = x.dtype
    if cfg.policy == "replace":
        weights, means, covs = _em(x, jnp.ones((cfg.samples,), dtype), *fit, cfg)
        return state._replace(
            weights=weights,
            means=means,
            covs=covs,
            generation=state.generation + 1,
            key=key,
        )
    g = state.generation
    start = _NUM_IMAGES + jnp.minimum(g, cfg.max_generations - 1) * cfg.samples
    pool = jax.lax.dynamic_update_slice(state.pool, x, (start, jnp.zeros_like(start)))
    count = _NUM_IMAGES + (g + 1) * cfg.samples
    mask = (jnp.arange(pool.shape[0]) < count).astype(dtype)
    weights, means, covs = _em(pool, mask, *fit, cfg)
    overflow = g >= cfg.max_generations
    nan = jnp.asarray(jnp.nan, dtype)
    return state._replace(
        weights=jnp.where(overflow, nan, weights),
        means=jnp.where(overflow, nan, means),
        covs=jnp.where(overflow, nan, covs),
        pool=pool,
        generation=g + 1,
        key=key,
    )


def _gaussian_kl(m1, c1, m0, c0):
    """KL(N(m1, c1) ‖ N(m0, c0)) = ½ Σ_i (μ_i − 1 − log μ_i) + ½ Δmᵀ c0⁻¹ Δm, μ the
    eigenvalues of L0⁻¹ c1 L0⁻ᵀ (c0 = L0 L0ᵀ): each term is O((μ − 1)²), so equal fits
    give 0 up to squared rounding instead of a cancellation."""
    eye = jnp.eye(c0.shape[-1], dtype=c0.dtype)
    l0_inv = jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky(c0), eye, lower=True)
    mu = jnp.linalg.eigvalsh(l0_inv @ c1 @ l0_inv.T)
    dm = l0_inv @ (m1 - m0)
    return 0.5 * (jnp.sum(mu - 1 - jnp.log(mu)) + jnp.sum(dm**2))


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """The current fit against the generation-0 fit.

    Returns:
      ``variance`` (tr of the mixture covariance Σ), ``mean_sq`` (‖μ − μ_0‖² of the
      mixture means), ``log_det`` (log det Σ), ``component_variance`` ([K], tr Σ_k in
      decreasing order), ``weights`` ([K], decreasing), ``kurtosis`` (mean over the d
      axes of the fit's marginal fourth standardised moment; 3 for a Gaussian),
      ``tail_mass`` (fraction of ``probe_samples`` draws of the fit whose squared
      Mahalanobis radius under the real data's covariance exceeds the real data's 99th
      percentile; draws keyed by the state's key, so observe stays pure) and
      ``kl`` (KL divergence from the Gaussian moment-matched to generation 0 to the one
      moment-matched to the fit; the exact KL between the fits when K = 1). All
      scalars but the two [K] arrays.
    """
    w, mu, covs = state.weights, state.means, state.covs
    mean, cov = _moments(w, mu, covs)
    # Marginal moments of the mixture along each feature axis.
    var_k = jnp.diagonal(covs, axis1=1, axis2=2)  # [K, d]
    delta = mu - mean[None, :]
    m2 = w @ (delta**2 + var_k)
    m4 = w @ (delta**4 + 6 * delta**2 * var_k + 3 * var_k**2)
    probe = _sample(jax.random.fold_in(state.key, 1), w, mu, covs, cfg.probe_samples)
    eig = jnp.asarray(_features_float64(cfg.components)[1], probe.dtype)
    radius = jnp.sum(probe**2 / eig[None, :], axis=1)
    component_variance = jnp.trace(covs, axis1=1, axis2=2)
    return {
        "variance": jnp.trace(cov),
        "mean_sq": jnp.sum((mean - state.mean0) ** 2),
        "log_det": jnp.linalg.slogdet(cov)[1],
        "component_variance": -jnp.sort(-component_variance),
        "weights": -jnp.sort(-w),
        "kurtosis": jnp.mean(m4 / m2**2),
        "tail_mass": jnp.mean((radius > _tail_threshold(cfg)).astype(probe.dtype)),
        "kl": _gaussian_kl(mean, cov, state.mean0, state.cov0),
    }
