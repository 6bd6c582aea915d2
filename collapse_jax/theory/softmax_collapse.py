"""Bit-level predictions for softmax collapse, StableMax and ⊥Grad.

Prieto, Barsbey, Mediano & Birdal 2025, "Grokking at the edge of numerical stability"
(arXiv 2501.04697): once the correct logit leads by enough, the softmax sum
``Σ_j exp(s_j) = 1 + Σ_{j≠y} exp(−g_j)`` rounds to exactly 1 in the working dtype
(absorption), and the correct-class gradient ``1/S − 1`` is exactly zero (Softmax
Collapse, SC). With ``p`` significand bits (implicit bit included) and round to
nearest even, ``1 + e`` rounds to 1 iff ``e ≤ 2^{−p}``, so the two-class threshold is
``g* = p ln 2`` (up to ``exp``'s own rounding): linear in ``p``. StableMax's rational
tails move it into ``[2(2^{p/2−1} − 1), 2(2^{⌈p/2⌉} − 1)]``: exponential in ``p``.

The collapse step is derived (theory/softmax_collapse.md) for the model's aligned,
two-class linear toy, whose every gap obeys the scalar map
``g ← g + (κ/2)(q + w)``, ``κ = lr·m²``, with ``q`` the computed correct-class and
``w`` the computed wrong-class gradient; before SC ``S`` takes the values ``1 + k·u``
(``u = 2^{1−p}``), which quantises ``q``. The gradient flow of that map is integrated
in closed form region by region.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models.softmax_collapse import Config

__all__ = [
    "collapse_step",
    "collapse_step_tolerance",
    "euler_inner_product",
    "euler_lead",
    "gap_time",
    "gap_tolerance",
    "gap_trajectory",
    "perp_norm_sq",
    "predict",
    "significand_bits",
    "softmax_threshold",
    "softmax_threshold_bracket",
    "stablemax_threshold",
    "stablemax_threshold_bracket",
]

_BITS = {"bfloat16": 8, "float16": 11, "float32": 24, "float64": 53}
_K_MAX = 4096  # quantised regions resolved; beyond, the flow is unquantised


def significand_bits(dtype: str) -> int:
    """Significand bits ``p`` including the implicit one (IEEE 754; bfloat16: 8)."""
    if dtype not in _BITS:
        raise ValueError(
            f"dtype={dtype!r} is not allowed: choose one of {tuple(_BITS)}"
        )
    return _BITS[dtype]


def softmax_threshold(dtype: str) -> float:
    """Two-class collapse gap ``g* = p ln 2 − ln(1 + 2^{−p})``.

    The computed correct-class gradient of ``−log_softmax`` (max subtracted, then
    log-sum-exp) on logits ``(0, −G)`` is exactly zero iff ``fl(1 + fl(e^{−G})) = 1``
    iff ``fl(e^{−G}) ≤ 2^{−p}`` iff ``e^{−G} ≤ 2^{−p}(1 + 2^{−p})`` (ties to even on
    both roundings; ``exp`` correctly rounded). Mechanism: Prieto et al. 2025 (arXiv
    2501.04697), Sec. 3 (absorption errors); the bit count is our derivation."""
    p = significand_bits(dtype)
    return p * math.log(2.0) - math.log1p(2.0**-p)


def softmax_threshold_bracket(dtype: str, num_classes: int) -> tuple[float, float]:
    """``(lo, hi)`` collapse gap with ``C − 1`` equal rival logits at gap ``G``.

    ``lo = p ln 2 − ln(1 + 2^{−p})``: the sum starts at the leading ``1`` and absorbs
    each ``e^{−G}`` alone; ``hi = p ln 2 + ln(C − 1) + 2^{1−p}``: the small terms are
    summed first (or exactly, as jnp.sum does for 16-bit floats in float32) and absorbed
    together, ``(C − 1) e^{−G} ≤ 2^{−p}``; ``2^{1−p}`` covers the partial sums' and
    ``exp``'s rounding. Our derivation (theory/softmax_collapse.md)."""
    p = significand_bits(dtype)
    lo = softmax_threshold(dtype)
    return lo, p * math.log(2.0) + math.log(num_classes - 1) + 2.0 ** (1 - p)


