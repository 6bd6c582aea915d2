"""Attention entropy bound, cubic rank collapse and length-induced smoothing.

Derivations in theory/attention.md. Three results:

- Zhai et al. 2023 (arXiv 2303.06296), Thm 3.1: with ``σ = ‖W_Q W_Kᵀ‖₂`` and
  ``σ_x = ‖X Xᵀ‖₂`` every attention row has entropy at least
  ``log(1 + (T−1)β) + r √(T(T−1)) β / (1 + (T−1)β)``, ``r = σ σ_x``,
  ``β = exp(−r √(T/(T−1)))``; attained by the logit vector with one entry raised
  by ``r √(T/(T−1))`` above the other ``T − 1`` (``one_high_entropy``).
- Dong, Cordonnier, Loukas 2021 (arXiv 2103.03404): a pure attention layer maps the
  token residual ``R = X − 1 x̄ᵀ`` to ``(1/T) R W Rᵀ R W_V`` to leading order (a
  cubic), so residuals fall doubly exponentially with depth; our derivation gives
  the constants and the next-order term, and an exact recursion for the isotropic
  stack (``W_Q W_Kᵀ = s I``, ``W_V = v I``, tokens with ``X Xᵀ = M J + c² I``).
- Zhou et al. 2024 (arXiv 2410.24200): with i.i.d. ``N(0, s²)`` logits over ``n``
  tokens an attention layer passes the fraction ``E‖p‖² − 1/n`` of a white non-mean
  signal's energy (exact quadrature here), ``≈ (e^{s²} − 1)/n`` to leading order.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from collapse_jax.models.attention import Config

__all__ = [
    "cubic_residual",
    "energy_ratio_exact",
    "energy_ratio_leading",
    "entropy_lower_bound",
    "isotropic_stack",
    "leading_residual_norm",
    "next_order_residual",
    "one_high_entropy",
    "predict",
]


# ----------------------------------------------------------------- entropy bound


def one_high_entropy(gap, T):
    """Entropy of ``softmax(z)`` for ``z`` with one entry ``gap`` above ``T − 1``
    equal others: ``log(1 + (T−1)e^{−gap}) + gap (T−1)e^{−gap} / (1 + (T−1)e^{−gap})``.

    The minimum entropy over logit vectors with centred norm ``gap √((T−1)/T)``
    (Zhai et al. 2023, arXiv 2303.06296, proof of Thm 3.1). Broadcasts."""
    gap = jnp.asarray(gap)
    b = (T - 1) * jnp.exp(-gap)
    return jnp.log1p(b) + gap * b / (1 + b)


def entropy_lower_bound(sigma, sigma_x, T):
    """Lower bound on every attention row's entropy, Zhai et al. 2023 (arXiv
    2303.06296), Thm 3.1: ``one_high_entropy(σ σ_x √(T/(T−1)), T)`` with
    ``σ = ‖W_Q W_Kᵀ‖₂`` and ``σ_x = ‖X Xᵀ‖₂`` (the logits of row ``i`` have norm at
    most ``σ σ_x``). Under σReparam ``σ ≤ γ_Q γ_K``, so ``sigma = γ_Q γ_K`` gives a
    bound that depends on the γ's (and ``σ_x``) only. Broadcasts."""
    r = jnp.asarray(sigma) * jnp.asarray(sigma_x)
    return one_high_entropy(r * np.sqrt(T / (T - 1)), T)


# ----------------------------------------------------------------- rank collapse


def _logit_parts(R, xbar, W):
    """``a_j = x̄ᵀ W r_j`` (``[H, T]``) and ``B_ij = r_iᵀ W r_j`` (``[H, T, T]``)."""
    a = jnp.einsum("d,hde,te->ht", xbar, W, R)
    B = jnp.einsum("td,hde,se->hts", R, W, R)
    return a, B


def cubic_residual(R, W, W_v):
    """Leading-order output residual of a pure attention layer, ``[T, d]``:
    ``Σ_h (1/T) R W_h Rᵀ R W_V,h``.

    ``R [T, d]``: centred input tokens (``1ᵀ R = 0``); ``W [H, d, d]``:
    ``W_Q W_Kᵀ`` per head; ``W_v [H, d, d]``. Softmax expanded to first order in
    the logits around uniform attention (theory/attention.md); the leading-order
    form of the residual contraction of Dong et al. 2021 (arXiv 2103.03404, Thm 2.2)."""
    T = R.shape[0]
    _, B = _logit_parts(R, jnp.zeros(R.shape[1], R.dtype), W)
    return jnp.einsum("hts,sd,hde->te", B, R, W_v) / T


def next_order_residual(R, xbar, W, W_v):
    """Next-order (fourth-order) term of the output residual, ``[T, d]``:
    ``Σ_h (1/T) B_h diag(a_h) R W_V,h`` with ``a = R W_hᵀ x̄``, ``B = R W_h Rᵀ``.

    ``xbar [d]``: the mean token. The remainder after it is fifth order
    (theory/attention.md, our derivation)."""
    T = R.shape[0]
    a, B = _logit_parts(R, xbar, W)
    return jnp.einsum("hts,hs,sd,hde->te", B, a, R, W_v) / T


