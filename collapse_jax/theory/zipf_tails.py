"""Test error of the memorisation model on Zipf data with cut or narrowed tails.

Exact finite-N formula plus the asymptotic scaling laws of Hutter 2021
(arXiv 2102.04074) and Dohmatob et al. 2024, "A Tale of Tails" (arXiv 2402.07043),
over one or several generations of AI data. The training law of n generations is
computed here from its closed forms (``training_law``), not by the model's loop.
Derivations in theory/zipf_tails.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, zeta

from collapse_jax.models.zipf_tails import Config

__all__ = [
    "DEFAULT_STEPS",
    "exponent",
    "generation_beta",
    "hutter_constant",
    "narrowed_constant",
    "narrowed_exponent",
    "narrowed_scaling",
    "predict",
    "test_error",
    "test_error_floor",
    "test_error_scaling",
    "tail_floor_scaling",
    "training_law",
]

# ``predict(cfg)`` without times: steps 0, 10, ..., 1000.
DEFAULT_STEPS = np.arange(0, 1001, 10)


def _tokens(cfg: Config, t) -> jnp.ndarray:
    if not isinstance(t, jax.core.Tracer):
        arr = np.asarray(t, dtype=float)
        if np.any(arr < 0) or np.any(np.mod(arr, 1) != 0):
            raise ValueError(f"t={t!r}: steps must be whole numbers >= 0")
    return cfg.batch * jnp.asarray(t, dtype=jnp.result_type(float))


def training_law(cfg: Config) -> jnp.ndarray:
    """``[N]`` law q of the learner's tokens after ``cfg.generations`` = n rounds.

    Closed forms of g_j = π p + (1 − π) A(g_{j−1}), g_0 = p:
      cut: A keeps the top k ranks; g_j is a multiple of p on i <= k and π p beyond
        k for every j >= 1, so g_n = π p + (1 − π) p·1[i <= k]/P_k for all n >= 1:
        top-k cutting of an exact law is idempotent (our derivation).
      narrow, π = 0: A(g) ∝ g^{γ}, γ = β'/β, so g_n ∝ i^{−β γ^n} (temperature
        applied n times; our derivation).
      narrow, π > 0: no closed form; the recursion is run (log domain).
    One round (n = 1) is the cut/narrowed law of Dohmatob et al. 2024, arXiv
    2402.07043, Sec. 2, mixed as in its Sec. 3.
    """
    dtype = jnp.result_type(float)
    i = jnp.arange(1, cfg.vocab + 1, dtype=dtype)
    beta = jnp.asarray(cfg.beta, dtype)
    p = i**-beta / jnp.sum(i**-beta)
    pi = jnp.asarray(cfg.clean_fraction, dtype)
    n = cfg.generations
    if n == 0:
        return p
    if cfg.source == "cut":
        head = jnp.where(i <= jnp.asarray(cfg.cut_rank, dtype), p, 0.0)
        return pi * p + (1 - pi) * head / jnp.sum(head)
    gamma = jnp.asarray(cfg.narrow_beta, dtype) / beta
    log_p = -beta * jnp.log(i) - jnp.log(jnp.sum(i**-beta))

    def one_round(log_g, _):
        log_a = gamma * log_g
        log_a = log_a - jax.scipy.special.logsumexp(log_a)
        return jnp.logaddexp(jnp.log(pi) + log_p, jnp.log1p(-pi) + log_a), None

    pure = -beta * gamma**n * jnp.log(i)
    pure = jnp.exp(pure - jax.scipy.special.logsumexp(pure))
    mixed = jnp.exp(jax.lax.scan(one_round, log_p, None, length=n)[0])
    return jnp.where(pi > 0, mixed, pure)


def test_error(cfg: Config, t) -> jnp.ndarray:
    """E[test error after T = batch·t tokens] = Σ_i p_i (1 − q_i)^T, ``t.shape``.

    Token i is unseen after T i.i.d. draws from q with probability (1 − q_i)^T; the
    memoriser errs exactly on unseen tokens (Hutter 2021, arXiv 2102.04074, Sec. 3;
    Dohmatob et al. 2024, arXiv 2402.07043, Sec. 2 with the training law q of the
    cut/narrowed/mixed source, here after n generations: ``training_law``). Exact
    for the finite vocabulary N.
    """
    T = _tokens(cfg, t)
    p, q = cfg.test_probs(), training_law(cfg)
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
    p, q = cfg.test_probs(), training_law(cfg)
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


def generation_beta(cfg: Config) -> jnp.ndarray:
    """β_n = β·(β'/β)^n: the Zipf exponent of n rounds of narrowing (π = 0)."""
    beta = jnp.asarray(cfg.beta, jnp.result_type(float))
    return beta * (jnp.asarray(cfg.narrow_beta, beta.dtype) / beta) ** cfg.generations


def narrowed_exponent(cfg: Config) -> jnp.ndarray:
    """c_n = (β − 1)/β_n: the data-scaling exponent after n rounds of narrowing.

    c_0 = 1 − 1/β (clean), c_1 = (β − 1)/β' (one narrowed round: the learnt head
    i <= T^{1/β'} leaves the tail mass T^{−(β−1)/β'}; Dohmatob et al. 2024, arXiv
    2402.07043, Sec. 2, tail narrowing) and c_n = c_0·(β/β')^n: each round divides
    the exponent by β'/β (our derivation for n > 1). Clean data (π > 0) restore
    c_0, at π·T (``test_error_scaling``).
    """
    beta = jnp.asarray(cfg.beta, jnp.result_type(float))
    return (beta - 1.0) / generation_beta(cfg)


def narrowed_constant(cfg: Config) -> jnp.ndarray:
    """C_n = Γ(c_n)·ζ(β_n)^{c_n} / (β_n·ζ(β)), so E_test ≈ C_n·T^{−c_n} (N = ∞).

    From Σ_i p_i e^{−T q_i} ≈ ∫ x^{−β}/ζ(β)·exp(−T x^{−β_n}/ζ(β_n)) dx with
    u = T x^{−β_n}/ζ(β_n); n = 0 gives ``hutter_constant``. Our derivation.
    """
    beta = jnp.asarray(cfg.beta, jnp.result_type(float))
    b_n, c_n = generation_beta(cfg), narrowed_exponent(cfg)
    return jnp.exp(gammaln(c_n)) * zeta(b_n, 1.0) ** c_n / (b_n * zeta(beta, 1.0))


def narrowed_scaling(cfg: Config, T) -> jnp.ndarray:
    """C_n·T^{−c_n}: the asymptotic test error after n rounds of narrowing, π = 0."""
    T = jnp.asarray(T, jnp.result_type(float))
    return narrowed_constant(cfg) * T ** (-narrowed_exponent(cfg))


def predict(cfg: Config, t=None) -> dict[str, jnp.ndarray]:
    """``test_error`` at steps ``t`` (exact, finite N); ``t=None``: ``DEFAULT_STEPS``.

    Traceable in the float fields (a sweep vmaps it); ``t`` concrete or traced.
    """
    t = DEFAULT_STEPS if t is None else t
    return {"test_error": test_error(cfg, t)}