def stablemax_threshold(dtype: str) -> float:
    """Two-class StableMax collapse gap ``2(2^{⌈p/2⌉} − 1)`` for logits ``±g/2``.

    ``S(g/2) = r = 1 + g/2`` and ``S(−g/2) = 1/r``; the sum ``r + 1/r`` rounds to
    ``r`` iff ``1/r ≤ ulp(r)/2``. In the binade ``[2^k, 2^{k+1})`` that needs
    ``r ≥ 2^{p−k}``, first possible at ``k = ⌈p/2⌉`` and ``r = 2^{⌈p/2⌉}`` (for even
    ``p`` a tie, which rounds to the even ``r``). StableMax: Prieto et al. 2025 (arXiv
    2501.04697), Sec. 6; the threshold is our derivation."""
    p = significand_bits(dtype)
    return 2.0 * (2.0 ** math.ceil(p / 2) - 1.0)


def stablemax_threshold_bracket(dtype: str) -> tuple[float, float]:
    """``(lo, hi)`` two-class StableMax gaps (logits ``±g/2``): below ``lo`` the
    computed correct-class gradient is never zero, from ``hi`` on always.

    The gradient is ``S′(z_y)(1/ΣS − 1/S(z_y))``: zero when the sum absorbs ``1/r``
    (``hi = stablemax_threshold``) and, sporadically below that, when the two rounded
    reciprocals coincide, which needs their relative difference ``≈ 1/(2r²)`` (``1/r``
    itself rounded to ``≥ ulp(r)/2``) to be under ``2^{1−p}``: ``r ≥ 2^{p/2 − 1}``, so
    ``lo = 2(2^{p/2−1} − 1)``. Both ends are exponential in ``p``. Our derivation."""
    p = significand_bits(dtype)
    return 2.0 * (2.0 ** (p / 2 - 1) - 1.0), stablemax_threshold(dtype)


def _kappa(cfg: Config):
    return jnp.asarray(cfg.lr) * jnp.asarray(cfg.margin) ** 2


def _regions(cfg: Config):
    """Quantised regions ``k = 1..K``: the gaps ``lo_k < g ≤ hi_k`` where the softmax
    sum rounds to ``S = 1 + k u``, so the map's rate is
    ``h(g) = (κ/2)(k u + e^{−g})/(1 + k u)``."""
    p = significand_bits(cfg.dtype)
    u = 2.0 ** (1 - p)
    # Regions with k u ≤ 1/8 (S = 1 + k u ≤ 9/8): beyond, quantisation is immaterial.
    K = int(min(_K_MAX, 1 / (8 * u)))
    k = jnp.arange(1, K + 1, dtype=jnp.result_type(float))
    lo = -jnp.log((k + 0.5) * u)  # S = 1 + k u for e in ((k − ½)u, (k + ½)u]
    hi = -jnp.log((k - 0.5) * u)
    return p, u, k, lo, hi


@functools.partial(jax.jit, static_argnums=2)
def gap_time(cfg: Config, g, lead: bool = True) -> jnp.ndarray:
    """Steps for the aligned two-class linear toy (``init_scale = 0``) to grow its
    gap from ``init_gap`` to ``g`` (any shape), by rule:

    - softmax, plain GD: ``_softmax_gap_time`` (quantised regions; ``g ≤ g*``);
    - StableMax, plain GD: with ``r = 1 + g/2``, ``dr/dt = (κ/2)/(r(r² + 1))``, so
      ``T = (2/κ)[r⁴/4 + r²/2]_{r₀}^{r}`` (gap ``~ t^{1/4}``);
    - softmax, ⊥Grad: the direction is already optimal, so every step is
      orthogonal and only the norm grows, ``g_{t+1}² = g_t² + κ² σ(−g_t)²`` (norm
      identity with ``‖∇L‖ = m σ(−g)``): ``T = [g² + 4(g − 1)eᵍ + (g − ½)e²ᵍ]/κ²``
      between the ends; the rounding of the softmax sum is neglected (valid while
      ``e^{−g} ≫ 2^{−p}``; ``gap_tolerance`` bounds its effect).

    With ``lead``, Euler's lead over the flow is subtracted: a map ``x ← x + h(x)``
    gains ``½ ∫ |h′|/h dx`` steps on its flow (``euler_lead``). Our derivations
    (theory/softmax_collapse.md); ``κ = lr·m²``."""
    kappa = _kappa(cfg)
    g = jnp.asarray(g, dtype=jnp.result_type(float))
    g0 = jnp.asarray(cfg.init_gap, dtype=g.dtype)
    if cfg.grad == "plain" and cfg.loss == "softmax":
        return _softmax_gap_time(cfg, g, lead)
    if cfg.grad == "plain":
        r, r0 = 1 + g / 2, 1 + g0 / 2

        def F(r):
            return r**4 / 4 + r**2 / 2

        t = 2 * (F(r) - F(r0)) / kappa
    elif cfg.loss == "softmax":

        def F(g):
            return g**2 + 4 * (g - 1) * jnp.exp(g) + (g - 0.5) * jnp.exp(2 * g)

        t = (F(g) - F(g0)) / kappa**2
    else:
        raise ValueError("gap_time: StableMax under ⊥Grad has no closed form here")
    return t - euler_lead(cfg, g) if lead else t