def _isotropic_scales(cfg: Config):
    if cfg.sigma_reparam:
        s, v = cfg.gamma**2, cfg.gamma
    else:
        s, v = cfg.qk_scale, cfg.v_scale
    return jnp.asarray(s), cfg.heads * jnp.asarray(v)


def isotropic_stack(cfg: Config) -> dict:
    """Exact layer-by-layer metrics of the isotropic stack (our derivation).

    ``init='isotropic'`` gives ``W_Q W_Kᵀ = s I`` and ``W_V = v I`` per head
    (σReparam: ``s = γ²``, ``v = γ``; ``H`` identical heads act as ``v → H v``);
    ``tokens='orthonormal'`` gives ``X Xᵀ = M J + c² I`` with ``M = token_mean²``,
    ``c = token_std``. Every layer keeps this form, with ``e = exp(s c²)``,
    ``λ = (e − 1)/(e + T − 1)``, ``β = 1/(e + T − 1)``:

      pure: ``c' = v λ c``,  ``M' = v² (M + c² (2λβ + Tβ²))``
      skip: ``c' = (1 + vλ) c``,  ``M' = (1+v)² M + c² (2(1+vλ)vβ + T v²β²)``

    Returns ``residual``, ``residual_norm`` ``[L+1]``; ``entropy``,
    ``energy_ratio``, ``qk_norm`` ``[L, H]``; ``token_norm [L]``. The entropy of
    every row is ``one_high_entropy(s c², T)``; the pure recursion expands to
    ``c' = (s v/T) c³ (1 + O(s c²))`` (Dong et al. 2021, arXiv 2103.03404)."""
    if cfg.mlp:
        raise ValueError("mlp=True: the isotropic recursion covers attention only")
    T, L, H = cfg.seq_len, cfg.depth, cfg.heads
    s, v = _isotropic_scales(cfg)
    c2 = jnp.asarray(cfg.token_std) ** 2
    M = jnp.asarray(cfg.token_mean) ** 2
    c2s, Ms, ent, lam2 = [c2], [M], [], []
    for _ in range(L):
        g = s * c2
        e = jnp.exp(g)
        lam = jnp.expm1(g) / (e + T - 1)
        beta = 1 / (e + T - 1)
        ent.append(one_high_entropy(g, T))
        lam2.append(lam**2)
        if cfg.skip:
            M = (1 + v) ** 2 * M + c2 * (
                2 * (1 + v * lam) * v * beta + T * (v * beta) ** 2
            )
            c2 = c2 * (1 + v * lam) ** 2
        else:
            M = v**2 * (M + c2 * (2 * lam * beta + T * beta**2))
            c2 = v**2 * lam**2 * c2
        c2s.append(c2)
        Ms.append(M)
    c2s, Ms = jnp.stack(c2s), jnp.stack(Ms)
    heads = lambda x: jnp.broadcast_to(jnp.stack(x)[:, None], (L, H))  # noqa: E731
    return {
        "residual": jnp.sqrt((T - 1) * c2s / (T * (Ms + c2s))),
        "residual_norm": jnp.sqrt((T - 1) * c2s),
        "entropy": heads(ent),
        "energy_ratio": heads(lam2),
        "qk_norm": jnp.broadcast_to(s, (L, H)),
        "token_norm": T * Ms[:-1] + c2s[:-1],
    }


def leading_residual_norm(cfg: Config) -> dict:
    """The doubly exponential law of the pure isotropic stack, ``[L+1]`` each.

    Iterating ``c' = (s v/T) c³`` gives ``u_l = u_0^{3^l}`` with
    ``u = c √(s v/T)``, i.e. ``log u_l = 3^l log u_0`` and
    ``c_l = √(T/(s v)) u_0^{3^l}`` (our constants; the rate is Dong et al. 2021,
    arXiv 2103.03404). ``residual_norm = c_l √(T−1)``; ``residual`` uses the leading
    mean ``M_l = v^{2l} M_0``."""
    T = cfg.seq_len
    s, v = _isotropic_scales(cfg)
    c0 = jnp.asarray(cfg.token_std)
    u0 = c0 * jnp.sqrt(s * v / T)
    l = jnp.arange(cfg.depth + 1)
    c = jnp.sqrt(T / (s * v)) * u0 ** (3.0**l)
    M = v ** (2 * l) * jnp.asarray(cfg.token_mean) ** 2
    return {
        "residual_norm": c * np.sqrt(T - 1),
        "residual": jnp.sqrt((T - 1) * c**2 / (T * (M + c**2))),
        "log_u": (3.0**l) * jnp.log(u0),
    }


# ------------------------------------------------------------ length collapse

_X = np.linspace(-12.0, 12.0, 2401)  # standard-normal grid for the logit integral
_PHI = np.exp(-0.5 * _X**2) / np.sqrt(2 * np.pi) * (_X[1] - _X[0])
_TAU = np.linspace(-45.0, 25.0, 1401)  # log t grid for 1/x² = ∫ t e^{-tx} dt


