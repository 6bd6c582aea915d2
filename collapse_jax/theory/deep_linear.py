"""Mode-strength trajectories of a deep linear network (Saxe, McClelland & Ganguli 2014,
arXiv 1312.6120).

With the teacher Σ31 = U S Vᵀ, input covariance Σ11 = V Λ Vᵀ on the teacher directions,
and layers balanced and aligned with the teacher, each mode strength u_α obeys the
scalar gradient flow (τ = 1, time t = lr · step)

  du/dt = L u^{2 − 2/L} (s − λ u)                                  (depth L)

For L = 2 this is logistic and has the closed form
  u(t) = (s/λ) / (1 + (s/(λ u₀) − 1) e^{−2 s t})
(λ = 1: Saxe et al. Sec. 1, the sigmoidal solution for a balanced mode); for L ≥ 3 it is
integrated with RK4. Full derivation and the GD-vs-flow error: theory/deep_linear.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import roots_genlaguerre

from collapse_jax.models.deep_linear import Config
from collapse_jax.theory._ode import rk4_at_steps

__all__ = [
    "gd_first_order_error",
    "learning_time_two_layer",
    "mode_rate",
    "mode_strength_depth",
    "mode_strength_random_two_layer",
    "mode_strength_two_layer",
    "predict",
]

# RK4 sub-steps per unit of the GD step lr (the flow is integrated with h = lr / 8).
_RK4_SUBSTEPS = 8
# Gauss–Laguerre nodes for the average over the random initial strength.
_QUAD_NODES = 60


def mode_rate(u, s, lam, depth: int):
    """du/dt = L u^{2−2/L} (s − λu). Saxe et al. 2014 (arXiv 1312.6120), Sec. 3 (deep
    mode dynamics; λ = 1 there, the factor λ is the input variance along the mode)."""
    u = jnp.maximum(u, 0.0)
    return depth * u ** (2.0 - 2.0 / depth) * (s - lam * u)


def mode_strength_two_layer(t, s, lam, u0):
    """u(t) = (s/λ) / (1 + (s/(λu₀) − 1) e^{−2st}): the sigmoidal two-layer trajectory
    from a balanced start. Saxe et al. 2014 (arXiv 1312.6120), Sec. 1, closed-form
    solution of τ du/dt = 2u(s − u) (written here with λ ≠ 1 and τ = 1)."""
    cap = s / lam
    return cap / (1.0 + (cap / u0 - 1.0) * jnp.exp(-2.0 * s * t))


def learning_time_two_layer(s, lam, u0, uf):
    """Time to go from u₀ to u_f: (1/2s) ln[u_f (s/λ − u₀) / (u₀ (s/λ − u_f))], which is
    ∝ 1/s for fixed u₀, u_f/(s/λ). Saxe et al. 2014 (arXiv 1312.6120), Sec. 1."""
    cap = s / lam
    return jnp.log(uf * (cap - u0) / (u0 * (cap - uf))) / (2.0 * s)


def mode_strength_depth(steps, s, lam, u0, depth: int, lr):
    """RK4 integration of ``mode_rate`` from u₀, read at times lr·steps.

    Args:
      steps: ``[T]`` non-negative integer step indices (concrete).
      s, lam, u0: ``[M]`` per-mode teacher value, input variance, initial strength.
      depth: L.
      lr: the GD learning rate (time per step).

    Returns:
      ``[T, M]``.
    """
    u0 = jnp.asarray(u0) * jnp.ones_like(jnp.asarray(s))
    return rk4_at_steps(
        lambda u: mode_rate(u, s, lam, depth), u0, steps, lr, _RK4_SUBSTEPS
    )


def _dof(singular_values, hidden: int) -> np.ndarray:
    """``[M]`` degrees of freedom h − k_α, k_α = number of modes with a larger s."""
    sv = np.asarray(singular_values)
    return hidden - np.sum(sv[None, :] > sv[:, None], axis=1)


def _chi2_nodes(sigma, dof: np.ndarray, dtype):
    """``[M, Q]`` nodes and weights for E[g(|p|²)], |p|² ~ (σ²/2) χ²_{dof}."""
    nodes, weights = [], []
    for k in dof:
        x, w = roots_genlaguerre(_QUAD_NODES, k / 2.0 - 1.0)
        nodes.append(x)
        weights.append(w / np.sum(w))  # the Gamma(k/2, 1) law
    return sigma**2 * jnp.asarray(np.stack(nodes), dtype), jnp.asarray(
        np.stack(weights), dtype
    )


def mode_strength_random_two_layer(t, s, lam, sigma, dof: np.ndarray):
    """Seed-mean of u_α(t) for two layers from i.i.d. N(0, σ²) weights.

    In the early (linear) phase a = W_1 v and b = W_2ᵀ u obey ȧ = s b, ḃ = s a, so
    a·b = |p|² e^{2st} − |q|² e^{−2st} with p, q = (a₀ ± b₀)/2, |p|², |q|² ~ (σ²/2) χ²_h.
    Matching the growing part to the balanced sigmoid (Saxe et al. 2014, arXiv
    1312.6120, Sec. 1 and its discussion of random initial conditions) gives
    u(t) ≈ sigmoid(t; u₀ = |p|²) − |q|² e^{−2st}. Modes learned earlier (larger s)
    remove, through the coupling terms of the mode equations, the component of p along
    their own direction, so mode α grows from the projection of p onto the
    orthogonal complement of the k_α faster modes: |p|² ~ (σ²/2) χ²_{h−k_α}
    (``dof``). The mean averages the sigmoid over that law (generalised Gauss–Laguerre
    quadrature).

    Args:
      t: ``[T]`` times; s, lam: ``[M]``; sigma: init std; dof: ``[M]`` h − k_α.

    Returns:
      ``[T, M]``.
    """
    u0, w = _chi2_nodes(sigma, dof, s.dtype)
    grow = mode_strength_two_layer(
        t[:, None, None], s[None, :, None], lam[None, :, None], u0[None, :, :]
    )
    mean_grow = jnp.sum(grow * w[None, :, :], axis=-1)
    q2 = sigma**2 * jnp.asarray(dof, s.dtype) / 2.0
    decay = q2[None, :] * jnp.exp(-2.0 * s[None, :] * t[:, None])
    return mean_grow - decay


def _mode_params(cfg: Config):
    dtype = jnp.dtype(cfg.dtype)
    s = jnp.asarray(cfg.singular_values, dtype)
    lam = jnp.asarray(cfg.eigs, dtype)
    return s, lam


def _first_order(u, u0, s, lam, depth: int, lr):
    """−(η/2) u̇ ln(ȧ/ȧ₀) on trajectories ``u`` (broadcast with u0, s, lam)."""
    a = jnp.maximum(u, 0.0) ** (1.0 / depth)
    adot = a ** (depth - 1) * (s - lam * u)
    a0 = u0 ** (1.0 / depth)
    adot0 = a0 ** (depth - 1) * (s - lam * u0)
    udot = mode_rate(u, s, lam, depth)
    # u̇ ln ȧ → 0 where a mode has converged (ȧ = 0): take that limit explicitly.
    moving = jnp.abs(adot) > 0
    ratio = jnp.where(moving, jnp.abs(adot) / jnp.abs(adot0), 1.0)
    return -0.5 * lr * jnp.where(moving, udot * jnp.log(ratio), 0.0)


def gd_first_order_error(cfg: Config, t) -> jax.Array:
    """Leading-order gap u_GD − u_flow at step indices ``t``, ``[T, M]``.

    For a scalar flow ȧ = f(a) the Euler/GD iterate a_{k+1} = a_k + η f(a_k) satisfies
    a_k − a(ηk) = −(η/2) ȧ(t) ln(ȧ(t)/ȧ(0)) + O(η²) (the modified equation
    ȧ = f − (η/2) f′f, whose variation propagates as f(a(t))/f(a(τ)) and integrates to a
    logarithm); here a = u^{1/L}, f(a) = a^{L−1}(s − λa^L), so
    u_GD − u = −(η/2) u̇(t) ln(ȧ(t)/ȧ(0)). For a random two-layer init the same term is
    averaged over the law of the effective start u₀ = |p|² (see
    ``mode_strength_random_two_layer``). Derived in theory/deep_linear.md.
    """
    t = np.asarray(t)
    s, lam = _mode_params(cfg)
    L = cfg.depth
    time = cfg.lr * jnp.asarray(t, s.dtype)
    if cfg.init == "random":
        predict(cfg, t)  # validates the regime (depth 2)
        dof = _dof(cfg.singular_values, cfg.hidden)
        u0, w = _chi2_nodes(cfg.init_scale, dof, s.dtype)
        u = mode_strength_two_layer(
            time[:, None, None], s[None, :, None], lam[None, :, None], u0[None, :, :]
        )
        e = _first_order(
            u, u0[None, :, :], s[None, :, None], lam[None, :, None], L, cfg.lr
        )
        return jnp.sum(e * w[None, :, :], axis=-1)
    u = predict(cfg, t)["modes"]
    u0 = jnp.asarray(cfg.init_scale, s.dtype) ** L
    return _first_order(u, u0, s[None, :], lam[None, :], L, cfg.lr)


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """``modes``: ``[T, M]`` gradient-flow mode strengths at step indices ``t``.

    Balanced init: the two-layer sigmoid (L = 2) or the RK4 solution of the depth-L mode
    ODE. Random init: the seed-mean prediction of ``mode_strength_random_two_layer``
    (L = 2 only). Also ``loss`` ``[T]`` for the balanced init, 1/2 Σ λ(u − s/λ)².

    ``t=None``: the limit ``t → ∞``, ``modes`` ``[M]`` at the fixed point ``s/λ`` of
    ``mode_rate``, which every mode starting above 0 reaches (balanced and random
    init), and ``loss`` 0 for the balanced init.
    """
    s, lam = _mode_params(cfg)
    L = cfg.depth
    if t is None and not (cfg.init == "random" and L != 2):  # that case raises below
        out = {"modes": s / lam}
        if cfg.init == "balanced":
            out["loss"] = jnp.zeros((), s.dtype)
        return out
    t = np.asarray(0 if t is None else t)
    time = cfg.lr * jnp.asarray(t, s.dtype)
    if cfg.init == "random":
        if L != 2:
            raise ValueError(
                f"depth={L}: the random-init prediction is derived for depth 2 only "
                "(use init='balanced' for the depth-L mode ODE)"
            )
        dof = _dof(cfg.singular_values, cfg.hidden)
        u = mode_strength_random_two_layer(time, s, lam, cfg.init_scale, dof)
        return {"modes": u}
    u0 = jnp.asarray(cfg.init_scale, s.dtype) ** L * jnp.ones_like(s)
    if L == 2:
        u = mode_strength_two_layer(
            time[:, None], s[None, :], lam[None, :], u0[None, :]
        )
    else:
        u = mode_strength_depth(t, s, lam, u0, L, cfg.lr)
    loss = 0.5 * jnp.sum(lam[None, :] * (u - (s / lam)[None, :]) ** 2, axis=1)
    return {"modes": u, "loss": loss}
