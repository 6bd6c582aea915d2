"""The memorisation ("Hutter") model of Zipf-distributed tokens, trained on AI data.

Tokens i = 1..N have probabilities p_i ∝ i^{−β} (Zipf, β > 1) and a fixed label each;
the learner memorises every token it has seen and errs on unseen ones (Hutter 2021,
arXiv 2102.04074). Its training tokens come from

  q = π·p + (1 − π)·p',

where p' is the distribution of a generative model: ``cut`` keeps p on ranks i <= k
and renormalises (tail cutting), ``narrow`` is Zipf with a larger exponent β'
(tail narrowing), and π = ``clean_fraction`` is the share of clean data mixed in
(Dohmatob et al. 2024, "A Tale of Tails", arXiv 2402.07043, Secs. 2–4).

Over ``generations`` = n rounds of AI data the generator is itself trained on the
previous round: g_0 = p, g_j = π·p + (1 − π)·A(g_{j−1}), q = g_n, where A cuts g to
its top k ranks (``cut``) or sharpens it, A(g) ∝ g^{β'/β} (``narrow``: temperature
β/β' < 1, so one round turns p into Zipf(β')). n = 1 is the single round above,
n = 0 clean training data.

One step adds ``batch`` training tokens, so after t steps T = t·batch. The test error is
recorded exactly given the learner: P_{i~p}(i unseen) = Σ_i p_i·1[i unseen].
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
    """Hyperparameters. Sizes and the generator kind are static; floats can be swept.

    Attributes:
      vocab: N, the number of tokens (the Zipf law is truncated at N).
      batch: training tokens added per step.
      source: ``"cut"`` (p' = p restricted to ranks <= k) or ``"narrow"``
        (p' ∝ i^{−β'}).
      beta: Zipf exponent β > 1 of the real data.
      cut_rank: k >= 1 for ``cut`` (k >= N means no cut).
      narrow_beta: β' > 1 for ``narrow``.
      clean_fraction: π in [0, 1], share of clean (real) training tokens, mixed
        in at every generation.
      generations: n >= 0 rounds of AI data between p and the learner's data.
      dtype: ``"float32"`` or ``"float64"``.
    """

    vocab: int = struct.field(pytree_node=False, default=2000)
    batch: int = struct.field(pytree_node=False, default=10)
    source: str = struct.field(pytree_node=False, default="cut")
    generations: int = struct.field(pytree_node=False, default=1)
    dtype: str = struct.field(pytree_node=False, default="float32")
    beta: float = 1.5
    cut_rank: float = 100.0
    narrow_beta: float = 2.0
    clean_fraction: float = 0.0

    def __post_init__(self):
        check_int("vocab", self.vocab, 2)
        check_int("batch", self.batch, 1)
        check_choice("source", self.source, ("cut", "narrow"))
        check_int("generations", self.generations, 0)
        check_dtype("dtype", self.dtype)
        # β <= 1 is not a probability law on infinitely many tokens, and the scaling
        # law T^{−(1−1/β)} degenerates; the model is defined for β > 1 only.
        check_range("beta", self.beta, 1.0, low_open=True)
        check_range("cut_rank", self.cut_rank, 1.0)
        check_range("narrow_beta", self.narrow_beta, 1.0, low_open=True)
        check_range("clean_fraction", self.clean_fraction, 0.0, 1.0)

    def ranks(self) -> jax.Array:
        """``[N]`` ranks 1..N as floats."""
        return jnp.arange(1, self.vocab + 1, dtype=jnp.result_type(float))

    def test_probs(self) -> jax.Array:
        """``[N]`` real (test) distribution p_i ∝ i^{−β}."""
        w = self.ranks() ** (-jnp.asarray(self.beta, jnp.result_type(float)))
        return w / jnp.sum(w)

    def train_probs(self) -> jax.Array:
        """``[N]`` training distribution q = g_n after ``generations`` rounds."""
        log_p = jnp.log(self.test_probs())
        r = self.ranks()
        pi = jnp.asarray(self.clean_fraction, r.dtype)
        gamma = jnp.asarray(self.narrow_beta, r.dtype) / jnp.asarray(self.beta, r.dtype)
        keep = r <= jnp.asarray(self.cut_rank, r.dtype)

        def one_round(_, log_g):
            # Log domain: g^{γ} underflows after a few sharpening rounds otherwise.
            if self.source == "cut":
                log_a = jnp.where(keep, log_g, -jnp.inf)
            else:
                log_a = gamma * log_g
            log_a = log_a - jax.scipy.special.logsumexp(log_a)
            return jnp.logaddexp(jnp.log(pi) + log_p, jnp.log1p(-pi) + log_a)

        return jnp.exp(jax.lax.fori_loop(0, self.generations, one_round, log_p))


class State(NamedTuple):
    seen: jax.Array  # [N] 1.0 for tokens seen in training, else 0.0
    key: jax.Array  # uint32 [2]


def init(key: jax.Array, cfg: Config) -> State:
    """A learner that has seen nothing (T = 0)."""
    return State(jnp.zeros((cfg.vocab,), jnp.dtype(cfg.dtype)), key)


def step(state: State, cfg: Config) -> State:
    """Adds ``batch`` tokens drawn from q (inverse CDF) to the memory."""
    key, sub = jax.random.split(state.key)
    dtype = state.seen.dtype
    cdf = jnp.cumsum(cfg.train_probs()).astype(dtype)
    u = cr.uniform(sub, (cfg.batch,), dtype) * cdf[-1]
    # side="right" never lands on a token of probability 0 (a flat CDF step).
    idx = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cfg.vocab - 1)
    return State(state.seen.at[idx].set(1.0), key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """``test_error`` = Σ_i p_i·1[i unseen] and ``coverage`` = #seen tokens."""
    p = cfg.test_probs().astype(state.seen.dtype)
    return {
        "test_error": jnp.sum(p * (1.0 - state.seen)),
        "coverage": jnp.sum(state.seen),
    }
