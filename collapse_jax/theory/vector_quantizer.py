"""Dead codes in vanilla VQ and what SimVQ's linear layer changes.

Derivations in theory/vector_quantizer.md (ours unless a paper is named). Setting:
identity encoder, codebook loss ``mean_i ‖sg(x_i) − q_{a(x_i)}‖²`` with nearest-code
assignment ``a``; the commitment term has no gradient with respect to the codes.

- Gradient structure (exact, one step). ``G_k = (2/N) Σ_{i: a_i = k} (q_k − x_i)``:
  vanilla SGD moves code ``k`` by ``−η G_k``, so a code no sample selects stays
  bitwise frozen. SimVQ (``q_k = W c_k + b``; Zhu et al. 2024, arXiv 2411.02038) has
  ``∇_W = Gᵀ C``, ``∇_b = Gᵀ 1`` and moves *every* code: ``Δq = −η (C Cᵀ + 1 1ᵀ) G``.
- Live codes at init. ``K`` codes i.i.d. ``U[−a, 1 + a]``, data ``U[0, 1]``: with
  ``w = 1 + 2a``, ``E[live] = 1 + K/w − w^{−K}`` (Voronoi cells meeting the data).
- Ladder toy (data the grid of ``U[0, 1]``, full-batch SGD, codes ``o + kΔ`` right of
  the data): vanilla keeps one live code, ``q_0(t) = ½ + (o − ½)(1 − 2η)^t`` and the
  MSE tends to the data variance; SimVQ can reach the uniform quantiser, MSE
  ``1/(12K²)``; with a tiny basis (``s → 0``) it only translates the codebook and ends
  at the rigid-ladder MSE ``(K − 1)Δ³/12 + 2e³/3``, ``e = (1 − (K − 1)Δ)/2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from collapse_jax.models.vector_quantizer import Config

__all__ = [
    "code_gradient",
    "grid_kink_bound",
    "grid_mse_shift",
    "live_codes_at_init",
    "live_codes_deficit_bound",
    "predict",
    "rigid_translation_mse",
    "simvq_update",
    "uniform_quantizer_mse",
    "vanilla_ladder_trajectory",
]


def code_gradient(q: jax.Array, x: jax.Array) -> jax.Array:
    """``[K, d]`` gradient of the codebook loss wrt the codes ``q`` ``[K, d]`` on the
    batch ``x`` ``[N, d]``: ``G_k = (2/N) Σ_{i: a_i = k} (q_k − x_i)``; exactly zero
    for a code no sample selects (theory/vector_quantizer.md, "Which codes move")."""
    d2 = jnp.sum((x[:, None, :] - q[None, :, :]) ** 2, axis=-1)
    onehot = jax.nn.one_hot(jnp.argmin(d2, axis=1), q.shape[0], dtype=q.dtype)
    counts = jnp.sum(onehot, axis=0)
    return (2.0 / x.shape[0]) * (counts[:, None] * q - onehot.T @ x)


def simvq_update(C: jax.Array, G: jax.Array, lr) -> dict[str, jax.Array]:
    """One SGD step of SimVQ given the code gradient ``G`` ``[K, d]`` and the frozen
    basis ``C`` ``[K, d]`` (``q_k = W c_k + b``): ``W`` ``[d, d]``: ``−η Gᵀ C``;
    ``b`` ``[d]``: ``−η Gᵀ 1``; ``codes`` ``[K, d]``: ``−η (C Cᵀ + 1 1ᵀ) G``, the move
    of every code. Chain rule through Zhu et al. 2024 (arXiv 2411.02038), Sec. 3
    reparameterisation (with bias); derivation in theory/vector_quantizer.md."""
    kernel = C @ C.T + 1.0
    return {
        "W": -lr * G.T @ C,
        "b": -lr * jnp.sum(G, axis=0),
        "codes": -lr * kernel @ G,
    }


def _width(cfg: Config):
    return 1.0 + 2.0 * jnp.asarray(cfg.init_margin)


def live_codes_at_init(cfg: Config) -> jax.Array:
    """``1 + K/w − w^{−K}``, ``w = 1 + 2a``: expected number of codes, i.i.d.
    ``U[−a, 1 + a]``, whose Voronoi cell meets the data ``U[0, 1]`` (our derivation,
    theory/vector_quantizer.md, from the density of consecutive-code midpoints)."""
    K, w = cfg.num_codes, _width(cfg)
    return 1.0 + K / w - w ** (-K)


def live_codes_deficit_bound(cfg: Config) -> jax.Array:
    """Upper bound on ``E[live over the population] − E[live on N = eval_samples
    i.i.d. samples]`` ``≥ 0``: ``2K/(w(N+1)) + 4K³/(w³(N+1)(N+2)) +
    4K⁴/(w⁴(N+1)(N+2)(N+3))`` (cells too thin to catch a sample; our bound)."""
    K, w, N = cfg.num_codes, _width(cfg), cfg.eval_samples
    return (
        2 * K / (w * (N + 1))
        + 4 * K**3 / (w**3 * (N + 1) * (N + 2))
        + 4 * K**4 / (w**4 * (N + 1) * (N + 2) * (N + 3))
    )


def uniform_quantizer_mse(num_codes) -> jax.Array:
    """``1/(12K²)``: MSE of the optimal ``K``-level quantiser of ``U[0, 1]`` (cells of
    width ``1/K``, codes at their centres; Lloyd 1982 / Max 1960)."""
    return 1.0 / (12.0 * jnp.asarray(num_codes, dtype=float) ** 2)


def rigid_translation_mse(cfg: Config) -> jax.Array:
    """MSE of the ladder ``o + kΔ`` translated to the data centre, the limit of
    translation-only training: ``(K − 1)Δ³/12 + 2e³/3``, ``e = (1 − (K − 1)Δ)/2``;
    NaN unless the ladder is narrower than the data (our derivation)."""
    K, D = cfg.num_codes, jnp.asarray(cfg.init_spacing)
    e = (1.0 - (K - 1) * D) / 2.0
    return jnp.where(e > 0, (K - 1) * D**3 / 12.0 + 2.0 * e**3 / 3.0, jnp.nan)


def grid_mse_shift(n) -> jax.Array:
    """``−1/(12 n²)``: the midpoint grid ``(i + ½)/n`` under-estimates the population
    MSE of any quantiser by this (midpoint rule on ``(x − q)²``), up to
    ``grid_kink_bound``."""
    return -1.0 / (12.0 * jnp.asarray(n, dtype=float) ** 2)


def grid_kink_bound(live, spacing, n) -> jax.Array:
    """``(live − 1)·Δ/(4 n²)``: bound on the rest of the grid error, from the grid
    cells that contain a Voronoi boundary between codes ``Δ`` apart (slope jump
    ``2Δ``); zero when every boundary falls on a grid-cell edge."""
    return (live - 1) * jnp.asarray(spacing) / (4.0 * jnp.asarray(n, dtype=float) ** 2)


def vanilla_ladder_trajectory(cfg: Config, t) -> dict[str, jax.Array]:
    """Vanilla VQ, ladder init right of the data, full-batch SGD on the grid: only
    code 0 is ever selected, ``q_0(t) = ½ + (o − ½)(1 − 2η)^t``. Returns ``mse``,
    ``live_codes``, ``utilisation`` ``[T]`` and ``displacement`` ``[T, K]`` on the
    evaluation grid (NaN where the premises fail: ``o ≤ 1``, ``o + Δ ≤ 3/2`` or
    ``η > ½``). Our derivation (theory/vector_quantizer.md)."""
    t = jnp.asarray(t, dtype=float)
    o, D, lr = (jnp.asarray(v) for v in (cfg.init_offset, cfg.init_spacing, cfg.lr))
    K, n = cfg.num_codes, cfg.eval_samples
    ok = (o > 1.0) & (o + D > 1.5) & (lr <= 0.5)
    gap = (o - 0.5) * (1.0 - 2.0 * lr) ** t  # q_0(t) − mean of the data
    variance = (1.0 - 1.0 / n**2) / 12.0  # of the evaluation grid
    nan = jnp.where(ok, 1.0, jnp.nan)
    disp = jnp.zeros(t.shape + (K,)).at[..., 0].set(o - 0.5 - gap)
    return {
        "mse": nan * (variance + gap**2),
        "live_codes": nan * jnp.ones_like(t),
        "utilisation": nan * jnp.ones_like(t) / K,
        "displacement": nan * disp,
    }


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Predictions at step indices ``t`` (``[T]``; NaN = no prediction there).

    1-D uniform data only. ``codebook_init="uniform"`` with an i.i.d. evaluation set:
    ``live_codes``/``utilisation`` at ``t = 0``. Ladder init on the grid with
    full-batch SGD: vanilla, the whole ``vanilla_ladder_trajectory``; SimVQ, the
    uniform quantiser at the last record (``mse``, ``live_codes = K``), the limit of
    a run that reaches it; theory/vector_quantizer.md says where it does not.

    ``t=None``: the limits, without the time axis: the ladder runs' (vanilla at
    ``t → ∞``, SimVQ's uniform quantiser); the initial live codes are no limit.
    """
    limit = t is None
    t = jnp.asarray([jnp.inf] if limit else t)
    T, K = t.shape[0], cfg.num_codes
    nan = jnp.full((T,), jnp.nan)
    out = {}
    if cfg.data != "uniform" or cfg.dim != 1:
        return out
    if cfg.codebook_init == "uniform" and cfg.sampling != "grid" and not limit:
        live = jnp.where(t == 0, live_codes_at_init(cfg), jnp.nan)
        out.update(live_codes=live, utilisation=live / K)
    if (
        cfg.codebook_init == "ladder"
        and cfg.sampling == "grid"
        and cfg.optimizer == "sgd"
    ):
        if cfg.quantizer == "vanilla":
            out.update(vanilla_ladder_trajectory(cfg, t))
        else:
            best = uniform_quantizer_mse(K) + grid_mse_shift(cfg.eval_samples)
            out["mse"] = nan.at[-1].set(best)
            out["live_codes"] = nan.at[-1].set(K)
            out["utilisation"] = nan.at[-1].set(1.0)
    return {k: v[-1] for k, v in out.items()} if limit else out