def euler_lead(cfg: Config, g) -> jnp.ndarray:
    """Steps by which gradient descent runs ahead of its gradient flow from
    ``init_gap`` to ``g``, ``½ ∫ |h′|/h dx`` for the map ``x ← x + h(x)``:
    StableMax (``x = g``): ``½ ln(r(r²+1) / (r₀(r₀²+1)))``, ``r = 1 + g/2``;
    ⊥Grad (``x = g²``): ``ln((1 + eᵍ)/(1 + e^{g₀}))``; softmax unquantised
    (``x = g``): ``½ ln((1 + eᵍ)/(1 + e^{g₀}))``. Our derivation."""
    g = jnp.asarray(g, dtype=jnp.result_type(float))
    g0 = jnp.asarray(cfg.init_gap, dtype=g.dtype)
    if cfg.loss == "stablemax":
        r, r0 = 1 + g / 2, 1 + g0 / 2
        return 0.5 * jnp.log(r * (r**2 + 1) / (r0 * (r0**2 + 1)))
    full = jnp.log1p(jnp.exp(g)) - jnp.log1p(jnp.exp(g0))
    return full if cfg.grad == "perp" else 0.5 * full


def _softmax_gap_time(cfg: Config, g, lead: bool = True) -> jnp.ndarray:
    """Softmax, plain GD: steps from ``init_gap`` to ``g`` (``≤`` the collapse gap).

    Flow of ``g ← g + h(g)`` region by region (theory/softmax_collapse.md):
    ``k ≥ 1``: ``T = 2(1+ku)/(κku) · ln((ku e^{g₂} + 1)/(ku e^{g₁} + 1))``;
    unquantised (``k > K``): ``T = (g₂ − g₁ + e^{g₂} − e^{g₁})/κ``. Euler's lead over
    the flow, ``½ ∫ |h′|/h dg``, and the mean lead at each region boundary,
    ``½ (h₋/h₊ − 1)``, are subtracted. Our derivation."""
    p, u, k, lo, hi = _regions(cfg)
    kappa = _kappa(cfg)
    g = jnp.asarray(g, dtype=lo.dtype)
    g0 = jnp.asarray(cfg.init_gap, dtype=lo.dtype)
    gq = lo[-1]  # below: unquantised flow
    shape = g.shape
    g = g.reshape(-1, 1)
    # Unquantised part: from g0 to min(g, gq).
    a = jnp.minimum(g0, g)
    b = jnp.clip(g, a, jnp.maximum(gq, a))
    t_cont = (b - a + jnp.exp(b) - jnp.exp(a)) / kappa
    lead_cont = 0.5 * (jnp.log1p(jnp.exp(b)) - jnp.log1p(jnp.exp(a)))
    # Quantised regions, [points, K].
    k, lo, hi = k[None, :], lo[None, :], hi[None, :]
    ku = k * u
    a_k = jnp.maximum(lo, g0)
    b_k = jnp.minimum(hi, g)
    inside = b_k > a_k
    a_k, b_k = jnp.where(inside, a_k, 0.0), jnp.where(inside, b_k, 0.0)
    t_k = (2 * (1 + ku) / (kappa * ku)) * (
        jnp.log1p(ku * jnp.exp(b_k)) - jnp.log1p(ku * jnp.exp(a_k))
    )
    lead_k = 0.5 * (jnp.log(ku + jnp.exp(-a_k)) - jnp.log(ku + jnp.exp(-b_k)))
    # Boundary between regions k and k − 1 (at g = hi_k) crossed when g0 < hi_k < g.
    crossed = (k >= 2) & (hi > g0) & (hi < g)
    e_b = (k - 0.5) * u
    ratio = ((ku + e_b) / (1 + ku)) / (((k - 1) * u + e_b) / (1 + (k - 1) * u))
    lead_b = jnp.where(crossed, 0.5 * (ratio - 1), 0.0)
    flow = t_cont[:, 0] + jnp.sum(jnp.where(inside, t_k, 0.0), axis=1)
    ahead = (
        lead_cont[:, 0]
        + jnp.sum(jnp.where(inside, lead_k, 0.0), axis=1)
        + jnp.sum(lead_b, axis=1)
    )
    return (flow - ahead if lead else flow).reshape(shape)


