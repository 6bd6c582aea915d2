"""Sharpening by typicality-biased preferences, and what verbalized lists keep.

Zhang et al. 2025 (arXiv 2510.01171, Sec. 3): raters whose reward carries a
typicality term ``α log P_ref`` make the KL-regularised optimum

  π* ∝ P_ref^{γ} exp(r/β),   γ = 1 + α/β,

sharper than the reference (mode collapse when ``r`` is flat). The rest is derived in
theory/preference_collapse.md: Zipf closed forms, the Fisher standard error of the
fitted ``α̂``, the exact natural-policy-gradient trajectory (log-policy error
contracting by ``|1 − ηβ|`` per step), the local rate of vanilla policy gradient, and
the item marginal of a verbalized (list-level) policy by enumeration of list types.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from collapse_jax.models.preference_collapse import Config

__all__ = [
    "alpha_hat_se",
    "item_marginal",
    "lattice_chi2_bound",
    "npg_log_gap",
    "npg_policy",
    "optimal_policy",
    "pg_local_rates",
    "predict",
    "sharpening_exponent",
    "zipf_sharpened",
]


def sharpening_exponent(cfg: Config) -> jax.Array:
    """``γ = 1 + α/β``. Zhang et al. 2025 (arXiv 2510.01171), Sec. 3.1."""
    return 1.0 + jnp.asarray(cfg.alpha) / jnp.asarray(cfg.beta)


def optimal_policy(cfg: Config) -> jax.Array:
    """``[R]`` maximiser of ``E_π R − β KL(π ‖ P_ref)`` with ``R = r + α log P_ref``:
    ``π* ∝ P_ref^{1+α/β} exp(r/β)``. Zhang et al. 2025 (arXiv 2510.01171), Sec. 3.1
    (the Gibbs form of the KL-regularised optimum, their closed form)."""
    _, log_ref, reward = cfg.responses()
    return jax.nn.softmax(sharpening_exponent(cfg) * log_ref + reward / cfg.beta)


def item_marginal(cfg: Config, pi: jax.Array) -> jax.Array:
    """``[..., M]`` item marginal of a response-level policy ``pi [..., R]``:
    itself at the instance level, ``Σ_q π(q) q`` for verbalized lists."""
    A, _, _ = cfg.responses()
    return pi if A is None else pi @ A


def _item_metrics(cfg: Config, pi):
    m = item_marginal(cfg, pi)
    log_p = jnp.log(cfg.item_probs())
    xlogx = jax.scipy.special.xlogy(m, m)
    return {
        "entropy": -jnp.sum(xlogx, axis=-1),
        "mode_mass": jnp.max(m, axis=-1),
        "kl_ref": jnp.sum(xlogx - m * jnp.broadcast_to(log_p, m.shape), axis=-1),
    }


def zipf_sharpened(exponent, num_items: int) -> dict[str, jax.Array]:
    """Entropy and mode mass of ``π*(k) ∝ k^{−a}`` on ``M`` items, ``a = s γ``:
    with ``Z = H_{M,a} = Σ_k k^{−a}``, ``H = log Z + a Σ_k k^{−a} log k / Z`` and
    ``max π* = 1/Z`` (theory/preference_collapse.md; sharpening law of Zhang et al.
    2025, arXiv 2510.01171, Sec. 3.1, evaluated for a Zipf reference with flat r)."""
    a = jnp.asarray(exponent)
    k = jnp.arange(1, num_items + 1, dtype=a.dtype).reshape((1,) * a.ndim + (-1,))
    w = k ** (-a[..., None])
    Z = jnp.sum(w, axis=-1)
    log_k = jnp.broadcast_to(jnp.log(k), w.shape)
    return {
        "entropy": jnp.log(Z) + a * jnp.sum(w * log_k, axis=-1) / Z,
        "mode_mass": 1.0 / Z,
    }


def npg_policy(cfg: Config, t) -> jax.Array:
    """``[T, R]`` exact NPG iterates from ``π₀ = P_ref`` against the exact biased
    reward: ``log π_t = log P_ref + (1 − (1 − ηβ)^t)(α log P_ref + r)/β + c_t``
    (mirror-descent recursion solved in closed form; theory/preference_collapse.md)."""
    _, log_ref, reward = cfg.responses()
    t = jnp.asarray(t, log_ref.dtype)
    w = 1.0 - (1.0 - cfg.lr * cfg.beta) ** t
    tilt = (cfg.alpha * log_ref + reward) / cfg.beta
    return jax.nn.softmax(log_ref[None, :] + w[:, None] * tilt[None, :], axis=-1)


def npg_log_gap(cfg: Config, t) -> jax.Array:
    """``[T]`` span of ``log π_t − log π*``: ``|1 − ηβ|^t · span((α log P_ref + r)/β)``
    (linear contraction of the KL-regularised NPG; theory/preference_collapse.md, cf.
    Cen et al. 2021, arXiv 2007.06558, Thm 1 for entropy regularisation)."""
    _, log_ref, reward = cfg.responses()
    tilt = (cfg.alpha * log_ref + reward) / cfg.beta
    rate = jnp.abs(1.0 - cfg.lr * cfg.beta)
    return rate ** jnp.asarray(t, log_ref.dtype) * (jnp.max(tilt) - jnp.min(tilt))


def pg_local_rates(cfg: Config) -> jax.Array:
    """``[R − 1]`` per-step contraction factors ``|1 − ηβ λ_k|`` of vanilla softmax
    policy gradient near ``π*``, ``λ_k`` the nonzero eigenvalues of the softmax Fisher
    matrix ``diag π* − π* π*ᵀ``, slowest first (linearisation derived in
    theory/preference_collapse.md)."""
    pi = optimal_policy(cfg)
    F = jnp.diag(pi) - pi[:, None] * pi[None, :]
    lam = jnp.linalg.eigvalsh(F)[1:]  # the zero eigenvalue (constant logits) dropped
    rates = jnp.abs(1.0 - cfg.lr * cfg.beta * lam)
    return jnp.sort(rates)[::-1]


def alpha_hat_se(cfg: Config, comparisons) -> jax.Array:
    """Asymptotic standard error of ``α̂ = cᵀ (r̂ − r)``, ``c = x̃/‖x̃‖²``,
    ``x̃ = log P_ref − mean``, for the maximum-likelihood table ``r̂`` from
    ``comparisons`` uniform pairs: ``sqrt(cᵀ (N I₁)⁺ c)`` with per-comparison Fisher
    information ``I₁ = E_pair σ'(R_a − R_b)(e_a − e_b)(e_a − e_b)ᵀ``
    (theory/preference_collapse.md)."""
    _, log_ref, reward = cfg.responses()
    R_true = reward + cfg.alpha * log_ref
    n = log_ref.shape[0]
    d = R_true[:, None] - R_true[None, :]
    s = jax.nn.sigmoid(d) * jax.nn.sigmoid(-d)  # σ'(R_a − R_b); diagonal cancels
    laplacian = jnp.diag(jnp.sum(s, axis=1)) - s
    info = 2.0 * laplacian / (n * (n - 1))  # a pair and its reverse both count
    xc = log_ref - jnp.mean(log_ref)
    c = xc / jnp.dot(xc, xc)
    # c ⟂ 1 and 1 spans the null space of I₁: adding 11ᵀ/n leaves I₁⁺c unchanged.
    x = jnp.linalg.solve(info + jnp.ones((n, n), info.dtype) / n, c)
    return jnp.sqrt(jnp.dot(c, x) / jnp.asarray(comparisons, log_ref.dtype))


def lattice_chi2_bound(cfg: Config) -> jax.Array:
    """``Σ_k max(1, M p_k)² / (n² p_k)``: a list of ``n`` items whose type ``q``
    maximises the multinomial has ``−1/n ≤ q_k − p_k ≤ M p_k/n``
    (theory/preference_collapse.md), so its Pearson ``χ²(q ‖ p_ref)`` is below this."""
    p = cfg.item_probs()
    dev = jnp.maximum(1.0, cfg.num_items * p) / cfg.list_size
    return jnp.sum(dev**2 / p)


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Predictions for the metrics of ``observe``.

    Exact NPG against the exact biased reward (``reward_model="oracle"``,
    ``policy_samples=0``): ``[T]`` trajectories of ``entropy``, ``mode_mass``,
    ``kl_ref``, ``kl_to_optimum``, ``log_gap``. Otherwise the limits (scalars) of
    ``entropy``, ``mode_mass``, ``kl_ref`` at ``π*``. ``alpha_hat``: ``α`` (exact for
    the oracle, the consistent limit of the fitted table). ``t=None``: the limits
    at ``π*`` in every case.
    """
    out = {"alpha_hat": jnp.asarray(cfg.alpha, cfg.item_probs().dtype)}
    exact = (
        t is not None
        and cfg.reward_model == "oracle"
        and cfg.optimizer == "npg"
        and cfg.policy_samples == 0
    )
    if exact:
        pi = npg_policy(cfg, t)
        log_opt = jnp.log(optimal_policy(cfg))
        out.update(_item_metrics(cfg, pi))
        logpi = jnp.log(pi)
        out["kl_to_optimum"] = jnp.sum(pi * (logpi - log_opt[None, :]), axis=-1)
        out["log_gap"] = npg_log_gap(cfg, t)
        return out
    out.update(_item_metrics(cfg, optimal_policy(cfg)))
    return out