def energy_ratio_exact(s, n):
    """Expected fraction of a white non-mean signal's energy passed by one attention
    layer with i.i.d. ``N(0, s²)`` logits over ``n`` tokens: ``n E[p_1²] − 1/n``.

    ``E[p_1²] = ∫_0^∞ t E[e^{2ℓ − t e^ℓ}] E[e^{−t e^ℓ}]^{n−1} dt`` (from
    ``1/x² = ∫ t e^{−tx} dt``), by the trapezoid rule on ``ℓ = s ξ`` and on
    ``log t``. Our derivation for the setting of Zhou et al. 2024 (arXiv 2410.24200,
    attention as a low-pass filter). ``s``, ``n`` broadcast (``n`` may be traced)."""
    s, n = jnp.broadcast_arrays(jnp.asarray(s, float), jnp.asarray(n, float))
    shape = s.shape
    s, n = s.reshape(-1, 1, 1), n.reshape(-1, 1)
    ell = s * jnp.asarray(_X).reshape(1, 1, -1)  # [K, 1, X]
    ete = jnp.exp(ell) * jnp.exp(jnp.asarray(_TAU)).reshape(1, -1, 1)  # [K, tau, X]
    w = jnp.exp(-ete)
    phi0 = w @ _PHI  # [K, tau]
    phi2 = (jnp.exp(2 * ell) * w) @ _PHI
    t2 = jnp.exp(2 * jnp.asarray(_TAU)).reshape(1, -1)
    # log φ0 keeps φ0^{n−1} accurate where φ0 is close to one.
    tiny = jnp.finfo(phi0.dtype).tiny  # φ0 underflows at large t; n = 1 needs 0·log
    integrand = t2 * phi2 * jnp.exp((n - 1) * jnp.log(jnp.maximum(phi0, tiny)))
    p2 = jnp.sum(0.5 * (integrand[:, 1:] + integrand[:, :-1]), axis=-1) * (
        _TAU[1] - _TAU[0]
    )
    n = n[:, 0]
    return (n * p2 - 1 / n).reshape(shape)


def energy_ratio_leading(s, n, order: int = 1):
    """Large-``n`` expansion of ``energy_ratio_exact``: ``(x − 1)/n`` with
    ``x = e^{s²}`` (``order=1``, from ``Σ_k e^{ℓ_k} ≈ n e^{s²/2}``), plus
    ``− x (x − 1)(2x − 1)/n²`` (``order=2``, delta method on the softmax
    denominator; our derivation). Setting of Zhou et al. 2024 (arXiv 2410.24200)."""
    x = jnp.exp(jnp.asarray(s) ** 2)
    n = jnp.asarray(n)
    out = (x - 1) / n
    if order >= 2:
        out = out - x * (x - 1) * (2 * x - 1) / n**2
    return out


# ------------------------------------------------------------------- predict


def predict(cfg: Config, t=None) -> dict:
    """Predicted metrics at record steps ``t``, each ``[len(t), *shape]``.

    ``t=None``: the limit, without the time axis: in ``sample`` mode the stack never
    changes, so the values themselves; in ``train`` mode nothing (the theory knows
    the untrained stack only).

    Isotropic stack on orthonormal tokens (no MLP): every metric of
    ``isotropic_stack`` (exact; in ``train`` mode only at ``t = 0``, NaN after).
    Gaussian weights on orthonormal zero-mean tokens with ``head_dim = dim`` and no
    σReparam: the first layer's ``energy_ratio`` (logit std ``qk_scale·token_std²``),
    NaN for deeper layers (their inputs are no longer orthonormal). Otherwise empty.
    """
    if t is None and cfg.mode == "train":
        return {}
    T, L, H = cfg.seq_len, cfg.depth, cfg.heads
    out = {}
    if cfg.init == "isotropic" and cfg.tokens == "orthonormal" and not cfg.mlp:
        out = isotropic_stack(cfg)
    elif (
        cfg.init == "gaussian"
        and cfg.tokens == "orthonormal"
        and cfg.head_dim == cfg.dim
        and not cfg.sigma_reparam
    ):
        s = jnp.asarray(cfg.qk_scale) * jnp.asarray(cfg.token_std) ** 2
        first = jnp.where(
            jnp.asarray(cfg.token_mean) == 0, energy_ratio_exact(s, T), jnp.nan
        )
        ratio = jnp.full((L, H), jnp.nan, dtype=first.dtype).at[0].set(first)
        out = {"energy_ratio": ratio}
    if t is None:
        return out
    t = np.asarray(t)
    res = {}
    for name, value in out.items():
        v = jnp.broadcast_to(value, (len(t),) + jnp.shape(value))
        if cfg.mode == "train":  # the theory knows the untrained stack only
            mask = (t > 0).reshape((len(t),) + (1,) * jnp.ndim(value))
            v = jnp.where(mask, jnp.nan, v)
        res[name] = v
    return res
