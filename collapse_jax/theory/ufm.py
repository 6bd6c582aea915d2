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

Tethered features (MSE, balanced, no bias, d = K; Tirer, Huang & Niles-Weed 2023,
arXiv 2210.16658, for the model): λ_H/2‖H − X‖² in place of λ_H/2‖H‖². For any W the
optimal features are H = (WᵀW + Nλ_H I)^{-1}(WᵀY + Nλ_H X), so within-class deviations
are those of X multiplied by P = Nλ_H(WᵀW + Nλ_H I)^{-1} ⪯ I. With the model's inputs
(class means m·U, whitened noise σ) the minimiser is W = g Uᵀ with g the minimiser of
a scalar function, and NC1(H) = (K−1)σ²κ²/c² vs NC1(X) = (K−1)σ²/m² (our derivation).

Mixup (MSE, balanced, no bias; Fisher, Meng & Papyan 2024, arXiv 2402.06171, for the
setting): with free features per mixed sample the problem is the MSE UFM with the
one-hot second moment I/K replaced by the mixed-label second moment
S = (α+1)/((2α+1)K) (I − 11ᵀ/K) + 1/K · 11ᵀ/K: the K − 1 discriminative modes shrink by
(α+1)/(2α+1) before the √(λ_Wλ_H) threshold, the mean mode does not, and mixed features
interpolate the pure class features exactly (our derivation).

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
    "classifier_spectrum",
    "feature_norms",
    "label_smoothing_identity",
    "logit_gap",
    "maxsup_identity",
    "min_loss",
    "minority_collapse_size",
    "mixup_label_moments",
    "mixup_shrinkage",
    "mixup_singular_values",
    "mse_singular_values",
    "predict",
    "smoothing_threshold",
    "tethered_classifier_scale",
    "tethered_features",
    "tethered_input_nc1",
    "tethered_mean_scale",
    "tethered_nc1",
    "within_class_contraction",
    "zero_threshold",
]


def _balanced(cfg: Config) -> bool:
    return len(set(cfg.counts)) == 1


def _check_supported(cfg: Config) -> None:
    if cfg.mixup:
        if cfg.bias or not _balanced(cfg) or cfg.dim < cfg.num_classes:
            raise ValueError(
                "mixup=True: the closed form needs bias=False, balanced classes and "
                f"dim >= num_classes (got bias={cfg.bias}, per_class={cfg.counts}, "
                f"dim={cfg.dim})"
            )
        return
    if cfg.tether:
        if cfg.loss != "mse" or cfg.bias or not _balanced(cfg):
            raise ValueError(
                "tether=True: the closed form needs loss='mse', bias=False and "
                f"balanced classes (got loss={cfg.loss!r}, bias={cfg.bias}, "
                f"per_class={cfg.counts})"
            )
        if cfg.dim != cfg.num_classes:
            raise ValueError(
                f"dim={cfg.dim}: the tethered closed form needs dim == num_classes "
                f"= {cfg.num_classes} (with spare dimensions the classifier may leave "
                "the span of the inputs' class means; see theory/ufm.md)"
            )
        return
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


def mixup_shrinkage(cfg: Config) -> jax.Array:
    """(α+1)/(2α+1): the factor by which mixup scales the discriminative eigenvalues of
    the label second moment (1 at α → 0, 1/2 at α → ∞). E λ² = (α+1)/(2(2α+1)) for
    λ ~ Beta(α, α); our derivation (theory/ufm.md)."""
    a = cfg.mixup_alpha
    return (a + 1) / (2 * a + 1)


def mixup_label_moments(cfg: Config):
    """Eigenvalues (mean mode, each of the K − 1 centred modes) of the mixed-label
    second moment S = E[y yᵀ], y = λ e_a + (1 − λ) e_b, a, b uniform, λ ~ Beta(α, α):
    S = 2Eλ²/K · I + 2E[λ(1−λ)]/K² · 11ᵀ, eigenvalues 1/K and (α+1)/((2α+1)K)."""
    K = cfg.num_classes
    return jnp.asarray(1.0 / K, _dtype(cfg)), mixup_shrinkage(cfg) / K


