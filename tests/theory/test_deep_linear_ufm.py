"""Deep linear UFM at convergence vs the closed-form MSE minimiser (Dang et al. 2023,
arXiv 2301.00437; scalar reduction in theory/deep_linear_ufm.md)."""

import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import compare, simulate
from collapse_jax.models import deep_linear_ufm as m
from collapse_jax.theory import deep_linear_ufm as th

# float64, lr 0.3, λ = 1e-2: after 5000 GD steps the gradient norm is ~1e-8 and the
# iterate is within ~1e-10 of its limit (measured when choosing the run length); the
# stated atol 1e-6 is that convergence floor with margin, the seeds add no SE because
# every seed reaches the same minimiser up to rotation (z = 4 over 2 seeds).
# init_scale = 1: with three or more factors x = 0 is a local minimum of every mode's
# scalar problem, and GD from a small init can leave a mode stuck there (seen with
# init_scale = 0.5, dim = 6); from init_scale = 1 all 8 seeds tried reached the global
# minimiser in each case below (lr 0.5 instead diverged on some seeds with a bias) (theory/deep_linear_ufm.md, "Optimisation").
RUN = dict(dtype="float64", lr=0.3, lambda_w=1e-2, lambda_h=1e-2, init_scale=1.0)
ATOL = 1e-6


@pytest.mark.parametrize(
    "depth, per_class, bias",
    [
        (2, 5, False),  # balanced: orthogonal frame, equal norms
        (3, (8, 5, 3, 2), False),  # imbalanced: general orthogonal frame
        (3, 5, True),  # balanced with bias: simplex ETF
        (2, (8, 5, 3, 2), True),  # imbalanced with bias
    ],
)
def test_gd_converges_to_the_closed_form_minimiser(depth, per_class, bias):
    cfg = m.Config(
        num_classes=4, dim=6, depth=depth, per_class=per_class, bias=bias, **RUN
    )
    traj = simulate(m, cfg, seeds=2, steps=5000, every=5000)
    agreement = compare(traj, th.predict(cfg), z=4, atol=ATOL, at="final")
    assert agreement.passed, agreement.table()


def test_minority_class_below_threshold_collapses_at_depth_three():
    cfg = m.Config(num_classes=4, dim=6, depth=3, per_class=(20, 20, 20, 1), **RUN)
    c = cfg.num_samples * 1e-2  # N·μ with every λ = 1e-2
    # n = 1 lies below the existence threshold (no non-zero stationary point), so the
    # collapse is the only limit GD can reach, and n = 20 lies above the collapse one.
    assert 1.0 < float(th.existence_threshold(c, 4)) ** 2
    assert 20.0 > float(th.collapse_threshold(c, 4)) ** 2
    pred = th.predict(cfg)
    assert float(pred["w_norm"][3]) == 0.0 and float(pred["w_norm"][0]) > 0.1
    traj = simulate(m, cfg, seeds=2, steps=5000, every=5000)
    agreement = compare(
        traj,
        {k: pred[k] for k in ("w_norm", "mean_norm", "sv")},
        z=4,
        atol=ATOL,
        at="final",
    )
    assert agreement.passed, agreement.table()


@pytest.mark.parametrize("m_factors", [2, 3, 4, 6])
def test_scalar_solution_is_the_global_minimiser_on_a_grid(m_factors):
    c = 0.4
    s = jnp.linspace(0.05, 3.0, 40)
    x = np.asarray(th.optimal_singular_value(s, c, m_factors))
    grid = np.linspace(0.0, 3.5, 70001)
    h = (grid[None, :] - np.asarray(s)[:, None]) ** 2 / 2 + m_factors / 2 * c * grid[
        None, :
    ] ** (2 / m_factors)
    best = grid[np.argmin(h, axis=1)]
    # grid spacing 5e-5; away from the collapse jump the argmin is within a few cells
    far = np.abs(np.asarray(s) - float(th.collapse_threshold(c, m_factors))) > 0.02
    np.testing.assert_allclose(x[far], best[far], atol=2e-4)


@pytest.mark.parametrize("m_factors", [3, 4, 5])
def test_zero_and_positive_root_tie_at_the_collapse_threshold(m_factors):
    c = 0.7
    s_c = float(th.collapse_threshold(c, m_factors))
    x = float(th.optimal_singular_value(jnp.asarray(s_c + 1e-12), c, m_factors))

    def h(v):
        return (v - s_c) ** 2 / 2 + m_factors / 2 * c * v ** (2 / m_factors)

    assert x > 0
    np.testing.assert_allclose(h(x), h(0.0), rtol=1e-9)  # bisection to float64 eps


def test_one_layer_reduces_to_soft_thresholding():
    cfg = m.Config(
        depth=1, per_class=(6, 3, 2, 1), dtype="float64", lambda_w=2e-3, lambda_h=8e-3
    )
    N = cfg.num_samples
    expected = np.maximum(np.sqrt([6, 3, 2, 1]) - N * np.sqrt(2e-3 * 8e-3), 0.0)
    np.testing.assert_allclose(th.predict(cfg)["sv"], expected, rtol=1e-12)


def test_cross_entropy_has_no_closed_form_here():
    with pytest.raises(ValueError, match="loss"):
        th.predict(m.Config(loss="ce"))
