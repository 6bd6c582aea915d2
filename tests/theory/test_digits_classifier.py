"""digits_classifier theory: the last-layer statements derived in
theory/digits_classifier.md.

- the span bound holds at every record of a real training run (it is an inequality
  valid at any state, so a violation means a wrong metric or a wrong derivation);
- NC4 ≤ training error + nearest-class-mean error at every record;
- the collapsed norm ratio: at ETF class means, W = a M̃ with a from
  ``collapsed_norm_ratio`` makes the last layer's gradient vanish (ce and mse), i.e.
  it is the stationary classifier of collapsed features.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import digits_classifier as dc
from collapse_jax.theory import digits_classifier as theory

# The model test's config and run length: both files are one xdist group, so they run
# in one process and this run reuses the engine programs compiled there.
pytestmark = pytest.mark.xdist_group("digits_classifier")
CFG = dc.Config(widths=(32,), per_class=10, batch_size=50, lr=0.1)


@pytest.fixture(scope="module")
def run():
    return cj.simulate(dc, CFG, seeds=2, steps=90, every=30)


def test_classifier_outside_class_mean_span_stays_below_stationarity_bound(run):
    bound = theory.span_residual_bound(
        CFG, *(run[k] for k in ("grad_w_norm", "grad_b_norm", "global_mean_norm",
                                "residual_rms", "within_trace", "w_fro")),
    )  # fmt: skip
    # float32 metrics: relative rounding ~1e-6 on both sides of the inequality
    assert np.all(run["w_outside_means"] <= np.asarray(bound) * (1 + 1e-5)), (
        run["w_outside_means"],
        bound,
    )


def test_nc4_stays_below_training_plus_nearest_mean_error(run):
    bound = theory.nc4_bound(run["train_error"], run["ncc_error"])
    assert np.all(run["nc4"] <= np.asarray(bound) + 1e-6)


def _last_layer_grad(W, b, means, lam, loss):
    """Gradient in (W, b) of mean_k ℓ(W μ_k + b, k) + λ/2‖W‖² (collapsed features)."""
    K = means.shape[0]

    def f(W, b):
        z = means @ W.T + b[None, :]
        if loss == "ce":
            fit = -jnp.mean(jnp.diag(jax.nn.log_softmax(z, axis=1)))
        else:
            fit = 0.5 * jnp.mean(jnp.sum((z - jnp.eye(K)) ** 2, axis=1))
        return fit + lam / 2 * jnp.sum(W**2)

    return jax.grad(f, argnums=(0, 1))(W, b)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("lam, r", [(5e-3, 2.0), (5e-2, 0.7)])
def test_collapsed_norm_ratio_makes_the_last_layer_stationary(loss, lam, r):
    cfg = dc.Config(loss=loss, weight_decay=lam, dtype="float64")
    K = cfg.num_classes
    # ETF class means with norm r in R^K (offset by a global mean: the free bias
    # absorbs it), classes balanced

    means = (
        jnp.linalg.qr(jnp.eye(K) - 1.0 / K)[0][:, : K - 1] * r * np.sqrt(K / (K - 1))
    )
    means = means + 0.3
    centred = means - means.mean(axis=0)[None, :]
    gap_per_a = r**2 * K / (K - 1)  # z_y − z_k at W = a M̃

    def residual_of(a):  # −∂ℓ/∂z_y at W = a M̃ (b = 1/K − a⟨m̃, μ_G⟩ for mse)
        if loss == "ce":
            return 1.0 - 1.0 / (1.0 + (K - 1) * jnp.exp(-a * gap_per_a))
        return 1.0 - 1.0 / K - a * r**2

    lo, hi = 0.0, 1.0 / lam  # a − ratio(residual(a)) is increasing in a
    for _ in range(200):
        mid = (lo + hi) / 2
        too_big = mid > theory.collapsed_norm_ratio(cfg, residual_of(mid))
        lo, hi = (lo, mid) if too_big else (mid, hi)
    a = (lo + hi) / 2
    W = a * centred
    offset = centred @ means.mean(axis=0)  # ⟨m̃_j, μ_G⟩, cancelled by the bias
    b = -a * offset + (1.0 / K if loss == "mse" else 0.0)
    gW, gb = _last_layer_grad(W, b, means, lam, loss)
    # bisection to float64 resolution: the residual gradient is rounding, ~1e-15
    assert float(jnp.linalg.norm(gW)) < 1e-12 * max(1.0, float(jnp.linalg.norm(W)))
    assert float(jnp.linalg.norm(gb)) < 1e-12