@jax.jit
def collapse_step(cfg: Config) -> jnp.ndarray:
    """Predicted (fractional) step at which the aligned two-class toy's gap reaches
    its collapse gap (``softmax_threshold`` or ``stablemax_threshold``); the first
    collapsed record is its ``ceil``. ``init_scale = 0``. Our derivation
    (theory/softmax_collapse.md)."""
    if cfg.loss == "softmax":
        return gap_time(cfg, softmax_threshold(cfg.dtype))
    return gap_time(cfg, stablemax_threshold(cfg.dtype))


@jax.jit
def collapse_step_tolerance(cfg: Config) -> jnp.ndarray:
    """Stated bound on ``|simulated − collapse_step|`` (steps):
    the boundary leads' spread (each ``±½(h₋/h₊ − 1)``), the gap's rounding in the
    working dtype (``ulp(g*)/h(g*)``: the loss sees ``fl(z_o − z_y)``), and one step
    for the integer crossing."""
    p, u, k, lo, hi = _regions(cfg)
    g_star = softmax_threshold(cfg.dtype)
    g0 = jnp.asarray(cfg.init_gap, dtype=lo.dtype)
    ku = k * u
    e_b = (k - 0.5) * u
    ratio = ((ku + e_b) / (1 + ku)) / (((k - 1) * u + e_b) / (1 + (k - 1) * u))
    crossed = (k >= 2) & (hi > g0) & (hi < g_star)
    spread = jnp.sum(jnp.where(crossed, 0.5 * (ratio - 1), 0.0))
    ulp = 2.0 ** (math.floor(math.log2(g_star)) + 1 - p)
    h_star = 0.5 * _kappa(cfg) * (u + 2.0**-p) / (1 + u)  # rate just before SC
    return spread + ulp / h_star + 1.0


def gap_trajectory(cfg: Config, t, lead: bool = True) -> np.ndarray:
    """Predicted gap at steps ``t`` (concrete): ``gap_time`` inverted on a grid from
    ``init_gap`` up to the collapse gap; NaN past it (the rate changes at SC)."""
    t = np.asarray(t, dtype=float)
    g_end = (
        softmax_threshold(cfg.dtype)
        if cfg.loss == "softmax"
        else stablemax_threshold(cfg.dtype)
    )
    g0 = float(cfg.init_gap)
    if cfg.loss == "stablemax" or cfg.grad == "perp":
        # Grow the grid's end until it covers the last step (these take ~forever).
        hi = g0 + 1.0
        while hi < g_end and float(gap_time(cfg, hi)) < t.max():
            hi = g0 + 2 * (hi - g0)
        g_end = min(hi, g_end)
    grid = np.linspace(g0, g_end, 2001)
    times = np.asarray(gap_time(cfg, grid, lead))
    return np.where(t <= times[-1], np.interp(t, times, grid), np.nan)


