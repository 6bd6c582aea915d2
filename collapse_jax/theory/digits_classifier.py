"""What theory says about a real network's last layer, and what it does not.

A trained network is not an unconstrained features model: its features are tied to
the data through the earlier layers, there is no feature penalty λ_H (weight decay acts
on kernels), and nothing guarantees that NC1 → 0. What does carry over is exact
stationarity of the last layer, which is convex in the classifier given the features.
From it (our derivations, theory/digits_classifier.md):

- ``span_residual_bound``: at any state, the part of W outside the span of the centred
  class means is bounded by the classifier's gradient and the within-class spread;
  both → 0 at a collapsed stationary point, so W lies in the span of the class means
  (the span half of NC3; Papyan, Han & Donoho 2020, arXiv 2008.08186, observed NC3).
- ``nc4_bound``: NC4 ≤ training error + nearest-class-mean training error, both 0 when
  NC1 = 0 and the training set is fitted, so NC4 → 0 there (NC4 of Papyan et al.).
- ``collapsed_norm_ratio``: if moreover the classes are balanced and the class means
  form a simplex ETF (NC1 = NC2 = 0), stationarity fixes the classifier W = a M̃ with
  a = ‖w_k‖/‖μ_k − μ_G‖ = (1 − p̄)/(λ(K − 1)) (ce; 1 − z̄_y for mse), the W-half of the
  KKT conditions of Zhu et al. 2021 (arXiv 2105.02375, Thm 3.1) with the feature
  penalty left out.

The UFM's own predictions at λ_W = λ_H = λ (``ufm_reference``: ETF norms, norm ratio
√(nλ_H/λ_W) = √n, logit gap; the MSE minority-collapse size N²λ_Wλ_H) need the
feature penalty a network does not have; they are reported beside the measurements,
not asserted. This module imports the model's Config (data) but none of its dynamics.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from collapse_jax.models import ufm as ufm_model
from collapse_jax.models.digits_classifier import Config
from collapse_jax.theory import ufm as ufm_theory

__all__ = [
    "collapsed_norm_ratio",
    "nc4_bound",
    "predict",
    "span_residual_bound",
    "ufm_config",
    "ufm_minority_collapse_size",
    "ufm_reference",
]


def predict(cfg: Config, t=None) -> dict:
    """Limits at a collapsed (NC1 = 0), fitted, stationary (∇L = 0) state.

    ``w_outside_means`` and ``nc4`` are 0 there; how far a run is from that limit is
    bounded by ``span_residual_bound`` and ``nc4_bound`` of its measured quantities.
    ``t`` is ignored (limits only). Scalars.
    """
    del t
    zero = jnp.zeros((), jnp.dtype(cfg.dtype))
    return {"w_outside_means": zero, "nc4": zero}


def span_residual_bound(
    cfg: Config, grad_w_norm, grad_b_norm, global_mean_norm, residual_rms,
    within_trace, w_fro,
):  # fmt: skip
    """Upper bound on ``w_outside_means`` = ‖W(I − Π)‖_F/‖W‖_F at any state:

      λ‖W(I − Π)‖_F ≤ ‖∇_W L‖_F + ‖∇_b L‖ ‖μ_G‖ + √(mean_i ‖∂ℓ/∂z_i‖²) √(tr Σ_W),

    Π the projector on the span of the centred class means, λ = weight_decay, b free
    (not decayed). Our derivation (theory/digits_classifier.md); elementwise in the
    measured arrays, ``inf`` where λ = 0.
    """
    lam = cfg.weight_decay
    top = grad_w_norm + grad_b_norm * global_mean_norm
    top = top + residual_rms * jnp.sqrt(within_trace)
    return jnp.where(lam > 0, top / (jnp.where(lam > 0, lam, 1.0) * w_fro), jnp.inf)


def nc4_bound(train_error, ncc_error):
    """NC4 ≤ train error + nearest-class-mean error (a sample counted in NC4 is
    misclassified by the classifier or by the nearest mean, since the two agree when
    both are right). Elementwise."""
    return jnp.minimum(train_error + ncc_error, 1.0)


def collapsed_norm_ratio(cfg: Config, true_residual):
    """a = ‖w_k‖/‖μ_k − μ_G‖ = r̄/(λ(K − 1)) at a stationary point with NC1 = 0, class
    means a simplex ETF and balanced classes, r̄ = −∂ℓ/∂z_y (1 − p_y for ce, 1 − z_y for
    mse, the same for every sample there). Our derivation (theory/digits_classifier.md),
    the classifier half of Zhu et al. 2021 (arXiv 2105.02375) Thm 3.1's KKT system."""
    return true_residual / (cfg.weight_decay * (cfg.num_classes - 1))


def ufm_config(cfg: Config) -> ufm_model.Config:
    """The UFM "for the same λ": λ_W = λ_H = weight_decay, the network's loss and class
    sizes, d = the penultimate width, a free bias (the network's is not decayed)."""
    lam = max(float(np.max(np.asarray(cfg.weight_decay))), 1e-12)
    return ufm_model.Config(
        num_classes=cfg.num_classes,
        dim=cfg.widths[-1],
        per_class=cfg.per_class,
        loss=cfg.loss,
        bias=cfg.loss == "mse" and len(set(cfg.counts)) == 1,
        lambda_w=lam,
        lambda_h=lam,
    )


def ufm_reference(cfg: Config) -> dict:
    """UFM limits at λ_W = λ_H = λ, balanced classes (``ufm_config``): ``w_norm``,
    ``h_norm`` (``[K]``), ``norm_ratio`` = mean ‖w‖/mean ‖h‖ (√n for ce, Zhu et al.
    2021, arXiv 2105.02375, Thm 3.1), ``nc2_w`` and ``nc3`` (0, the ETF); ce adds
    ``logit_gap``. For reference only: the network has no feature penalty."""
    u = ufm_config(cfg)
    pred = ufm_theory.predict(u)
    out = {k: pred[k] for k in ("w_norm", "h_norm", "nc2_w", "nc3") if k in pred}
    out["norm_ratio"] = jnp.mean(pred["w_norm"]) / jnp.mean(pred["h_norm"])
    if "logit_gap" in pred:
        out["logit_gap"] = pred["logit_gap"]
    return out


def ufm_minority_collapse_size(cfg: Config):
    """The UFM-MSE class size at and below which a class's classifier is zero,
    N²λ_Wλ_H with λ_W = λ_H = λ and N the training-set size (Dang et al. 2023,
    arXiv 2301.00437; ``theory.ufm.minority_collapse_size``). No closed form is known
    for ce; reported for reference only."""
    return cfg.num_samples**2 * cfg.weight_decay**2