def mixup_singular_values(cfg: Config) -> jax.Array:
    """``[K]`` singular values of the minimiser's weighted logit matrix: entry 0 the
    mean mode, then K − 1 centred modes, σ_i = (√(N s_i) − N√(λ_Wλ_H))_+ with s_i the
    eigenvalues of ``mixup_label_moments`` (soft-thresholding as for plain MSE)."""
    N = cfg.num_samples
    s_mean, s_centred = mixup_label_moments(cfg)
    shrink = N * jnp.sqrt(cfg.lambda_w * cfg.lambda_h)
    mean_mode = jnp.maximum(jnp.sqrt(N * s_mean) - shrink, 0.0)
    rest = jnp.maximum(jnp.sqrt(N * s_centred) - shrink, 0.0)
    return jnp.concatenate(
        [mean_mode[None], jnp.broadcast_to(rest, (cfg.num_classes - 1,))]
    )


def _mixup_minimiser(cfg: Config):
    """W ``[K, K]`` and pure class-mean features ``[K, K]`` (rows) in the basis Q of
    ``_mean_basis``: W = Q diag(s_W), h_a = C e_a with C = (λ_W/λ_H)^{1/4}
    diag(√σ_i / √(N s_i)) Qᵀ (theory/ufm.md)."""
    dtype = _dtype(cfg)
    K, N = cfg.num_classes, cfg.num_samples
    sigma = mixup_singular_values(cfg)
    s_mean, s_centred = mixup_label_moments(cfg)
    moments = jnp.concatenate(
        [s_mean[None], jnp.broadcast_to(s_centred, (K - 1,))]
    ).astype(dtype)
    Q = _mean_basis(K, dtype)
    W = Q * ((cfg.lambda_h / cfg.lambda_w) ** 0.25 * jnp.sqrt(sigma))[None, :]
    scale = (cfg.lambda_w / cfg.lambda_h) ** 0.25 * jnp.sqrt(sigma / (N * moments))
    means = Q * scale[None, :]
    return W, means, jnp.zeros((K,), dtype)


def classifier_spectrum(cfg: Config) -> jax.Array:
    """``[K]`` singular values of W at the minimiser, descending.

    Mixup: (λ_H/λ_W)^{1/4} √σ_i with σ from ``mixup_singular_values`` — the mean mode
    first, then the K − 1 discriminative modes, which mixup shrinks."""
    W, _, _ = _minimiser(cfg)
    return jnp.sort(jnp.linalg.svd(W, compute_uv=False))[::-1]


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
    if cfg.mixup:
        return _mixup_minimiser(cfg)
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
    mu = jnp.sqrt(cfg.lambda_w * cfg.lambda_h)
    if cfg.mixup:
        # Σ_i (√(N s_i) − σ_i)²/(2N) + μ Σ_i σ_i over the K modes of the weighted target.
        s_mean, s_centred = mixup_label_moments(cfg)
        sigma = mixup_singular_values(cfg)
        root = jnp.sqrt(
            N * jnp.concatenate([s_mean[None], jnp.full((K - 1,), s_centred)])
        )
        return jnp.sum((root - sigma) ** 2) / (2 * N) + mu * jnp.sum(sigma)
    sigma = mse_singular_values(cfg)
    root_n = jnp.sqrt(jnp.asarray(cfg.counts, _dtype(cfg)))
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


def tethered_features(W: jax.Array, X: jax.Array, cfg: Config) -> jax.Array:
    """``[d, N]`` optimal features for a fixed classifier W ``[K, d]`` and inputs X
    ``[d, N]``: H = (WᵀW + Nλ_H I)^{-1}(WᵀY + Nλ_H X), the zero of ∂f/∂H.

    Exact at every stationary point of the tethered MSE loss (no bias); any d, any X.
    Our derivation (theory/ufm.md), for the model of Tirer et al. 2023 (arXiv
    2210.16658).
    """
    N, d = cfg.num_samples, W.shape[1]
    Y = jax.nn.one_hot(jnp.asarray(cfg.labels), cfg.num_classes, dtype=W.dtype).T
    A = W.T @ W + N * cfg.lambda_h * jnp.eye(d, dtype=W.dtype)
    return jnp.linalg.solve(A, W.T @ Y + N * cfg.lambda_h * X)


def within_class_contraction(W: jax.Array, cfg: Config) -> jax.Array:
    """``[d, d]`` P = Nλ_H (WᵀW + Nλ_H I)^{-1}: at a stationary point H − class means
    of H = P (X − class means of X). Eigenvalues Nλ_H/(s_i² + Nλ_H) ∈ (0, 1] for the
    singular values s_i of W (1 off W's row space), so Σ_W(H) = P Σ_W(X) P ⪯ Σ_W(X):
    the tether contracts within-class variability (the reduction Tirer et al. 2023,
    arXiv 2210.16658, prove along gradient flow; here exact at stationarity)."""
    d = W.shape[1]
    a = cfg.num_samples * cfg.lambda_h
    return a * jnp.linalg.inv(W.T @ W + a * jnp.eye(d, dtype=W.dtype))


