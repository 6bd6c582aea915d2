"""What the linear BYOL/SimSiam theory says about SSL on the digit images
(models/digits_ssl): which eigenmodes survive weight decay, and the collapsed limit
without a stop-gradient.

Per-mode weight-decay threshold (our extension of Tian, Chen, Ganguli 2021, arXiv
2102.06810, Sec. 4.2, to non-isotropic data; theory/digits_ssl.md). With data
second moment ``X`` (of the views' conditional means) and augmentation covariance
``X'``, and the eigenbases of ``W``, ``W_p``, ``X`` and ``X'`` aligned, mode ``j`` of
the Euclidean-loss linear model obeys

  ṗ = w (x_j a − (x_j + x'_j) p w) − η p,   ẇ = p (x_j a − (x_j + x'_j) p w) − η w,

so a non-zero fixed point needs ``p (x_j − (x_j + x'_j) p) = η``: it exists iff
``η ≤ η*_j = x_j² / (4 (x_j + x'_j))`` (for ``x = 1``, ``x' = σ²`` this is the paper's
``1/(4(1+σ²))``), where the predictor eigenvalue is
``p₊ = (x + √(x² − 4η(x + x'))) / (2(x + x'))``, the mode strength ``w² = p₊²`` (the
invariant ``w² − p²`` decays as ``e^{−2ηt}``) and the embedding variance ``p₊² x_j``.

Where this holds only roughly: the network's bases are not aligned at initialisation
(flax default init), SGD uses minibatches and momentum, the fixed point must also be
reached (its basin depends on the initial ``p``), and with random shifts ``X'`` is not
diagonal in ``X``'s eigenbasis (its diagonal part is used). With ``max_shift = 0`` the
views are ``x + σε − μ`` and ``X = Cov(x)``, ``X' = σ² I`` exactly.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from collapse_jax import datasets
from collapse_jax.models.digits_ssl import Config

__all__ = [
    "augmentation_moments",
    "collapsed_limit",
    "fixed_point_spectrum",
    "mode_threshold",
    "mode_thresholds",
    "predict",
    "surviving_modes",
]


@functools.cache
def _moments(max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, X'_shift) ``[64, 64]`` by exact enumeration of the (2s+1)² shifts."""
    x = datasets.digits(np.float64).x
    n, side = x.shape[0], x.shape[1]
    s = max_shift
    padded = np.pad(x, ((0, 0), (s, s), (s, s)))
    views = np.stack(
        [
            padded[:, i : i + side, j : j + side].reshape(n, -1)
            for i in range(2 * s + 1)
            for j in range(2 * s + 1)
        ]
    )  # [shifts, N, 64]
    pixel_mean = x.reshape(n, -1).mean(axis=0)
    cond_mean = views.mean(axis=0) - pixel_mean  # E[view | x] (noise has mean 0)
    X = cond_mean.T @ cond_mean / n
    dev = views - views.mean(axis=0, keepdims=True)
    X_shift = np.einsum("sni,snj->ij", dev, dev) / (n * views.shape[0])
    return X, X_shift