def gap_tolerance(cfg: Config, t) -> float:
    """Stated bound on ``|simulated − predicted|`` gap over steps ``t`` (concrete).

    Softmax, plain GD: the collapse-step bound times the gap's largest slope, plus
    one ulp of ``g*`` in the working dtype (the metric is read there). Otherwise:
    the whole Euler lead mapped to a gap (bounding its second-order remainder), one
    ulp of the largest gap in the working dtype, and for ⊥Grad the rounding of the
    softmax sum (``|δq| ≤ u/2`` moves the rate ``(q + w)²`` by ``≤ u/(2e^{−g})``
    relatively, so the gap by that times its growth)."""
    t = np.asarray(t, dtype=float)
    p = significand_bits(cfg.dtype)

    def ulp(x):
        return 2.0 ** (math.floor(math.log2(x)) + 1 - p)

    g = gap_trajectory(cfg, t)
    if cfg.grad == "plain" and cfg.loss == "softmax" and cfg.dtype != "float64":
        slope = float(np.nanmax(np.diff(g) / np.diff(t))) if g.size > 1 else 0.0
        steps = float(collapse_step_tolerance(cfg))
        return slope * steps + ulp(softmax_threshold(cfg.dtype))
    g_max = float(np.nanmax(g))
    bound = float(np.nanmax(np.abs(g - gap_trajectory(cfg, t, lead=False))))
    bound += ulp(g_max)
    if cfg.grad == "perp":
        u = 2.0 ** (1 - p)
        bound += u / (2 * math.exp(-g_max)) * (g_max - float(cfg.init_gap))
    return bound


def euler_inner_product(z, probs, y, degree: int):
    """``⟨θ, ∇L⟩`` of a ``degree``-homogeneous classifier under softmax CE.

    Euler: ``⟨θ, ∇_θ z_i⟩ = degree · z_i``, so ``⟨θ, ∇L⟩ = degree · mean_i ⟨p_i − e_{y_i},
    z_i⟩``, negative whenever every ``z_{i,y_i}`` is the strict maximum (``⟨p, z⟩`` is
    an average of the logits): ``−∇L`` has a positive component along ``θ``, scaling
    the weights up lowers the loss (naïve loss minimisation; Prieto et al. 2025, arXiv
    2501.04697, Sec. 5). ``z, probs [n, C]``, ``y [n]``."""
    z, probs = jnp.asarray(z), jnp.asarray(probs)
    onehot = jnp.eye(z.shape[-1], dtype=z.dtype)[y]
    return degree * jnp.mean(jnp.sum((probs - onehot) * z, axis=-1))


def perp_norm_sq(norm0_sq, grad_sq, lr):
    """⊥Grad norm identity: ``‖θ_{t+1}‖² = ‖θ_t‖² + lr² ‖∇L_t‖²`` per tensor (the
    update ``lr·g̃`` is orthogonal to ``θ_t`` and ``‖g̃‖ = ‖∇L‖``), so
    ``‖θ_t‖² = ‖θ_0‖² + lr² Σ_{s<t} ‖∇L_s‖²``: the norm grows at second order only.
    ⊥Grad: Prieto et al. 2025 (arXiv 2501.04697), Sec. 6. ``grad_sq [..., t]``."""
    grad_sq = jnp.asarray(grad_sq)
    return norm0_sq + lr**2 * jnp.concatenate(
        [jnp.zeros_like(grad_sq[..., :1]), jnp.cumsum(grad_sq, axis=-1)[..., :-1]],
        axis=-1,
    )


def predict(cfg: Config, t=None) -> dict[str, jnp.ndarray]:
    """``gap_mean`` and ``collapsed`` at steps ``t`` for the aligned two-class linear
    toy (``init_scale = 0``): the gap from ``gap_trajectory``, the collapse fraction 0
    before and 1 after ``collapse_step`` (NaN, no prediction, within
    ``collapse_step_tolerance`` of it; the gap is NaN from there on). ``t=None``: the
    limit, ``collapsed`` 1 once a finite ``collapse_step`` has passed (0 if none)."""
    if cfg.num_classes != 2 or cfg.hidden:
        raise ValueError(
            "predict covers the two-class linear toy "
            f"(num_classes={cfg.num_classes}, hidden={cfg.hidden})"
        )
    t_star = float(collapse_step(cfg))
    if t is None:
        return {"collapsed": jnp.asarray(1.0 if np.isfinite(t_star) else 0.0)}
    t = np.asarray(t, dtype=float)
    exact_map = cfg.grad == "plain" and cfg.loss == "softmax"
    tol = float(collapse_step_tolerance(cfg)) if exact_map else 1.0
    gap = np.where(t < t_star - tol, gap_trajectory(cfg, t), np.nan)
    collapsed = np.where(t < t_star - tol, 0.0, np.where(t > t_star + tol, 1.0, np.nan))
    return {"gap_mean": jnp.asarray(gap), "collapsed": jnp.asarray(collapsed)}