def _tether_objective(s, cfg: Config):
    """φ(s): the tethered loss per class at W = s Uᵀ with H optimal (f = K φ)."""
    n, N = cfg.counts[0], cfg.num_samples
    m, sigma, lh = cfg.input_scale, cfg.input_noise, cfg.lambda_h
    q = n * (1 - m * s) ** 2 + N * sigma**2 * s**2
    return lh / 2 * q / (s**2 + N * lh) + cfg.lambda_w / 2 * s**2


def tethered_classifier_scale(cfg: Config) -> jax.Array:
    """g = argmin_{s ≥ 0} φ(s): the minimiser is W = g Uᵀ (every singular value g).

    φ(s) = (λ_H/2)(n(1 − ms)² + Nσ²s²)/(s² + Nλ_H) + λ_W s²/2 (our derivation,
    theory/ufm.md). Solved by a 4097-point grid on [0, 1/√(Kλ_W)] (φ(0) = 1/(2K) bounds
    the minimiser there), then Newton on φ' from the best grid point, to rounding.
    """
    dtype = _dtype(cfg)
    top = 1.0 / jnp.sqrt(cfg.num_classes * cfg.lambda_w)
    grid = jnp.linspace(0.0, 1.0, 4097, dtype=dtype) * top
    s = grid[jnp.argmin(_tether_objective(grid, cfg))]
    d1 = jax.grad(_tether_objective)
    d2 = jax.grad(d1)

    def newton(s, _):
        step = d1(s, cfg) / d2(s, cfg)
        return jnp.clip(s - step, 0.0, top), None

    s, _ = jax.lax.scan(newton, s, None, length=40)
    return s


def tethered_mean_scale(cfg: Config) -> jax.Array:
    """c, the class means of the minimiser's features being c·u_k:
    c = (g + Nλ_H m)/(g² + Nλ_H), from ``tethered_features`` with W = g Uᵀ."""
    g = tethered_classifier_scale(cfg)
    a = cfg.num_samples * cfg.lambda_h
    return (g + a * cfg.input_scale) / (g**2 + a)


def tethered_nc1(cfg: Config) -> jax.Array:
    """NC1 of the minimiser's features: (K−1) σ² κ² / c², κ = Nλ_H/(g² + Nλ_H) the
    contraction of the noise, c from ``tethered_mean_scale`` (our derivation)."""
    g = tethered_classifier_scale(cfg)
    a = cfg.num_samples * cfg.lambda_h
    kappa = a / (g**2 + a)
    c = tethered_mean_scale(cfg)
    return (cfg.num_classes - 1) * cfg.input_noise**2 * kappa**2 / c**2


def tethered_input_nc1(cfg: Config) -> jax.Array:
    """NC1 of the inputs X: (K−1) σ²/m² (Σ_W = σ² I, Σ_B = m²/K · centred projector)."""
    return (cfg.num_classes - 1) * cfg.input_noise**2 / cfg.input_scale**2


def _tethered_prediction(cfg: Config) -> dict[str, jax.Array]:
    dtype = _dtype(cfg)
    K = cfg.num_classes
    g = tethered_classifier_scale(cfg)
    c = tethered_mean_scale(cfg)
    # A representative in the basis U (every metric below is rotation invariant).
    W = g * jnp.eye(K, dtype=dtype)
    means = c * jnp.eye(K, dtype=dtype)
    labels = jnp.asarray(cfg.labels)
    centred = means - means.mean(axis=0)[None, :]
    return {
        "loss": K * _tether_objective(g, cfg),
        "grad_norm": jnp.zeros((), dtype),
        "nc1": tethered_nc1(cfg),
        "nc1_input": tethered_input_nc1(cfg),
        "w_norm": jnp.full((K,), g, dtype),
        "h_norm": jnp.full((K,), jnp.abs(c), dtype),
        "class_logits": means @ W.T,
        "nc2_h": M.nc2_etf_distance(centred),
        "nc2_w": M.nc2_etf_distance(W),
        "equinorm_w": M.equinorm(W),
        "equiangular_w": M.equiangularity(W),
        "nc3": M.nc3_self_duality(W, means[labels], labels, K),
    }


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
    if cfg.tether:
        return _tethered_prediction(cfg)
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
    if cfg.mixup:
        out["w_spectrum"] = jnp.sort(jnp.linalg.svd(W, compute_uv=False))[::-1]
        out["interpolation_error"] = zero
    out.update(_geometry(cfg))
    return out
