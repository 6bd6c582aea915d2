"""Test error of the memorisation model on Zipf data with cut or narrowed tails.

Exact finite-N formula plus the asymptotic scaling laws of Hutter 2021
(arXiv 2102.04074) and Dohmatob et al. 2024, "A Tale of Tails" (arXiv 2402.07043).
Derivations in theory/zipf_tails.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, zeta

from collapse_jax.models.zipf_tails import Config

__all__ = [
    "exponent",
    "hutter_constant",
    "predict",
    "test_error",
    "test_error_floor",
    "test_error_scaling",
    "tail_floor_scaling",
]


def _tokens(cfg: Config, t) -> jnp.ndarray:
    if not isinstance(t, jax.core.Tracer):
        arr = np.asarray(t, dtype=float)
        if np.any(arr < 0) or np.any(np.mod(arr, 1) != 0):
            raise ValueError(f"t={t!r}: steps must be whole numbers >= 0")
    return cfg.batch * jnp.asarray(t, dtype=jnp.result_type(float))


def test_error(cfg: Config, t) -> jnp.ndarray:
    """E[test error after T = batch·t tokens] = Σ_i p_i (1 − q_i)^T, ``t.shape``.

    Token i is unseen after T i.i.d. draws from q with probability (1 − q_i)^T; the
    memoriser errs exactly on unseen tokens (Hutter 2021, arXiv 2102.04074, Sec. 3;
    Dohmatob et al. 2024, arXiv 2402.07043, Sec. 2 with the training law q of the
    cut/narrowed/mixed source). Exact for the finite vocabulary N.
    """
    T = _tokens(cfg, t)
    p, q = cfg.test_probs(), cfg.train_probs()
    # (1 − q)^T with q = 0 giving 1 and T = 0 giving 1; log1p keeps small q accurate.
    log_unseen = T[..., None] * jnp.log1p(-jnp.minimum(q, 1.0 - 1e-16))[None, :]
    unseen = jnp.where(q[None, :] > 0, jnp.exp(log_unseen), 1.0)
    return jnp.sum(p[None, :] * unseen, axis=-1).reshape(T.shape)


def test_error_floor(cfg: Config) -> jnp.ndarray:
    """lim_{T→∞} of ``test_error``: Σ_{i : q_i = 0} p_i, mass the source never emits.

    For a cut at k without clean data (π = 0) this is Σ_{k<i<=N} p_i; with π > 0 or a
    narrowed source every q_i > 0 and the floor is 0 (Dohmatob et al. 2024,
    arXiv 2402.07043, Sec. 2: tail cutting "stops the scaling law"; Sec. 4: clean data
    restore it).
    """
    p, q = cfg.test_probs(), cfg.train_probs()
    return jnp.sum(jnp.where(q > 0, 0.0, p))


def exponent(cfg: Config) -> jnp.ndarray:
    """c = 1 − 1/β, the data-scaling exponent of the memoriser (Hutter 2021)."""
    return 1.0 - 1.0 / jnp.asarray(cfg.beta)


def hutter_constant(cfg: Config) -> jnp.ndarray:
    """C_β = Γ(1 − 1/β) / (β·ζ(β)^{1/β}), so E_test ≈ C_β·T^{−(1−1/β)} for N = ∞.

    From Σ_i p_i e^{−T p_i} ≈ ∫ p(x) e^{−T p(x)} dx with p(x) = x^{−β}/ζ(β) (Hutter
    2021, arXiv 2102.04074, Thm. on the Zipf learning curve; derivation in the note).
    """
    beta = jnp.asarray(cfg.beta, jnp.result_type(float))
    return jnp.exp(gammaln(1.0 - 1.0 / beta)) / (beta * zeta(beta, 1.0) ** (1.0 / beta))


def test_error_scaling(cfg: Config, T) -> jnp.ndarray:
    """C_β·T_eff^{−(1−1/β)} with T_eff = π·T if π > 0 else T: the asymptotic law.

    Clean data (π = 0 cut-free, π = 1) follow Hutter's law; with a fraction π of
    clean data mixed into cut data, the tail beyond k is learnt only from the clean
    share, so for T ≫ k^β/π the error follows the clean law at π·T (Dohmatob et al.
    2024, arXiv 2402.07043, Sec. 4, mixing theorem). Asymptotic (N = ∞, T → ∞).
    """
    T = jnp.asarray(T, jnp.result_type(float))
    pi = jnp.asarray(cfg.clean_fraction, T.dtype)
    T_eff = jnp.where(pi > 0, pi * T, T)
    return hutter_constant(cfg) * T_eff ** (-exponent(cfg))


def tail_floor_scaling(cfg: Config) -> jnp.ndarray:
    """Σ_{i>k} p_i ≈ k^{−(β−1)} / ((β − 1)·ζ(β)) for N = ∞: the floor's k-scaling.

    The error floor k^{−β'} with β' = β − 1 of the tail-cutting theorem (Dohmatob et
    al. 2024, arXiv 2402.07043, Sec. 2: E_test ≍ T^{−c} + k^{−β'}); asymptotic in k
    (integral approximation of the tail sum; relative error O(1/k)).
    """
    beta = jnp.asarray(cfg.beta, jnp.result_type(float))
    k = jnp.asarray(cfg.cut_rank, beta.dtype)
    return k ** (1.0 - beta) / ((beta - 1.0) * zeta(beta, 1.0))


def predict(cfg: Config, t) -> dict[str, jnp.ndarray]:
    """``test_error`` at steps ``t`` (exact, finite N)."""
    return {"test_error": test_error(cfg, t)}
