"""Mode collapse from typicality-biased preferences: a categorical policy trained by
KL-regularised policy gradient against a Bradley–Terry reward model.

The setting of Zhang et al. 2025, "Verbalized Sampling: how to mitigate mode collapse
and unlock LLM diversity" (arXiv 2510.01171, Sec. 3). A base model puts Zipf mass
``p_ref(k) ∝ k^{−s}`` on ``M`` items. Raters compare two responses ``y, y'`` with
Bradley–Terry probability ``σ(R(y) − R(y'))`` of the typicality-biased reward

  R(y) = r(y) + α · log P_ref(y)

(true reward ``r``, typicality weight ``α``). A reward table ``r̂`` is fitted to the
comparisons by maximum likelihood (gradient descent on the logistic loss), and the
policy ``π = softmax(θ)`` ascends ``E_π r̂ − β KL(π ‖ P_ref)`` with exact expectations
over the responses (or ``K`` sampled responses), by natural policy gradient (mirror
descent on the simplex) or vanilla softmax policy gradient.

Two response levels (``level``):

- ``"instance"``: a response is one item, ``P_ref = p_ref``.
- ``"distribution"`` ("verbalized"): a response is a list of ``n`` items read as a
  distribution ``q = counts / n`` (a *type*); its reference probability is the
  chance that ``n`` draws of the base model have that type, the multinomial
  ``P_ref(q) = n! / Π_k (n q_k)! · Π_k p_ref(k)^{n q_k}``, and its true reward is the
  mean item reward ``q·r``. The user samples an item from ``q``, so the item marginal
  is ``Σ_q π(q) q`` (theory/preference_collapse.md).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "init", "observe", "step"]

_MAX_RESPONSES = 20_000  # distribution level: C(n + M − 1, M − 1) types at most


@functools.cache
def _list_types(num_items: int, list_size: int) -> np.ndarray:
    """``[R, M]`` int counts of every list of ``n`` items (stars and bars order)."""
    M, n = num_items, list_size
    rows = []
    for bars in itertools.combinations(range(n + M - 1), M - 1):
        edges = (-1, *bars, n + M - 1)
        rows.append([edges[k + 1] - edges[k] - 1 for k in range(M)])
    return np.asarray(rows, dtype=np.int64)


@functools.cache
def _log_multinomial_coef(num_items: int, list_size: int) -> np.ndarray:
    """``[R]`` log of ``n! / Π_k c_k!`` for every list type."""
    T = _list_types(num_items, list_size)
    lg = np.vectorize(math.lgamma)
    return math.lgamma(list_size + 1) - np.sum(lg(T + 1.0), axis=1)


@struct.dataclass
class Config:
    """Hyperparameters.

    Attributes:
      num_items: M, items the base model can say.
      level: ``"instance"`` (a response is an item) or ``"distribution"`` (a response
        is a list of ``list_size`` items, i.e. a verbalized distribution).
      list_size: n, items per verbalized list (``level="distribution"`` only).
      reward: true reward ``"zero"`` or ``"random"``: ``reward_scale · N(0, 1)`` per
        item, fixed by ``reward_seed`` (one task for every seed).
      reward_model: ``"table"`` (fitted by maximum likelihood to comparisons) or
        ``"oracle"`` (``r̂ = R`` exactly: policy optimisation alone).
      data: ``"fixed"`` (``comparisons`` drawn at init) or ``"fresh"`` (that many more
        drawn every step and added to the data).
      comparisons: N, comparisons drawn at init (and per step when fresh), pairs
        uniform over ordered pairs of distinct responses.
      optimizer: ``"npg"`` (natural policy gradient = mirror descent) or ``"pg"``.
      policy_samples: K; 0 means exact expectations over the responses.
      zipf_exponent: s of ``p_ref(k) ∝ k^{−s}``.
      alpha: typicality weight α of the raters.
      beta: KL weight β > 0.
      reward_scale: standard deviation of the ``"random"`` true reward.
      lr: policy step η.
      rm_lr: reward-model step; the gradient is scaled by ``(R − 1)/2`` so that the
        Hessian's eigenvalues are ``σ'(·) ≤ 1/4`` whatever ``R``.
    """

    num_items: int = struct.field(pytree_node=False, default=6)
    level: str = struct.field(pytree_node=False, default="instance")
    list_size: int = struct.field(pytree_node=False, default=8)
    reward: str = struct.field(pytree_node=False, default="zero")
    reward_seed: int = struct.field(pytree_node=False, default=0)
    reward_model: str = struct.field(pytree_node=False, default="table")
    data: str = struct.field(pytree_node=False, default="fixed")
    comparisons: int = struct.field(pytree_node=False, default=512)
    optimizer: str = struct.field(pytree_node=False, default="npg")
    policy_samples: int = struct.field(pytree_node=False, default=0)
    dtype: str = struct.field(pytree_node=False, default="float32")
    zipf_exponent: float = 1.0
    alpha: float = 0.5
    beta: float = 0.5
    reward_scale: float = 0.0
    lr: float = 0.5
    rm_lr: float = 2.0

    def __post_init__(self):
        check_int("num_items", self.num_items, 2, 10_000)
        check_choice("level", self.level, ("instance", "distribution"))
        check_int("list_size", self.list_size, 1)
        if self.level == "distribution":
            R = math.comb(self.list_size + self.num_items - 1, self.num_items - 1)
            if R > _MAX_RESPONSES:
                raise ValueError(
                    f"list_size={self.list_size} with num_items={self.num_items} "
                    f"gives {R} lists; allowed: at most {_MAX_RESPONSES}"
                )
        check_choice("reward", self.reward, ("zero", "random"))
        check_int("reward_seed", self.reward_seed, 0)
        check_choice("reward_model", self.reward_model, ("table", "oracle"))
        check_choice("data", self.data, ("fixed", "fresh"))
        check_int("comparisons", self.comparisons, 1)
        check_choice("optimizer", self.optimizer, ("npg", "pg"))
        check_int("policy_samples", self.policy_samples, 0)
        check_dtype("dtype", self.dtype)
        check_range("zipf_exponent", self.zipf_exponent, 0.0)
        check_range("alpha", self.alpha)  # any finite real: α < 0 favours rare items
        check_range("beta", self.beta, 0.0, low_open=True)
        check_range("reward_scale", self.reward_scale, 0.0)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("rm_lr", self.rm_lr, 0.0, low_open=True)

    @property
    def num_responses(self) -> int:
        if self.level == "instance":
            return self.num_items
        return math.comb(self.list_size + self.num_items - 1, self.num_items - 1)

    def item_probs(self) -> jax.Array:
        """``[M]`` reference distribution over items, ``p_ref(k) ∝ k^{−s}``."""
        dtype = jnp.dtype(self.dtype)
        ranks = jnp.arange(1, self.num_items + 1, dtype=dtype)
        w = ranks ** (-jnp.asarray(self.zipf_exponent, dtype))
        return w / jnp.sum(w)

    def true_reward(self) -> jax.Array:
        """``[M]`` true item reward (data of the task, the same for every seed)."""
        dtype = jnp.dtype(self.dtype)
        if self.reward == "zero":
            return jnp.zeros(self.num_items, dtype)
        z = cr.normal(jax.random.PRNGKey(self.reward_seed), (self.num_items,))
        return jnp.asarray(self.reward_scale, dtype) * z.astype(dtype)

    def responses(self) -> tuple[jax.Array | None, jax.Array, jax.Array]:
        """The response set: item map ``A [R, M]`` (None at the instance level, where
        it is the identity), ``log P_ref [R]`` and true reward ``[R]``."""
        dtype = jnp.dtype(self.dtype)
        log_p, r = jnp.log(self.item_probs()), self.true_reward()
        if self.level == "instance":
            return None, log_p, r
        T = _list_types(self.num_items, self.list_size)
        log_coef = _log_multinomial_coef(self.num_items, self.list_size)
        counts = jnp.asarray(T, dtype)
        log_ref = jnp.asarray(log_coef, dtype) + counts @ log_p
        A = counts / self.list_size
        return A, log_ref, A @ r


class State(NamedTuple):
    theta: jax.Array  # [R] normalised policy logits, log π
    rhat: jax.Array  # [R] fitted reward table (oracle: R itself)
    wins: jax.Array  # [R, R] wins[a, b] = times a was preferred to b ([0, 0]: oracle)
    key: jax.Array  # uint32 [2]


def _biased_reward(cfg: Config, log_ref, reward):
    return reward + jnp.asarray(cfg.alpha, log_ref.dtype) * log_ref


def _draw_wins(key, cfg: Config, R_true):
    """``[R, R]`` win counts of ``N`` Bradley–Terry comparisons of uniform pairs."""
    R, N = cfg.num_responses, cfg.comparisons
    ka, kb, ku = jax.random.split(key, 3)
    a = jax.random.randint(ka, (N,), 0, R)
    b = (a + jax.random.randint(kb, (N,), 1, R)) % R  # uniform over b ≠ a
    first = cr.uniform(ku, (N,), R_true.dtype) < jax.nn.sigmoid(R_true[a] - R_true[b])
    first = first.astype(R_true.dtype)
    wins = jnp.zeros((R, R), R_true.dtype)
    return wins.at[a, b].add(first).at[b, a].add(1.0 - first)


def _rm_grad(rhat, wins):
    """``[R]`` gradient of the mean Bradley–Terry negative log-likelihood."""
    n = wins + wins.T
    p = jax.nn.sigmoid(rhat[:, None] - rhat[None, :])
    return jnp.sum(n * p - wins, axis=1) / jnp.sum(wins)


def init(key: jax.Array, cfg: Config) -> State:
    """π₀ = P_ref; r̂₀ = 0 with the first comparisons drawn (oracle: r̂ = R)."""
    _, log_ref, reward = cfg.responses()
    key, sub = jax.random.split(key)
    R_true = _biased_reward(cfg, log_ref, reward)
    if cfg.reward_model == "oracle":
        return State(log_ref, R_true, jnp.zeros((0, 0), log_ref.dtype), key)
    wins = _draw_wins(sub, cfg, R_true)
    return State(log_ref, jnp.zeros_like(log_ref), wins, key)


def _policy_direction(key, logp, g, cfg: Config):
    """Update of the logits: the natural (``npg``) or plain (``pg``) gradient of
    ``E_π r̂ − β KL(π ‖ P_ref)``, exact or from ``K`` sampled responses."""
    pi = jnp.exp(logp)
    K = cfg.policy_samples
    if K == 0:
        if cfg.optimizer == "npg":
            return g  # F⁺ ∇_θ J = g up to a constant, which softmax ignores
        return pi * (g - jnp.dot(pi, g))
    y = jax.random.categorical(key, logp, shape=(K,))
    gy = g[y]
    # Leave-one-out baseline: independent of its own sample, so the estimate stays
    # unbiased up to a constant shift of the logits (which softmax ignores).
    w = gy - (jnp.sum(gy) - gy) / (K - 1) if K > 1 else gy
    if cfg.optimizer == "npg":
        return jnp.zeros_like(g).at[y].add(w / pi[y]) / K
    return (jnp.zeros_like(g).at[y].add(w) - jnp.sum(w) * pi) / K


def step(state: State, cfg: Config) -> State:
    """One reward-model GD step (after adding fresh comparisons), then one policy
    step against the updated fitted reward."""
    _, log_ref, reward = cfg.responses()
    key, k_data, k_pol = jax.random.split(state.key, 3)
    wins, rhat = state.wins, state.rhat
    if cfg.reward_model == "table":
        if cfg.data == "fresh":
            wins = wins + _draw_wins(k_data, cfg, _biased_reward(cfg, log_ref, reward))
        scale = 0.5 * (cfg.num_responses - 1)
        rhat = rhat - cfg.rm_lr * scale * _rm_grad(rhat, wins)
    logp = jax.nn.log_softmax(state.theta)
    g = rhat - cfg.beta * (logp - log_ref)
    theta = jax.nn.log_softmax(logp + cfg.lr * _policy_direction(k_pol, logp, g, cfg))
    return State(theta, rhat, wins, key)


def _slope(y, x):
    xc = x - jnp.mean(x)
    return jnp.dot(xc, y - jnp.mean(y)) / jnp.dot(xc, xc)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Scalar metrics.

    Item-level (of the marginal ``m``: ``π`` itself, or ``Σ_q π(q) q`` for lists):
    ``entropy`` H(m), ``mode_mass`` max m, ``kl_ref`` KL(m ‖ p_ref). Response-level:
    ``kl_to_optimum`` KL(π ‖ π*) to the predicted sharpened optimum
    ``π* ∝ P_ref^{1+α/β} exp(r/β)``; ``log_gap``, the span (max − min) of
    ``log π − log π̂*`` with ``π̂* ∝ P_ref exp(r̂/β)`` the optimum for the current fitted
    reward. Reward model: ``alpha_hat``, the least-squares slope of ``r̂ − r`` on
    ``log P_ref``; ``rm_grad``, the largest entry of its scaled gradient (0: oracle).
    """
    A, log_ref, reward = cfg.responses()
    logp = jax.nn.log_softmax(state.theta)
    pi = jnp.exp(logp)
    if A is None:
        m, log_m = pi, logp
    else:
        m = pi @ A
        log_m = jnp.log(m)
    log_p = jnp.log(cfg.item_probs())
    entropy = -jnp.sum(jax.scipy.special.xlogy(m, m))
    kl_ref = jnp.sum(jnp.where(m > 0, m * (log_m - log_p), 0.0))
    beta = jnp.asarray(cfg.beta, logp.dtype)
    log_opt = jax.nn.log_softmax((1.0 + cfg.alpha / beta) * log_ref + reward / beta)
    gap = logp - (log_ref + state.rhat / beta)
    if cfg.reward_model == "table":
        scale = 0.5 * (cfg.num_responses - 1)
        rm_grad = jnp.max(jnp.abs(scale * _rm_grad(state.rhat, state.wins)))
    else:
        rm_grad = jnp.zeros((), logp.dtype)
    return {
        "entropy": entropy,
        "mode_mass": jnp.max(m),
        "kl_ref": kl_ref,
        "kl_to_optimum": jnp.sum(pi * (logp - log_opt)),
        "log_gap": jnp.max(gap) - jnp.min(gap),
        "alpha_hat": _slope(state.rhat - reward, log_ref),
        "rm_grad": rm_grad,
    }