def augmentation_moments(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """``X = E[m mᵀ]`` with ``m = E[view | x]`` and ``X' = E Cov[view | x]``, both
    ``[64, 64]``, exact for the model's shift-and-noise views (noise adds σ² I)."""
    X, X_shift = _moments(cfg.max_shift)
    noise = float(np.asarray(cfg.noise))
    return X.copy(), X_shift + noise**2 * np.eye(X.shape[0])


def mode_threshold(x, xp):
    """``η* = x² / (4(x + x'))``: the largest weight decay at which a mode of data
    variance ``x`` and augmentation variance ``x'`` has a non-zero fixed point (our
    per-mode form of Tian, Chen, Ganguli 2021, arXiv 2102.06810, Sec. 4.2; ``x = 1``,
    ``x' = σ²`` is their ``1/(4(1+σ²))``). Any broadcastable arrays."""
    return x**2 / (4 * (x + xp))


def mode_thresholds(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, x', η*)`` per eigenmode of ``X``, ``[64]`` each, decreasing ``x``:
    ``η*_j = x_j² / (4(x_j + x'_j))`` (our per-mode form of Tian, Chen, Ganguli 2021,
    arXiv 2102.06810, Sec. 4.2; ``x'_j = u_jᵀ X' u_j``)."""
    X, Xp = augmentation_moments(cfg)
    x, u = np.linalg.eigh(X)
    order = np.argsort(-x)
    x, u = np.maximum(x[order], 0.0), u[:, order]
    xp = np.einsum("ij,ik,kj->j", u, Xp, u)
    return x, xp, mode_threshold(x, xp)


def _check_linear(cfg: Config) -> None:
    if not (
        cfg.hidden == 0
        and cfg.loss == "euclidean"
        and cfg.predictor
        and cfg.stop_gradient
        and cfg.target == "online"
    ):
        raise ValueError(
            "the eigenmode theory needs the linear model of Tian et al.: hidden=0, "
            "loss='euclidean', predictor=True, stop_gradient=True, target='online' "
            f"(got hidden={cfg.hidden}, loss={cfg.loss!r}, predictor={cfg.predictor}, "
            f"stop_gradient={cfg.stop_gradient}, target={cfg.target!r})"
        )


def surviving_modes(cfg: Config) -> int:
    """``min(k, #{j : η < η*_j})``: eigenmodes with a non-zero fixed point."""
    _check_linear(cfg)
    eta = float(np.asarray(cfg.weight_decay))
    return int(min(cfg.embed_dim, np.sum(mode_thresholds(cfg)[2] > eta)))


def fixed_point_spectrum(cfg: Config) -> np.ndarray:
    """Normalised embedding-covariance eigenvalues ``[k]`` at the stable fixed point.

    Mode j contributes ``p₊,j² x_j`` if it survives (the k surviving modes of largest
    ``x``), 0 otherwise; all zeros when none survives. Needs weight_decay > 0 (at
    η = 0 the fixed points form a continuum set by the initialisation).
    """
    _check_linear(cfg)
    eta = float(np.asarray(cfg.weight_decay))
    if eta <= 0:
        raise ValueError("fixed_point_spectrum: needs weight_decay > 0")
    x, xp, _ = mode_thresholds(cfg)
    disc = x**2 - 4 * eta * (x + xp)
    alive = disc > 0
    p = np.where(alive, (x + np.sqrt(np.maximum(disc, 0))) / (2 * (x + xp)), 0.0)
    var = np.where(alive, p**2 * x, 0.0)[: cfg.embed_dim]
    total = var.sum()
    return var / total if total > 0 else var


def collapsed_limit(cfg: Config) -> dict[str, float]:
    """Complete collapse: every image maps to one embedding. Then ``output_std = 0``
    and the loss takes its global minimum, −1 for the cosine loss and 0 for the
    Euclidean one — the state SimSiam reaches without a stop-gradient (Chen & He
    2021, arXiv 2011.10566, Sec. 4.1, Fig. 2)."""
    return {"output_std": 0.0, "loss": -1.0 if cfg.loss == "cosine" else 0.0}


def predict(cfg: Config, t=None) -> dict[str, jnp.ndarray]:
    """Limits (no time axis) at the end of a run; ``t`` is ignored (the same with
    ``t=None``).

    Without a stop-gradient: ``output_std`` and ``loss`` of complete collapse (a
    derived limit). For the linear Euclidean model with weight decay: the fixed-point
    ``spectrum`` ([k]) — an approximation (see the module docstring).
    """
    del t
    if not cfg.stop_gradient:
        return {k: jnp.asarray(v) for k, v in collapsed_limit(cfg).items()}
    return {"spectrum": jnp.asarray(fixed_point_spectrum(cfg))}
