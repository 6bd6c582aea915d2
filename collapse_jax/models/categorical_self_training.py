"""A categorical distribution refitted by maximum likelihood on n samples of itself.

Generation t+1 draws n symbols from p_t and sets p_{t+1} = counts / n: the neutral
Wright–Fisher chain of population genetics (Fisher 1930; Wright 1931), read as
self-training of a discrete generative model on its own samples (the fully synthetic
loop of Seddik et al. 2024, arXiv 2404.05090, Sec. 3). Symbols whose count hits zero
never return, so diversity decays and the support shrinks until one symbol is left.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "init", "observe", "step"]


@struct.dataclass
class Config:
    """Hyperparameters.

    Attributes:
      num_symbols: K, the alphabet size.
      samples: n, samples drawn per generation.
      initial: ``"uniform"`` or ``"zipf"`` (p_i ∝ i^{−s}, s = ``zipf_exponent``).
      zipf_exponent: s >= 0 for the ``zipf`` start (a pytree leaf: sweepable).
      dtype: ``"float32"`` or ``"float64"``.
    """

    num_symbols: int = struct.field(pytree_node=False, default=10)
    samples: int = struct.field(pytree_node=False, default=20)
    initial: str = struct.field(pytree_node=False, default="uniform")
    dtype: str = struct.field(pytree_node=False, default="float32")
    zipf_exponent: float = 1.0

    def __post_init__(self):
        check_int("num_symbols", self.num_symbols, 2)
        check_int("samples", self.samples, 1)
        check_choice("initial", self.initial, ("uniform", "zipf"))
        check_dtype("dtype", self.dtype)
        check_range("zipf_exponent", self.zipf_exponent, 0.0)

    def initial_probs(self) -> jax.Array:
        """``[K]`` starting distribution p_0 (data of the config, not dynamics)."""
        ranks = jnp.arange(1, self.num_symbols + 1, dtype=jnp.result_type(float))
        if self.initial == "uniform":
            w = jnp.ones_like(ranks)
        else:
            w = ranks ** (-jnp.asarray(self.zipf_exponent, ranks.dtype))
        return w / jnp.sum(w)


class State(NamedTuple):
    p: jax.Array  # [K] current distribution
    key: jax.Array  # uint32 [2]


def init(key: jax.Array, cfg: Config) -> State:
    """p_0 from the config."""
    return State(cfg.initial_probs().astype(jnp.dtype(cfg.dtype)), key)


def step(state: State, cfg: Config) -> State:
    """One generation: n draws by inverse CDF, then p ← counts / n."""
    key, sub = jax.random.split(state.key)
    p = state.p
    cdf = jnp.cumsum(p)
    u = cr.uniform(sub, (cfg.samples,), p.dtype) * cdf[-1]
    # side="right": a symbol of probability 0 (a flat step of the CDF) is never drawn.
    idx = jnp.searchsorted(cdf, u, side="right")
    idx = jnp.minimum(idx, cfg.num_symbols - 1)
    counts = jnp.zeros_like(p).at[idx].add(1.0)
    return State(counts / cfg.samples, key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Diversity and support of the current distribution.

    Returns:
      ``diversity`` (1 − Σ p², the probability that two samples differ),
      ``support`` (number of symbols with p > 0), ``entropy`` (nats),
      ``max_prob``, and per symbol (``[K]``) ``p`` and ``alive`` (1.0 where p > 0).
    """
    p = state.p
    alive = (p > 0).astype(p.dtype)
    safe = jnp.where(p > 0, p, 1.0)
    return {
        "diversity": 1.0 - jnp.sum(p**2),
        "support": jnp.sum(alive),
        "entropy": -jnp.sum(p * jnp.log(safe)),
        "max_prob": jnp.max(p),
        "p": p,
        "alive": alive,
    }
