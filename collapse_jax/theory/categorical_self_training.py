"""Exact expectations for categorical self-training (models/categorical_self_training).

Each symbol's count X_t = n·p_t,i is a neutral Wright–Fisher chain,
X_{t+1} | X_t ~ Binomial(n, X_t / n), with X_1 ~ Binomial(n, p_0,i). Derivations in
theory/categorical_self_training.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln

from collapse_jax.models.categorical_self_training import Config

__all__ = [
    "diversity",
    "fixation_probability",
    "mean_probs",
    "predict",
    "support",
    "survival",
]


def _times(t) -> jnp.ndarray:
    if not isinstance(t, jax.core.Tracer):
        arr = np.asarray(t, dtype=float)
        if np.any(arr < 0) or np.any(np.mod(arr, 1) != 0):
            raise ValueError(f"t={t!r}: generations must be whole numbers >= 0")
    return jnp.asarray(t, dtype=jnp.result_type(float))


def diversity(cfg: Config, t) -> jnp.ndarray:
    """E[1 − Σ_i p_t,i²] = (1 − 1/n)^t · (1 − Σ_i p_0,i²).

    Given p_t, E Σ_i p_{t+1,i}² = Σ_i (p_t,i² + p_t,i(1 − p_t,i)/n), so the
    heterozygosity H = 1 − Σ p² shrinks by the factor (1 − 1/n) per generation: the
    classical Wright–Fisher decay of heterozygosity (Wright 1931; Ewens 2004,
    "Mathematical Population Genetics", Sec. 1.2 / eq. (1.6)). Exact.
    """
    n = _times(t)
    p0 = cfg.initial_probs()
    return (1.0 - 1.0 / cfg.samples) ** n * (1.0 - jnp.sum(p0**2))


def mean_probs(cfg: Config, t) -> jnp.ndarray:
    """E p_t = p_0: the refitted distribution is a martingale. ``[T, K]``. Exact."""
    n = _times(t)
    return jnp.broadcast_to(cfg.initial_probs()[None, :], n.shape + (cfg.num_symbols,))


def _binomial_rows(n: int, probs: jnp.ndarray) -> jnp.ndarray:
    """``[len(probs), n+1]``: Binomial(n, probs_r) pmf over 0..n, in log space."""
    k = jnp.arange(n + 1, dtype=probs.dtype)
    log_choose = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
    p = probs[:, None]
    # xlogy-style: 0·log 0 = 0 at the absorbing ends p = 0 and p = 1.
    log_p = jnp.where(
        k[None, :] > 0, k[None, :] * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0
    )
    log_q = jnp.where(
        k[None, :] < n, (n - k[None, :]) * jnp.log(jnp.where(p < 1, 1.0 - p, 1.0)), 0.0
    )
    impossible = ((p == 0) & (k[None, :] > 0)) | ((p == 1) & (k[None, :] < n))
    return jnp.where(impossible, 0.0, jnp.exp(log_choose[None, :] + log_p + log_q))


def survival(cfg: Config, t) -> jnp.ndarray:
    """P(p_t,i > 0) per symbol, ``[T, K]``: exact Wright–Fisher absorption.

    The count distribution starts as Binomial(n, p_0,i) after one generation and then
    follows the (n+1)-state transition matrix P[a, b] = Binom(b; n, a/n); survival is
    1 − P(X_t = 0) (Ewens 2004, Sec. 1.2; Karlin & Taylor 1975, Ch. 2). Computed by
    propagating each symbol's count distribution, so it is exact to float rounding.
    """
    t_arr = np.asarray(t)
    if t_arr.ndim != 1:
        raise ValueError(f"t must be 1-D; got shape {t_arr.shape}")
    _times(t_arr)
    p0 = cfg.initial_probs()
    steps = int(t_arr.max()) if t_arr.size else 0
    alive = _alive_table(p0, cfg.samples, max(steps, 1))
    return alive[jnp.asarray(t_arr.astype(int))]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _alive_table(p0: jnp.ndarray, n: int, steps: int) -> jnp.ndarray:
    """``[steps + 1, K]``: P(X_t > 0) for t = 0..steps (one compiled program)."""
    P = _binomial_rows(n, jnp.arange(n + 1, dtype=p0.dtype) / n)  # [n+1, n+1]
    start = _binomial_rows(n, p0)  # [K, n+1] = law of X_1

    def body(dist, _):
        return dist @ P, dist

    _, laws = lax.scan(body, start, None, length=steps)  # laws[j] = law of X_{j+1}
    alive = jnp.concatenate([jnp.ones((1, p0.shape[0]), p0.dtype), 1.0 - laws[:, :, 0]])
    return jnp.where(p0[None, :] > 0, alive, 0.0)


def support(cfg: Config, t) -> jnp.ndarray:
    """E #{i : p_t,i > 0} = Σ_i P(p_t,i > 0). Exact."""
    return jnp.sum(survival(cfg, t), axis=-1)


def fixation_probability(cfg: Config) -> jnp.ndarray:
    """P(symbol i is the one left in the end) = p_0,i, ``[K]``.

    The chain is absorbed at a single symbol with probability 1 and p_t,i is a bounded
    martingale, so the absorption probability equals its start (Ewens 2004, Sec. 1.2).
    """
    return cfg.initial_probs()


def predict(cfg: Config, t=None) -> dict[str, jnp.ndarray]:
    """Time-resolved predictions at generations ``t`` (1-D integers).

    ``diversity`` and ``support`` ``[T]``; ``p`` (E p_t) and ``alive`` (survival
    probability) ``[T, K]``. ``t=None``: the limit ``t → ∞`` (no time axis): one
    symbol is left (absorption), so diversity 0 and support 1; ``p`` stays ``p_0``
    (a martingale) and survival tends to the fixation probability ``p_0``.
    """
    if t is None:
        p0 = fixation_probability(cfg)
        return {
            "diversity": jnp.zeros((), p0.dtype),
            "support": jnp.ones((), p0.dtype),
            "p": cfg.initial_probs(),
            "alive": p0,
        }
    return {
        "diversity": diversity(cfg, t),
        "support": support(cfg, t),
        "p": mean_probs(cfg, t),
        "alive": survival(cfg, t),
    }
