"""Recursive linear regression: each generation refits on labels of the previous one.

Setup (Dohmatob, Feng, Kempe 2024, arXiv 2402.07712, Sec. 3; Gerstgrasser et al. 2024,
arXiv 2404.01413, Sec. 3): inputs ``x ~ N(0, Σ)`` with ``Σ = diag(s_1..s_d)``
(isotropic ``s_k = 1`` or power law ``s_k = k^-decay``), true weights ``w*`` (drawn
uniformly on the sphere of radius ``signal`` at ``init``), generator ``ŵ_0 = w*``.

One ``step`` is one generation ``n -> n+1``: draw ``T0`` inputs (fresh each generation,
or one design fixed at ``init``), label them ``y = X ŵ_n + σ0 ε`` and refit

- ``replace``:    ŵ_{n+1} = argmin_v 1/T0 ‖X v − y‖² + λ0 ‖v‖²  (only the newest data);
- ``accumulate``: the same on every block generated so far, the first block being the
  real data labelled by ``ŵ_0 = w*`` (nothing is discarded);
- ``mix``:        each input also gets a fresh real label ``y_r = X w* + σ0 ε_r`` and
  ``ŵ_{n+1} = argmin_v  ω/T0 ‖X v − y_r‖² + (1−ω)/T0 ‖X v − y‖² + λ0 ‖v‖²`` with the
  real-data weight ``ω = real_weight`` (equal numbers of real and synthetic labels).

``observe`` reports the excess risks (label noise excluded)

- ``test_error``       ‖ŵ_n − w*‖²_Σ of the current generator;
- ``downstream_error`` ‖ŵ_pred − w*‖²_Σ of a downstream model fitted by ridge ``λ``
  (``ridge``; 0 is OLS) on ``T`` fresh samples labelled ``x ᵀŵ_n + σ ε``.

Least squares sees the data only through ``(XᵀX, Xᵀy)``, so the simulation draws these
sufficient statistics from their exact joint law instead of the ``T0 × d`` matrix:
``XᵀX = Σ^½ L Lᵀ Σ^½`` with ``L`` the Bartlett factor of a ``Wishart(T0, I)`` matrix
(``L_kk² ~ χ²(T0 − k)``, k = 0..d−1, ``L_kj ~ N(0, 1)`` below the diagonal) and
``Xᵀε = Σ^½ L z`` with ``z ~ N(0, I_d)`` (given X, ``Xᵀε ~ N(0, XᵀX)``). This is exact
in distribution, costs O(d²) per fit whatever ``T0``, and lets ``T0`` and ``T`` be
swept as pytree leaves. It needs ``T0 ≥ d`` and ``T ≥ d``.

Over-parametrised generators (``interpolate=True``, ``T0 ≤ d``; Dohmatob, Feng, Kempe
2024, the ``T0 < d`` regime) draw the design itself: ``d`` Gaussian rows of which the
first ``T0`` are kept and the rest zeroed, so ``T0`` stays a sweepable leaf. The fit
is the kernel form of ridge, ``ŵ = Xᵀ(XXᵀ + T0 λ0 I)⁻¹ y`` on the kept rows (the
zeroed rows get a unit diagonal and zero labels, which leaves the solution
unchanged); at ``λ0 = 0`` it is the minimum-norm interpolator ``X⁺y``, the ``λ0 → 0⁺``
limit of ridge. The downstream fit keeps the Wishart sampler (``T ≥ d``).

The true weights may follow a power-law source, ``target_decay = a``:
``w*_k = r u_k k^{-a/2} sqrt(d / Σ_j j^{-a})`` with ``u`` uniform on the unit sphere,
so ``E w* w*ᵀ = r² diag(k^{-a}) / Σ_j j^{-a}`` (``a = 0``: ``w*`` uniform on the sphere
of radius ``r``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from collapse_jax import random as cr
from collapse_jax.config import (
    _abstract,
    check_choice,
    check_dtype,
    check_int,
    check_range,
)

__all__ = ["Config", "State", "init", "observe", "step"]

_DOWNSTREAM_STREAM = 0x5EED  # fold_in tag: the downstream fit's randomness


def _check_count(name: str, value, low: int, high: float = np.inf, why: str = ""):
    """An integer-valued sample count in ``[low, high]`` (a leaf: array or tracer)."""
    check_range(name, value)  # a finite real number first: no text, None or lists
    if _abstract(value):  # a tracer or placeholder (jit, eval_shape, AOT lowering)
        return
    arr = np.asarray(value, dtype=float)
    if (
        not np.all(np.isfinite(arr))
        or np.any(arr != np.round(arr))
        or np.any(arr < low)
        or np.any(arr > high)
    ):
        upper = "inf)" if high == np.inf else f"{int(high)}]"
        raise ValueError(
            f"{name}={value!r} is out of range: allowed integers in [{low}, {upper} "
            f"({why})"
        )


@struct.dataclass
class Config:
    """Hyperparameters. Sizes and code paths are static; the rest can be swept.

    Attributes:
      dim: input dimension ``d``.
      policy: ``replace``, ``accumulate`` or ``mix`` (see the module docstring).
      fixed_design: reuse one ``T0 × d`` design for every generation.
      interpolate: over-parametrised generators, ``T0 <= dim`` samples drawn as rows
        and fitted in kernel form (minimum-norm interpolation at ``λ0 = 0``); not
        with ``accumulate``.
      spectrum: ``isotropic`` (Σ = I) or ``power_law`` (s_k = k^-decay).
      dtype: ``float32`` or ``float64`` (needs ``jax_enable_x64``).
      samples: ``T``, downstream training-set size (integer-valued, ``>= dim``).
      generator_samples: ``T0``, samples per generation (integer-valued, ``>= dim``;
        ``1..dim`` with ``interpolate``).
      noise: ``σ``, label noise of the downstream data.
      generator_noise: ``σ0``, label noise of every generation's data.
      ridge: ``λ`` of the downstream fit, ``1/T ‖Xv − y‖² + λ‖v‖²``; 0 is OLS.
      generator_ridge: ``λ0`` of the generators' fits; 0 (default) is OLS.
      real_weight: ``ω`` in [0, 1], weight of the real labels under ``mix``.
      signal: ``‖w*‖``.
      decay: power-law exponent of the spectrum (used by ``power_law``).
      target_decay: ``a >= 0``, power-law source ``E w*_k² ∝ k^-a`` (0: isotropic).
    """

    dim: int = struct.field(pytree_node=False, default=10)
    policy: str = struct.field(pytree_node=False, default="replace")
    fixed_design: bool = struct.field(pytree_node=False, default=False)
    interpolate: bool = struct.field(pytree_node=False, default=False)
    spectrum: str = struct.field(pytree_node=False, default="isotropic")
    dtype: str = struct.field(pytree_node=False, default="float32")
    samples: float = 100.0
    generator_samples: float = 100.0
    noise: float = 1.0
    generator_noise: float = 1.0
    ridge: float = 0.0
    generator_ridge: float = 0.0
    real_weight: float = 0.5
    signal: float = 1.0
    decay: float = 1.0
    target_decay: float = 0.0

    def __post_init__(self):
        for name in ("samples", "generator_samples"):  # counts are float leaves
            value = getattr(self, name)
            if isinstance(value, int | np.integer) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        check_int("dim", self.dim, 1)
        check_choice("policy", self.policy, ("replace", "accumulate", "mix"))
        check_choice("fixed_design", self.fixed_design, (True, False))
        check_choice("interpolate", self.interpolate, (True, False))
        if self.interpolate and self.policy == "accumulate":
            raise ValueError(
                "interpolate=True with policy='accumulate': allowed policies with "
                "interpolate are 'replace' and 'mix' (accumulated blocks outgrow dim)"
            )
        check_choice("spectrum", self.spectrum, ("isotropic", "power_law"))
        check_dtype("dtype", self.dtype)
        need = f"the fit needs at least dim={self.dim} samples"
        _check_count("samples", self.samples, self.dim, why=need)
        if self.interpolate:
            _check_count(
                "generator_samples",
                self.generator_samples,
                1,
                self.dim,
                f"interpolate=True fits at most dim={self.dim} samples",
            )
        else:
            _check_count(
                "generator_samples", self.generator_samples, self.dim, why=need
            )
        check_range("noise", self.noise, 0.0)
        check_range("generator_noise", self.generator_noise, 0.0)
        check_range("ridge", self.ridge, 0.0)
        check_range("generator_ridge", self.generator_ridge, 0.0)
        check_range("real_weight", self.real_weight, 0.0, 1.0)
        check_range("signal", self.signal, 0.0)
        check_range("decay", self.decay, 0.0)
        check_range("target_decay", self.target_decay, 0.0)


class State(NamedTuple):
    key: jax.Array  # [2] uint32, split every generation
    w_true: jax.Array  # [d] w*
    w_gen: jax.Array  # [d] ŵ_n, the current generator
    gram: jax.Array  # [d, d] accumulated XᵀX (accumulate) — zeros otherwise
    moment: jax.Array  # [d] accumulated Xᵀy (accumulate) — zeros otherwise
    count: jax.Array  # () number of accumulated samples
    design: jax.Array  # [d, d] fixed design: factor Σ^½ L (XᵀX = F Fᵀ), or the padded
    # rows X with interpolate; unused if fresh
    generation: jax.Array  # () int32 n


def _scales(cfg: Config, dtype) -> jax.Array:
    """``[d]`` standard deviations ``sqrt(s_k)`` of the input coordinates."""
    if cfg.spectrum == "isotropic":
        return jnp.ones((cfg.dim,), dtype)
    k = jnp.arange(1, cfg.dim + 1, dtype=dtype)
    return k ** (-jnp.asarray(cfg.decay, dtype) / 2)


def _signed_uniform(key: jax.Array, shape, dtype) -> jax.Array:
    """Uniform on the open interval (−1, 1): one random-bits call for many uses."""
    low = jnp.nextafter(jnp.asarray(-1.0, dtype), jnp.asarray(0.0, dtype))
    return cr.uniform(key, shape, dtype, minval=low, maxval=1.0)


def _normal(v: jax.Array) -> jax.Array:
    """Standard normals from (−1, 1) uniforms (the inverse-CDF map ``jax.random``
    itself uses)."""
    return jnp.sqrt(jnp.asarray(2.0, v.dtype)) * jax.scipy.special.erfinv(v)


_GAMMA_MAX_ROUNDS = 64  # proposal rounds before a Gamma draw gives up (NaN)


def _gamma(key: jax.Array, alpha: jax.Array, boost: jax.Array) -> jax.Array:
    """``[m]`` ``Gamma(alpha)`` draws (``alpha >= 0.5``) from ``key``.

    Marsaglia & Tsang (2000) rejection sampler on ``a = alpha + 1 >= 1.5`` with the
    boost ``Gamma(α) = Gamma(α + 1) · U^(1/α)``, ``boost`` the ``[m]`` uniforms
    ``U`` in (0, 1). Proposals come in rounds, round ``r`` from ``fold_in(key, r)``,
    until every draw has accepted one; each draw keeps its first accepted proposal,
    so it depends on its own key only, never on the draws beside it under ``vmap``.
    For ``a >= 1`` a proposal is accepted with probability > 0.95: a batch of
    thousands of draws needs a few rounds, and a draw still unaccepted after
    ``_GAMMA_MAX_ROUNDS`` (probability < 0.05^64) returns NaN, which the engine
    reports as a divergence, never a wrong value.
    """
    (m,) = alpha.shape
    dtype = alpha.dtype
    a = alpha + 1.0
    dd = a - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * dd)

    def propose(carry):
        r, g, done = carry
        v = _signed_uniform(jax.random.fold_in(key, r), (2, m), dtype)
        x = _normal(v[0])
        u = (v[1] + 1.0) / 2.0
        cube = (1.0 + c * x) ** 3
        safe = jnp.where(cube > 0, cube, 1.0)
        log_ratio = 0.5 * x**2 + dd * (1.0 - cube + jnp.log(safe))
        ok = (cube > 0) & (jnp.log(u) < log_ratio)
        return r + 1, jnp.where(ok & ~done, dd * cube, g), done | ok

    def pending(carry):
        r, _, done = carry
        return (r < _GAMMA_MAX_ROUNDS) & ~jnp.all(done)

    start = (
        jnp.zeros((), jnp.int32),
        jnp.full((m,), jnp.nan, dtype),
        jnp.zeros((m,), bool),
    )
    _, g, _ = lax.while_loop(pending, propose, start)
    return g * boost ** (1.0 / alpha)


def _tril_index(d: int) -> np.ndarray:
    """``[d, d]`` positions of a flat vector's entries below the diagonal, row by
    row; every other entry points at position ``d(d-1)/2`` (a zero appended)."""
    index = np.full((d, d), d * (d - 1) // 2)
    rows, cols = np.tril_indices(d, -1)
    index[rows, cols] = np.arange(rows.size)
    return index


def _draw(key: jax.Array, n: jax.Array, cfg: Config, dtype):
    """``(F, z)``: design factor ``F = Σ^½ L`` and noise ``z ~ N(0, I_d)``.

    ``F Fᵀ ~ Wishart(n, Σ)``, the law of XᵀX for n Gaussian rows (Bartlett
    decomposition: ``L`` lower triangular, ``L_kk² ~ χ²(n − k)`` for k = 0..d−1,
    ``L_kj ~ N(0, 1)`` for ``k > j``), and ``F z`` has the law of ``Xᵀε`` given X.
    """
    d = cfg.dim
    below = d * (d - 1) // 2
    k_normal, k_gamma = jax.random.split(key)
    v = _signed_uniform(k_normal, (below + 2 * d,), dtype)
    g = _normal(v[: below + d])  # the entries below L's diagonal, then z
    boost = (v[below + d :] + 1.0) / 2.0
    dof = jnp.asarray(n, dtype) - jnp.arange(d, dtype=dtype)
    diag = jnp.sqrt(2.0 * _gamma(k_gamma, dof / 2.0, boost))
    padded = jnp.concatenate([g[:below], jnp.zeros((1,), dtype)])
    L = padded[_tril_index(d)] + jnp.diag(diag)
    return _scales(cfg, dtype)[:, None] * L, g[below:]


def _ridge_solve(gram: jax.Array, moment: jax.Array, penalty: jax.Array) -> jax.Array:
    """``(gram + penalty I)⁻¹ moment`` for a positive definite ``gram`` (``[d, d]``).

    Gauss–Jordan elimination of ``[A | moment]`` in one ``fori_loop`` of vector
    operations. A positive definite ``A`` needs no pivoting: every pivot is a ratio
    of leading principal minors, so positive. One loop traces, lowers and runs in
    less time than a Cholesky factorisation and two triangular solves. Not the
    LAPACK calls: under ``vmap`` inside the engine's scans on CPU, runs using them
    occasionally stalled (every XLA worker idle while the result was awaited).
    """
    d = gram.shape[0]
    A = gram + penalty * jnp.eye(d, dtype=gram.dtype)
    M = jnp.concatenate([A, moment[:, None]], axis=1)  # [d, d + 1]
    is_pivot_row = jnp.arange(d)[:, None]

    def eliminate(j, M):
        pivot_row = M[j] / M[j, j]
        M = M - M[:, j, None] * pivot_row[None, :]
        return jnp.where(is_pivot_row == j, pivot_row[None, :], M)

    return lax.fori_loop(0, d, eliminate, M)[:, d]


def _moments(F, z, w_label, sigma):
    """``(XᵀX, Xᵀy)`` for the design factor F and labels ``y = X w_label + σ ε``:
    ``XᵀX = F Fᵀ``, ``Xᵀy = XᵀX w_label + σ F z``."""
    gram = F @ F.T
    return gram, gram @ w_label + sigma * (F @ z)


def _fit(F, z, w_label, n, sigma, lam):
    """``[d]`` ridge fit on n samples with design factor F, labels ``X w_label + σ ε``."""
    gram, moment = _moments(F, z, w_label, sigma)
    return _ridge_solve(gram, moment, n * lam)


def _kept_rows(cfg: Config, dtype) -> jax.Array:
    """``[d]`` bool: the first ``T0`` of the ``d`` drawn rows are samples."""
    return jnp.arange(cfg.dim, dtype=dtype) < jnp.asarray(cfg.generator_samples, dtype)


def _draw_rows(key: jax.Array, cfg: Config, dtype):
    """``(X, ε)``: ``[d, d]`` design of T0 rows ``N(0, Σ)`` then zero rows, ``[d]`` noise."""
    d = cfg.dim
    g = _normal(_signed_uniform(key, (d + 1, d), dtype))
    keep = _kept_rows(cfg, dtype)
    X = jnp.where(keep[:, None], g[:d] * _scales(cfg, dtype)[None, :], 0.0)
    return X, jnp.where(keep, g[d], 0.0)


def _fit_rows(X, eps, w_label, cfg: Config, sigma, lam):
    """``Xᵀ(XXᵀ + T0 λ I)⁻¹ y`` for ``y = X w_label + σ ε`` on the kept rows of ``X``.

    Padded rows are zero with zero labels; a unit diagonal there keeps the kernel
    matrix invertible without changing the solution (it decouples those rows).
    """
    dtype = X.dtype
    T0 = jnp.asarray(cfg.generator_samples, dtype)
    y = X @ w_label + sigma * eps
    pad = jnp.where(_kept_rows(cfg, dtype), T0 * lam, 1.0)
    K = X @ X.T + jnp.diag(pad)
    return X.T @ _ridge_solve(K, y, jnp.zeros((), dtype))


def _true_weights(key: jax.Array, cfg: Config, dtype) -> jax.Array:
    """``[d]`` w* (see the module docstring): E w*w*ᵀ = r² diag(k^-a) / Σ_j j^-a."""
    d = cfg.dim
    u = _normal(_signed_uniform(key, (d,), dtype))
    a = jnp.asarray(cfg.target_decay, dtype)
    tail = jnp.arange(1, d + 1, dtype=dtype) ** (-a)
    shape = jnp.sqrt(tail * (d / jnp.sum(tail)))  # all ones at a = 0
    return jnp.asarray(cfg.signal, dtype) * shape * u / jnp.linalg.norm(u)


def init(key: jax.Array, cfg: Config) -> State:
    """``w*`` (uniform on the sphere of radius ``signal`` at ``target_decay=0``);
    ``ŵ_0 = w*``."""
    dtype = jnp.dtype(cfg.dtype)
    d = cfg.dim
    k_w, k_design, k_run = jax.random.split(key, 3)
    w_true = _true_weights(k_w, cfg, dtype)
    if cfg.fixed_design and cfg.interpolate:
        design, _ = _draw_rows(k_design, cfg, dtype)
    elif cfg.fixed_design:
        design, _ = _draw(k_design, cfg.generator_samples, cfg, dtype)
    else:
        design = jnp.zeros((d, d), dtype)
    return State(
        key=k_run,
        w_true=w_true,
        w_gen=w_true,
        gram=jnp.zeros((d, d), dtype),
        moment=jnp.zeros((d,), dtype),
        count=jnp.zeros((), dtype),
        design=design,
        generation=jnp.zeros((), jnp.int32),
    )


def step(state: State, cfg: Config) -> State:
    """One generation: label T0 inputs with ``ŵ_n`` (+ noise σ0), refit ``ŵ_{n+1}``."""
    dtype = state.w_gen.dtype
    key, sub = jax.random.split(state.key)
    T0 = jnp.asarray(cfg.generator_samples, dtype)
    sigma0 = jnp.asarray(cfg.generator_noise, dtype)
    lam0 = jnp.asarray(cfg.generator_ridge, dtype)
    if cfg.interpolate:
        X, eps = _draw_rows(sub, cfg, dtype)
        if cfg.fixed_design:
            X = state.design

        def refit(w_label, sigma):
            return _fit_rows(X, eps, w_label, cfg, sigma, lam0)

    else:
        if cfg.fixed_design:
            F, z = state.design, _normal(_signed_uniform(sub, (cfg.dim,), dtype))
        else:
            F, z = _draw(sub, T0, cfg, dtype)

        def refit(w_label, sigma):
            return _fit(F, z, w_label, T0, sigma, lam0)

    gram, moment, count = state.gram, state.moment, state.count
    if cfg.policy == "replace":
        w_new = refit(state.w_gen, sigma0)
    elif cfg.policy == "mix":
        # ω y_r + (1−ω) y = X (ω w* + (1−ω) ŵ_n) + σ0 (ω ε_r + (1−ω) ε): the two
        # noises are independent, so the combined noise has std σ0 sqrt(ω² + (1−ω)²).
        omega = jnp.asarray(cfg.real_weight, dtype)
        target = omega * state.w_true + (1 - omega) * state.w_gen
        w_new = refit(target, sigma0 * jnp.sqrt(omega**2 + (1 - omega) ** 2))
    else:  # accumulate: running sufficient statistics of every block so far
        g, m = _moments(F, z, state.w_gen, sigma0)
        gram, moment, count = gram + g, moment + m, count + T0
        w_new = _ridge_solve(gram, moment, count * lam0)
    return State(
        key=key,
        w_true=state.w_true,
        w_gen=w_new,
        gram=gram,
        moment=moment,
        count=count,
        design=state.design,
        generation=state.generation + 1,
    )


def _excess_risk(w: jax.Array, w_true: jax.Array, cfg: Config) -> jax.Array:
    """‖w − w*‖²_Σ."""
    s = _scales(cfg, w.dtype) ** 2
    return jnp.sum(s * (w - w_true) ** 2)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Scalars ``test_error`` (generator) and ``downstream_error`` (a fresh ridge fit).

    The downstream fit draws from ``fold_in(state.key, tag)``, a stream separate from
    the keys that ``step`` splits off, so recording never changes the dynamics.
    """
    dtype = state.w_gen.dtype
    T = jnp.asarray(cfg.samples, dtype)
    F, z = _draw(jax.random.fold_in(state.key, _DOWNSTREAM_STREAM), T, cfg, dtype)
    w_pred = _fit(
        F,
        z,
        state.w_gen,
        T,
        jnp.asarray(cfg.noise, dtype),
        jnp.asarray(cfg.ridge, dtype),
    )
    return {
        "test_error": _excess_risk(state.w_gen, state.w_true, cfg),
        "downstream_error": _excess_risk(w_pred, state.w_true, cfg),
    }
