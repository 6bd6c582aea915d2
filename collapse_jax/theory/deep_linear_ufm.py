"""Global minimiser of the deep linear UFM under MSE (Dang et al. 2023, arXiv 2301.00437).

With m = L + 1 factors (H and W_1..W_L) and weight decays λ_H, λ_1..λ_L, the minimum of
Σ_i λ_i/2 ‖A_i‖² over factorisations A_m ⋯ A_1 = Z is (m/2) μ Σ_j σ_j(Z)^{2/m} with
μ = (Π_i λ_i)^{1/m}, attained by balanced factors whose singular values are
sqrt(μ/λ_i) σ_j(Z)^{1/m} (a Schatten-2/m quasi-norm; the deep counterpart of the
nuclear-norm identity of the one-layer UFM). The problem in Z then splits by von Neumann's
trace inequality into one scalar problem per singular value s_j of the (centred, with a
bias) label matrix:

  x_j = argmin_{x ≥ 0} (x − s_j)²/2 + (m/2) N μ x^{2/m},

whose non-zero stationary points solve s = x + c x^{2/m − 1}, c = N μ. Everything the
theory predicts — singular values of the product, class-mean Gram matrices at every layer,
classifier norms and Gram, the class-size threshold below which a class collapses to zero
— follows from x_j and the SVD of the label matrix. Derivation: theory/deep_linear_ufm.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from collapse_jax.models.deep_linear_ufm import Config

__all__ = [
    "collapse_threshold",
    "existence_threshold",
    "label_spectrum",
    "layer_weight_decays",
    "optimal_singular_value",
    "predict",
]

_BISECTION_STEPS = 200


def layer_weight_decays(cfg: Config) -> jax.Array:
    """``[m]`` weight decays of the factors in product order: λ_H, λ_1, ..., λ_L."""
    dtype = jnp.dtype(cfg.dtype)
    lam_w = jnp.asarray(cfg.lambda_w, dtype) * jnp.asarray(cfg.layer_scales, dtype)
    return jnp.concatenate([jnp.asarray(cfg.lambda_h, dtype)[None], lam_w])


def _mu(lams: jax.Array) -> jax.Array:
    return jnp.exp(jnp.mean(jnp.log(lams)))


def existence_threshold(c, m: int):
    """Smallest s with a positive stationary point of the scalar problem:
    min_x x + c x^{2/m−1} = s_e at x_e = (c(m−2)/m)^{m/(2m−2)} (m ≥ 3; c for m = 2).
    Scalar reduction of the deep linear UFM, Dang et al. 2023 (arXiv 2301.00437),
    MSE analysis; derived in theory/deep_linear_ufm.md."""
    if m == 2:
        return c
    x = (c * (m - 2) / m) ** (m / (2 * m - 2))
    return x + c * x ** (2.0 / m - 1.0)


def collapse_threshold(c, m: int):
    """Singular value below which the optimal x is 0 (the class/mode collapses):
    s_c = x_c + c x_c^{2/m−1}, x_c = (c(m−2))^{m/(2m−2)}; s_c = c for m = 2 (soft
    threshold). Dang et al. 2023 (arXiv 2301.00437), minority collapse in the
    imbalanced bias-free MSE case; closed form derived in theory/deep_linear_ufm.md."""
    if m == 2:
        return c
    x = (c * (m - 2)) ** (m / (2 * m - 2))
    return x + c * x ** (2.0 / m - 1.0)


def optimal_singular_value(s, c, m: int):
    """argmin_{x≥0} (x − s)²/2 + (m/2) c x^{2/m} (elementwise in s).

    m = 2: max(s − c, 0). m ≥ 3: the largest root of s = x + c x^{2/m−1} (bisection on
    [x_e, s], where that map increases) when s ≥ ``collapse_threshold``, else 0. Dang
    et al. 2023 (arXiv 2301.00437), singular values of the MSE global minimiser.
    """
    s = jnp.asarray(s)
    if m == 2:
        return jnp.maximum(s - c, 0.0)
    p = 2.0 / m - 1.0
    xe = (c * (m - 2) / m) ** (m / (2 * m - 2)) * jnp.ones_like(s)
    lo, hi = xe, jnp.maximum(s, xe)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = mid + c * mid**p - s > 0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = lax.fori_loop(0, _BISECTION_STEPS, body, (lo, hi))
    x = 0.5 * (lo + hi)
    return jnp.where(s >= collapse_threshold(c, m), x, 0.0)


def label_spectrum(cfg: Config) -> tuple[jax.Array, jax.Array, jax.Array]:
    """SVD data of the label matrix Ŷ (Y, or Y(I − 11ᵀ/N) with a bias).

    Returns ``s`` ``[K]`` (descending), ``U`` ``[K, K]`` (left singular vectors) and
    ``B = S⁺ Uᵀ Ŷ C`` ``[K, K]`` (right singular vectors averaged per class; C averages
    the samples of each class), from ŶŶᵀ = diag(n) − [bias] n nᵀ/N and
    Ŷ C = I − [bias] n 1ᵀ/N.
    """
    dtype = jnp.dtype(cfg.dtype)
    n = jnp.asarray(cfg.counts, dtype)
    K, N = cfg.num_classes, cfg.num_samples
    G = jnp.diag(n)
    YC = jnp.eye(K, dtype=dtype)
    if cfg.bias:
        G = G - n[:, None] * n[None, :] / N
        YC = YC - n[:, None] * jnp.ones((1, K), dtype) / N
    evals, U = jnp.linalg.eigh(G)
    evals, U = evals[::-1], U[:, ::-1]
    s = jnp.sqrt(jnp.maximum(evals, 0.0))
    tiny = jnp.finfo(dtype).eps * jnp.max(s) * K
    inv = jnp.where(s > tiny, 1.0 / jnp.where(s > tiny, s, 1.0), 0.0)
    B = inv[:, None] * (U.T @ YC)
    return s, U, B


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Limits at the global minimiser (MSE only): ``sv`` ``[K]``, ``mean_gram``
    ``[L, K, K]``, ``mean_norm`` ``[L, K]``, ``w_gram`` ``[K, K]``, ``w_norm`` ``[K]``,
    ``nc1`` ``[L]`` (zero: features collapse to their class means at every layer) and
    ``loss`` (scalar): the global minimum value
    (1/N) Σ_j [(x_j − s_j)²/2 + (m/2) c x_j^{2/m}].

    ``t`` is unused (all predictions are limits). Raises ``ValueError`` for the
    cross-entropy loss, which has no closed-form minimiser here.
    """
    del t
    if cfg.loss != "mse":
        raise ValueError(
            f"loss={cfg.loss!r}: the closed-form minimiser is for loss='mse' only"
        )
    L, K = cfg.depth, cfg.num_classes
    m = L + 1
    lams = layer_weight_decays(cfg)
    mu = _mu(lams)
    c = cfg.num_samples * mu
    s, U, B = label_spectrum(cfg)
    x = optimal_singular_value(s, c, m)
    # the product has rank ≤ dim: only the largest `dim` modes can be non-zero
    x = jnp.where(jnp.arange(K) < cfg.dim, x, 0.0)
    grams = []
    for l in range(L):  # H_l = A_{l+1} ⋯ A_1
        scale = jnp.prod(mu / lams[: l + 1])
        g2 = scale * x ** (2.0 * (l + 1) / m)
        grams.append(B.T @ (g2[:, None] * B))
    mean_gram = jnp.stack(grams)
    w2 = mu / lams[-1] * x ** (2.0 / m)
    w_gram = U @ (w2[:, None] * U.T)
    return {
        "sv": x,
        "mean_gram": mean_gram,
        "mean_norm": jnp.sqrt(jnp.diagonal(mean_gram, axis1=1, axis2=2)),
        "w_gram": w_gram,
        "w_norm": jnp.sqrt(jnp.diagonal(w_gram)),
        "nc1": jnp.zeros((L,), x.dtype),
        "loss": jnp.sum((x - s) ** 2 / 2 + m / 2 * c * x ** (2.0 / m))
        / cfg.num_samples,
    }
