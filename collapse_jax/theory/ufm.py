"""Global minimisers of the unconstrained features model, in closed form.

MSE (balanced, any bias setting; imbalanced without bias). For Z = W H the
factorisation penalty obeys min_{WH=Z} λ_W/2‖W‖² + λ_H/2‖H‖² = √(λ_Wλ_H)‖Z‖_*, so the
problem becomes a nuclear-norm-regularised least squares in Z whose solution shrinks
each singular value √n_k of the one-hot target by N√(λ_Wλ_H) (Tirer & Bruna 2022,
arXiv 2202.08087; Zhou et al. 2022, arXiv 2203.01238, Thm 3.1; Dang et al. 2023,
arXiv 2301.00437, Thm for L = 1). A regularised bias reweights the mean mode by
w = λ_b/(1+λ_b) (no bias: w = 1; free bias: w = 0 and the ETF appears).

CE (balanced; Zhu et al. 2021, arXiv 2105.02375, Thm 3.1): a simplex ETF whose logit
margin t = ⟨w_k, h_k⟩ solves e^{−tK/(K−1)} / (1 + (K−1)e^{−tK/(K−1)}) = √(nλ_Wλ_H).

Label smoothing and MaxSup (balanced): LS = CE + ε(z_y − z̄) and
MaxSup = LS + ε(z_max − z_y) exactly, so MaxSup ≥ LS with equality on correctly
classified samples; both share the ETF minimiser of CE with √(nλ_Wλ_H) replaced by
√(nλ_Wλ_H) + ε/K in the norm equation (Guo et al. 2024, arXiv 2402.03979, for LS;
the MaxSup statement is derived in theory/ufm.md).

Derivations and assumptions: theory/ufm.md. Every function is pure ``jnp`` of the
Config, so it vmaps over a swept grid of float fields.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from collapse_jax import metrics as M
from collapse_jax.models.ufm import SOFTMAX_LOSSES, Config

__all__ = [
    "ce_logit_margin",
    "ce_margin_equation",
    "ce_norms",
    "class_logits",
    "classifier_norms",
    "feature_norms",
    "label_smoothing_identity",
    "logit_gap",
    "maxsup_identity",
    "min_loss",
    "minority_collapse_size",
    "mse_singular_values",
    "predict",
    "smoothing_threshold",
    "zero_threshold",
]


def _balanced(cfg: Config) -> bool:
    return len(set(cfg.counts)) == 1


def _check_supported(cfg: Config) -> None:
    if cfg.loss in SOFTMAX_LOSSES:
        if not _balanced(cfg):
            raise ValueError(
                f"per_class: the {cfg.loss} prediction needs balanced classes "
                f"(got {cfg.counts}); no closed form is known for imbalanced CE"
            )
        if cfg.dim < cfg.num_classes - 1:
            raise ValueError(
                f"dim={cfg.dim}: a simplex ETF needs dim >= num_classes - 1 "
                f"= {cfg.num_classes - 1}"
            )
        return
    if cfg.bias and not _balanced(cfg):
        raise ValueError(
            "bias=True with imbalanced per_class: no closed form is implemented; use "
            "bias=False or balanced classes"
        )
    if cfg.dim < cfg.num_classes:
        raise ValueError(
            f"dim={cfg.dim}: the MSE prediction needs dim >= num_classes "
            f"= {cfg.num_classes} (no rank constraint binds)"
        )


def _dtype(cfg: Config):
    return jnp.dtype(cfg.dtype)


def _mean_basis(K: int, dtype) -> jax.Array:
    """``[K, K]`` orthonormal Q with first column 1/√K (the mean mode)."""
    A = jnp.concatenate(
        [jnp.ones((K, 1), dtype), jnp.eye(K, dtype=dtype)[:, : K - 1]], 1
    )
    Q, R = jnp.linalg.qr(A)
    return Q * jnp.sign(jnp.diag(R))[None, :]


def _mean_mode_weight(cfg: Config):
    """How strongly the loss sees the mean logit mode: 1 without bias, λ_b/(1+λ_b)."""
    if not cfg.bias:
        return jnp.asarray(1.0, _dtype(cfg))
    return jnp.asarray(cfg.lambda_b / (1.0 + cfg.lambda_b), _dtype(cfg))


def mse_singular_values(cfg: Config) -> jax.Array:
    """``[K]`` singular values σ of the minimiser's logit matrix Z = W H.

    Balanced: entry 0 is the mean (all-ones) mode, σ_0 = (√n − N√(λ_Wλ_H)/w)_+, the
    other K−1 are σ = (√n − N√(λ_Wλ_H))_+. Imbalanced, no bias: entry k belongs to
    class k, σ_k = (√n_k − N√(λ_Wλ_H))_+.
    """
    dtype = _dtype(cfg)
    counts = jnp.asarray(cfg.counts, dtype)
    shrink = cfg.num_samples * jnp.sqrt(cfg.lambda_w * cfg.lambda_h)
    if _balanced(cfg):
        root_n = jnp.sqrt(counts[0])
        w = _mean_mode_weight(cfg)
        mean_mode = jnp.where(
            w > 0, jnp.maximum(root_n - shrink / jnp.where(w > 0, w, 1), 0.0), 0.0
        )
        rest = jnp.maximum(root_n - shrink, 0.0)
        return jnp.concatenate(
            [mean_mode[None], jnp.broadcast_to(rest, (cfg.num_classes - 1,))]
        )
    return jnp.maximum(jnp.sqrt(counts) - shrink, 0.0)


def _mse_minimiser(cfg: Config):
    """Canonical minimiser: W ``[K, K]``, class means ``[K, K]`` (rows), bias ``[K]``."""
    dtype = _dtype(cfg)
    K = cfg.num_classes
    sigma = mse_singular_values(cfg)
    s_w = (cfg.lambda_h / cfg.lambda_w) ** 0.25 * jnp.sqrt(sigma)
    s_h = (cfg.lambda_w / cfg.lambda_h) ** 0.25 * jnp.sqrt(sigma)
    counts = jnp.asarray(cfg.counts, dtype)
    if _balanced(cfg):
        Q = _mean_basis(K, dtype)
        W = Q * s_w[None, :]
        means = Q * (s_h / jnp.sqrt(counts[0]))[None, :]
        # b = (ȳ − z̄)/(1 + λ_b) with ȳ = 1/K and z̄ = σ_0/(K√n) (mean logit).
        mean_logit = sigma[0] / (K * jnp.sqrt(counts[0]))
        b_value = (1.0 / K - mean_logit) / (1.0 + cfg.lambda_b)
        b = jnp.full((K,), b_value if cfg.bias else 0.0, dtype)
    else:
        W = jnp.diag(s_w)
        means = jnp.diag(s_h / jnp.sqrt(counts))
        b = jnp.zeros((K,), dtype)
    return W, means, b


def _softmax_rho(cfg: Config):
    """ρ of the norm equation: √(nλ_Wλ_H) for CE, √(nλ_Wλ_H) + ε/K for LS/MaxSup."""
    rho = jnp.sqrt(cfg.counts[0] * cfg.lambda_w * cfg.lambda_h)
    if cfg.loss in ("ls", "maxsup"):
        return rho + cfg.smoothing / cfg.num_classes
    return rho


def ce_margin_equation(t, cfg: Config):
    """Residual of the norm equation at logit margin ``t`` (zero at the minimiser):
    e/(1+(K−1)e) − ρ, e = exp(−tK/(K−1)).

    CE: ρ = √(nλ_Wλ_H) (Zhu et al. 2021, arXiv 2105.02375, Thm 3.1). LS and MaxSup:
    ρ = √(nλ_Wλ_H) + ε/K, since their loss at the ETF adds ε t (theory/ufm.md).
    """
    K = cfg.num_classes
    e = jnp.exp(-t * K / (K - 1))
    return e / (1 + (K - 1) * e) - _softmax_rho(cfg)


def ce_logit_margin(cfg: Config) -> jax.Array:
    """Logit margin t = ⟨w_k, h_k⟩ of the CE (LS, MaxSup) minimiser; 0 when Kρ ≥ 1.

    The norm equation is solvable in closed form:
    t = (K−1)/K · log((1 − (K−1)ρ)/ρ), ρ = √(nλ_Wλ_H) (+ ε/K for LS and MaxSup).
    """
    K = cfg.num_classes
    rho = _softmax_rho(cfg)
    inside = (1 - (K - 1) * rho) / rho
    return jnp.where(K * rho < 1, (K - 1) / K * jnp.log(jnp.maximum(inside, 1.0)), 0.0)


def ce_norms(cfg: Config):
    """(‖w_k‖, ‖h_k‖) at the CE (LS, MaxSup) minimiser, equal for every class:
    ‖w‖² = t√(nλ_H/λ_W), ‖h‖² = t√(λ_W/(nλ_H)) (Zhu et al. 2021, arXiv 2105.02375,
    Thm 3.1, with the margin t of ``ce_logit_margin``). Elementwise in the float
    fields, so a grid Config (``expand_grid``) gives ``[G]`` arrays without vmap."""
    n = cfg.counts[0]
    t = ce_logit_margin(cfg)
    w_sq = t * jnp.sqrt(cfg.lambda_h * n / cfg.lambda_w)
    h_sq = t * jnp.sqrt(cfg.lambda_w / (cfg.lambda_h * n))
    return jnp.sqrt(w_sq), jnp.sqrt(h_sq)


def _ce_minimiser(cfg: Config):
    dtype = _dtype(cfg)
    K = cfg.num_classes
    n = cfg.counts[0]
    t = jnp.asarray(ce_logit_margin(cfg), dtype)
    w_sq = t * jnp.sqrt(cfg.lambda_h * n / cfg.lambda_w)
    h_sq = t * jnp.sqrt(cfg.lambda_w / (cfg.lambda_h * n))
    E = _mean_basis(K, dtype)[:, 1:]  # rows: a simplex ETF with norms √(1−1/K)
    unit = E / jnp.sqrt(1.0 - 1.0 / K)
    return unit * jnp.sqrt(w_sq), unit * jnp.sqrt(h_sq), jnp.zeros((K,), dtype)


def _minimiser(cfg: Config):
    _check_supported(cfg)
    return _ce_minimiser(cfg) if cfg.loss in SOFTMAX_LOSSES else _mse_minimiser(cfg)


def logit_gap(cfg: Config) -> jax.Array:
    """z_y − z_k (k ≠ y) at the CE/LS/MaxSup minimiser: t K/(K−1), the ETF logits
    being t on the true class and −t/(K−1) elsewhere."""
    _check_supported(cfg)
    K = cfg.num_classes
    return ce_logit_margin(cfg) * K / (K - 1)


def smoothing_threshold(cfg: Config) -> jax.Array:
    """ε at and above which the LS/MaxSup minimiser is W = H = 0: 1 − K√(nλ_Wλ_H).

    Our derivation (theory/ufm.md): the norm equation has a positive root iff
    Kρ < 1 with ρ = √(nλ_Wλ_H) + ε/K, which is also where the Hessian at zero
    stops being positive definite. A value ≤ 0 means plain CE is already at zero.
    """
    return 1.0 - cfg.num_classes * jnp.sqrt(cfg.counts[0] * cfg.lambda_w * cfg.lambda_h)


def label_smoothing_identity(logits: jax.Array, labels: jax.Array, eps) -> jax.Array:
    """``[N]`` CE(z_i, y_i) + ε(z_{y_i} − mean_k z_ki), which equals the label-smoothed
    cross-entropy −Σ_k q_k log softmax(z_i)_k, q = (1 − ε)e_y + ε/K, exactly.

    ``logits`` is ``[K, N]``. Our decomposition (theory/ufm.md); Zhou et al. 2025
    (arXiv 2502.15798), Sec. 3, split the same term into its correct and
    misclassified parts.
    """
    N = logits.shape[1]
    logp = jax.nn.log_softmax(logits, axis=0)
    true = logits[labels, jnp.arange(N)]
    return -logp[labels, jnp.arange(N)] + eps * (true - jnp.mean(logits, axis=0))


def maxsup_identity(logits: jax.Array, labels: jax.Array, eps) -> jax.Array:
    """``[N]`` MaxSup minus label smoothing per sample: ε(max_k z_ki − z_{y_i}) ≥ 0,
    zero exactly on correctly classified samples (Zhou et al. 2025, arXiv 2502.15798,
    Sec. 3: the "error-amplification" term that MaxSup removes)."""
    N = logits.shape[1]
    return eps * (jnp.max(logits, axis=0) - logits[labels, jnp.arange(N)])


def classifier_norms(cfg: Config) -> jax.Array:
    """``[K]`` ‖w_k‖ at the global minimiser."""
    W, _, _ = _minimiser(cfg)
    return jnp.linalg.norm(W, axis=1)


def feature_norms(cfg: Config) -> jax.Array:
    """``[K]`` ‖h_k‖ (class-mean feature norm) at the global minimiser."""
    _, means, _ = _minimiser(cfg)
    return jnp.linalg.norm(means, axis=1)


def class_logits(cfg: Config) -> jax.Array:
    """``[K, K]`` mean logits W h_k + b of each class (row k) at the minimiser."""
    W, means, b = _minimiser(cfg)
    return means @ W.T + b[None, :]


def min_loss(cfg: Config) -> jax.Array:
    """The global minimum of the regularised loss."""
    _check_supported(cfg)
    K, N = cfg.num_classes, cfg.num_samples
    if cfg.loss in SOFTMAX_LOSSES:
        # CE: log(1 + (K−1)e^{−tK/(K−1)}) + Kρ t; LS/MaxSup add ε t, i.e. the same
        # expression with ρ + ε/K in place of ρ.
        t = ce_logit_margin(cfg)
        rho = _softmax_rho(cfg)
        return jnp.log1p((K - 1) * jnp.exp(-t * K / (K - 1))) + K * rho * t
    sigma = mse_singular_values(cfg)
    root_n = jnp.sqrt(jnp.asarray(cfg.counts, _dtype(cfg)))
    mu = jnp.sqrt(cfg.lambda_w * cfg.lambda_h)
    if _balanced(cfg):
        weights = jnp.concatenate(
            [_mean_mode_weight(cfg)[None], jnp.ones((K - 1,), _dtype(cfg))]
        )
        fit = jnp.sum(weights * (root_n - sigma) ** 2) / (2 * N)
    else:
        fit = jnp.sum((root_n - sigma) ** 2) / (2 * N)
    return fit + mu * jnp.sum(sigma)


def zero_threshold(cfg: Config) -> jax.Array:
    """λ_Wλ_H at and above which the minimiser is W = H = 0.

    MSE: max_k n_k / N². CE, LS, MaxSup (balanced): (1 − ε)²/(K² n), from Kρ ≥ 1
    (ε = 0 for CE, which gives the same 1/(K² n) as balanced MSE).
    """
    if cfg.loss in ("ls", "maxsup"):
        K, n = cfg.num_classes, cfg.counts[0]
        return (1.0 - cfg.smoothing) ** 2 / (K**2 * n)
    return max(cfg.counts) / cfg.num_samples**2


def minority_collapse_size(cfg: Config) -> jax.Array:
    """MSE, no bias: class k's classifier (and mean feature) is zero iff
    n_k ≤ N² λ_Wλ_H, with N the total sample count."""
    return cfg.num_samples**2 * cfg.lambda_w * cfg.lambda_h


def _geometry(cfg: Config) -> dict[str, jax.Array]:
    """NC metrics evaluated on the minimiser, with each class's mean repeated n_k times."""
    W, means, b = _minimiser(cfg)
    K = cfg.num_classes
    labels = jnp.asarray(cfg.labels)
    H = means[labels]
    centred = means - H.mean(axis=0)[None, :]
    nonzero = jnp.any(jnp.linalg.norm(W, axis=1) > 0)
    values = {
        "nc2_h": M.nc2_etf_distance(centred),
        "nc2_w": M.nc2_etf_distance(W),
        "equinorm_h": M.equinorm(centred),
        "equinorm_w": M.equinorm(W),
        "equiangular_h": M.equiangularity(centred),
        "equiangular_w": M.equiangularity(W),
        "nc3": M.nc3_self_duality(W, H, labels, K),
    }
    # At the zero minimiser the geometry is undefined: NaN means "no prediction".
    return {k: jnp.where(nonzero, v, jnp.nan) for k, v in values.items()}


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Limits (t → ∞) of ``ufm.observe`` metrics at the global minimiser.

    Args:
      cfg: a UFM Config with a supported setting (see module docstring).
      t: ignored; the theory gives only the limit, compared at the last record.

    Returns:
      Metric name -> predicted limit: scalars, ``w_norm``/``h_norm`` ``[K]``,
      ``class_logits`` ``[K, K]``. NC1, NC4, CDNV and the gradient norm are 0.
    """
    _check_supported(cfg)
    W, means, b = _minimiser(cfg)
    zero = jnp.zeros((), _dtype(cfg))
    out = {
        "loss": min_loss(cfg),
        "grad_norm": zero,
        "nc1": zero,
        "nc4": zero,
        "w_norm": jnp.linalg.norm(W, axis=1),
        "h_norm": jnp.linalg.norm(means, axis=1),
        "b_mean": jnp.mean(b),
        "class_logits": means @ W.T + b[None, :],
    }
    if cfg.loss in SOFTMAX_LOSSES:
        out["logit_gap"] = logit_gap(cfg)
    out.update(_geometry(cfg))
    return out
