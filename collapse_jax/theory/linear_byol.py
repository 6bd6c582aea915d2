"""Eigenmode theory of linear BYOL / SimSiam and DirectPred.

Tian, Chen, Ganguli 2021, "Understanding self-supervised learning dynamics without
contrastive pairs" (arXiv 2102.06810). With isotropic data (``X = I``), isotropic
augmentation (``X' = σ² I``) and aligned eigenbases, the matrix dynamics decouple into
one system per eigenmode ``j`` (their Sec. 4.2, "decoupled dynamics"); in the
amplitudes ``w`` (online encoder), ``a`` (target) and ``p`` (predictor), with
``s = w²``, time ``t = lr · step`` and ``β = ema / lr``:

  ṗ = α_p w (a − (1+σ²) p w) − η p
  ẇ = p (a − (1+σ²) p w) − η w
  ȧ = β (w − a)                    (a ≡ w when ema = 1)

Hence ``d/dt (s − p²/α_p) = −2η (s − p²/α_p)``: the invariant parabola
``s − p²/α_p = c e^{−2ηt}`` (their Sec. 4.2). The non-trivial fixed points have
``a = w`` and ``p (1 − (1+σ²) p) = η``; they exist iff ``η ≤ 1/(4(1+σ²))``.
DirectPred replaces the ``ṗ`` equation by ``p = √(c f̂) + ε`` with
``f̂' = ((1−ρ)/lr)(s − f̂)`` (``f̂ ≡ s`` when ρ = 0).

The full derivation, and the conventions that differ from the paper, are in
theory/linear_byol.md. Every function is pure ``jnp`` of the Config (``t`` must be a
concrete array of step indices).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models.linear_byol import Config
from collapse_jax.theory._ode import rk4_at_steps

__all__ = [
    "collapse_threshold_weight_decay",
    "fixed_point_p",
    "fixed_point_s",
    "parabola_gap",
    "predict",
    "unstable_p",
    "vector_field",
    "mode_trajectories",
]

_SUBSTEPS = 4  # RK4 substeps per training step: the ODE error is far below lr


def _check(cfg: Config) -> None:
    if cfg.init != "aligned":
        raise ValueError(
            f"init={cfg.init!r}: the decoupled eigenmode theory needs init='aligned' "
            "(eigenbases of W_p and F aligned from the start)"
        )


def collapse_threshold_weight_decay(cfg: Config) -> jax.Array:
    """``η* = 1/(4(1+σ²))``: above it no non-trivial fixed point exists and every mode
    collapses. Tian, Chen, Ganguli 2021 (arXiv 2102.06810), Sec. 4.2 (fixed points of
    the decoupled dynamics with ``τ = 1``)."""
    return 1.0 / (4.0 * (1.0 + cfg.aug_var))


def _roots(cfg: Config):
    k = 1.0 + cfg.aug_var
    disc = 1.0 - 4.0 * cfg.weight_decay * k
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    return (1.0 + root) / (2.0 * k), (1.0 - root) / (2.0 * k), disc >= 0


def fixed_point_p(cfg: Config) -> jax.Array:
    """Stable predictor eigenvalue ``p₊ = (1 + √(1 − 4η(1+σ²)))/(2(1+σ²))``.

    Root of ``p(1 − (1+σ²)p) = η``, Tian, Chen, Ganguli 2021 (arXiv 2102.06810),
    Sec. 4.2. Regime switch: for ``η > η*`` (no real root) the only fixed point is the
    collapsed one and this returns 0.
    """
    p_plus, _, real = _roots(cfg)
    return jnp.where(real, p_plus, 0.0)


def unstable_p(cfg: Config) -> jax.Array:
    """Basin boundary ``p₋ = (1 − √(1 − 4η(1+σ²)))/(2(1+σ²))`` on the invariant
    parabola (``c = 0``): modes starting with ``p < p₋`` collapse. Tian, Chen, Ganguli
    2021 (arXiv 2102.06810), Sec. 4.2. For ``η > η*`` returns ``+inf`` (every mode
    collapses)."""
    _, p_minus, real = _roots(cfg)
    return jnp.where(real, p_minus, jnp.inf)


def fixed_point_s(cfg: Config) -> jax.Array:
    """Mode strength at the stable fixed point.

    Learned predictor: ``s* = p₊²/α_p`` (the fixed point lies on the parabola
    ``s = p²/α_p`` since ``c e^{−2ηt} → 0`` for η > 0). DirectPred: ``p = √(c s) + ε``
    gives ``s* = (p₊ − ε)²/c`` when ``p₊ > ε``. 0 when ``η > η*`` (regime switch) —
    the collapsed fixed point. Tian, Chen, Ganguli 2021 (arXiv 2102.06810), Sec. 4.2
    and Sec. 5 (DirectPred).
    """
    p_plus = fixed_point_p(cfg)
    if cfg.predictor == "directpred":
        return jnp.maximum(p_plus - cfg.dp_eps, 0.0) ** 2 / cfg.dp_scale
    return p_plus**2 / cfg.alpha_p


def vector_field(cfg: Config, p, s):
    """``(ṗ, ṡ)`` of the learned-predictor dynamics with ``τ = 1`` (SimSiam,
    ``a = w``), on arrays ``p, s`` of any common shape: ``ṗ = α_p s (1 − (1+σ²)p) −
    ηp``, ``ṡ = 2ps(1 − (1+σ²)p) − 2ηs``. Tian, Chen, Ganguli 2021 (arXiv
    2102.06810), Sec. 4.2, phase portrait of the decoupled dynamics (their Fig. 4)."""
    k = 1.0 + cfg.aug_var
    g = 1.0 - k * p
    return (
        cfg.alpha_p * s * g - cfg.weight_decay * p,
        2 * p * s * g - 2 * cfg.weight_decay * s,
    )


def _initial_modes(cfg: Config):
    d = cfg.dim
    s0 = cfg.s0 * (d - jnp.arange(d)) / d
    w0 = jnp.sqrt(s0)
    p0 = jnp.broadcast_to(jnp.asarray(cfg.p0, w0.dtype), (d,))
    return jnp.stack([p0, w0, w0, s0], axis=0)  # [4, d]: p, w, a, f


def _rhs(y, cfg: Config):
    p, w, a, f = y
    k = 1.0 + cfg.aug_var
    eta, lr = cfg.weight_decay, cfg.lr
    directpred = cfg.predictor == "directpred"
    if directpred:
        f_eff = jnp.where(cfg.dp_rho > 0, f, w**2)
        p = jnp.sqrt(cfg.dp_scale * jnp.maximum(f_eff, 0.0)) + cfg.dp_eps
    a_eff = jnp.where(cfg.ema >= 1, w, a)
    err = a_eff - k * p * w
    dw = p * err - eta * w
    dp = 0.0 * p if directpred else cfg.alpha_p * w * err - eta * p
    da = jnp.where(cfg.ema >= 1, dw, (cfg.ema / lr) * (w - a))
    df = jnp.where(cfg.dp_rho > 0, ((1 - cfg.dp_rho) / lr) * (w**2 - f), 2 * w * dw)
    return jnp.stack([dp, dw, da, df], axis=0)


def _solve(cfg: Config, t):
    """Unsorted ``p, s`` ``[T, d]`` (modes in their initial order) at flat ``t``."""
    _check(cfg)
    t = np.asarray(t)
    ys = rk4_at_steps(
        lambda y: _rhs(y, cfg), _initial_modes(cfg), t.reshape(-1), cfg.lr, _SUBSTEPS
    )  # [T, 4, d]
    p, w, f = ys[:, 0], ys[:, 1], ys[:, 3]
    if cfg.predictor == "directpred":
        f_eff = jnp.where(cfg.dp_rho > 0, f, w**2)
        p = jnp.sqrt(cfg.dp_scale * jnp.maximum(f_eff, 0.0)) + cfg.dp_eps
    return p, w**2


def _sorted(x, s):
    return jnp.take_along_axis(x, jnp.argsort(-s, axis=-1), axis=-1)


def mode_trajectories(cfg: Config, t) -> dict[str, jax.Array]:
    """RK4 solution of the decoupled eigenmode ODEs at step indices ``t``.

    Returns ``p, s`` of shape ``[*t.shape, d]`` ordered by decreasing ``s`` (as the
    model's ``observe``). The ODE is that of Tian, Chen, Ganguli 2021 (arXiv
    2102.06810), Sec. 4.2, with the EMA and DirectPred extensions of
    theory/linear_byol.md; ``_SUBSTEPS`` RK4 steps per training step of length ``lr``.
    """
    p, s = _solve(cfg, t)
    shape = np.shape(t) + (cfg.dim,)
    return {"p": _sorted(p, s).reshape(shape), "s": _sorted(s, s).reshape(shape)}


def parabola_gap(cfg: Config, t) -> jax.Array:
    """``s − p²/α_p = c e^{−2η lr t}`` per mode, ``[t.size, d]``, with ``c`` from the
    initial condition: the conserved quantity of the learned-predictor dynamics, for
    any EMA rate. Tian, Chen, Ganguli 2021 (arXiv 2102.06810), Sec. 4.2 (invariant
    parabola). Modes in their initial order (decreasing initial ``s``)."""
    _check(cfg)
    if cfg.predictor != "learned":
        raise ValueError(
            "parabola_gap: the invariant parabola is a property of the learned "
            f"predictor; predictor={cfg.predictor!r} sets p directly"
        )
    y0 = _initial_modes(cfg)
    c = y0[3] - y0[0] ** 2 / cfg.alpha_p
    time = cfg.lr * jnp.asarray(np.asarray(t), dtype=c.dtype)
    decay = jnp.exp(-2 * cfg.weight_decay * time)
    return c[None, :] * decay.reshape(-1)[:, None]


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Predicted ``p``, ``s`` (and ``parabola_gap`` for the learned predictor), each
    ``[*t.shape, d]``, at step indices ``t`` (a concrete array); modes ordered by
    decreasing ``s`` at each time, as in the model's ``observe``.

    ``t=None``: no limit is derived here (which fixed point a mode reaches depends
    on its basin, see ``fixed_point_p`` and ``unstable_p``): an empty dict."""
    if t is None:
        _check(cfg)
        return {}
    p, s = _solve(cfg, t)
    shape = np.shape(t) + (cfg.dim,)
    out = {"p": _sorted(p, s).reshape(shape), "s": _sorted(s, s).reshape(shape)}
    if cfg.predictor == "learned":
        gap = parabola_gap(cfg, np.asarray(t).reshape(-1))
        out["parabola_gap"] = _sorted(gap, s).reshape(shape)
    return out
