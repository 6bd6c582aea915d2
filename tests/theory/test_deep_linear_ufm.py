"""Deep linear UFM at convergence vs the closed-form MSE minimiser (Dang et al. 2023,
arXiv 2301.00437; scalar reduction in theory/deep_linear_ufm.md)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import compare, simulate
from collapse_jax.models import deep_linear_ufm as m
from collapse_jax.theory import deep_linear_ufm as th

# float64, lr 0.3, λ = 1e-2, 5000 GD steps: the gradient norm ends ~1e-8 and a seed at
# the global minimiser matches the closed form to ~1e-12 (1e-7 with a bias, where the
# mean of H decays only at rate lr·λ_H); atol 1e-6 is that convergence floor with margin.
# The limit is deterministic, so z = 0: every compared seed must match on its own.
# With three or more factors x = 0 is a local minimum of every mode's scalar problem and
# a seed whose mode starts anti-aligned can stall there (1 of 12 seeds for the minority
# configuration below; theory/deep_linear_ufm.md, "Optimisation"). So the tests check
# the global-minimiser claim in two falsifiable parts: no seed ends below the predicted
# minimum value, and the seeds that reach it (at least one of four) have the predicted
# geometry. init_scale = 1 keeps the stalls rare.
RUN = dict(dtype="float64", lr=0.3, lambda_w=1e-2, lambda_h=1e-2, init_scale=1.0)
ATOL = 1e-6
LOSS_ATOL = 1e-9  # loss gap at the end of the run: ~1e-13 measured
SEEDS = 4


def _check_global_minimiser(cfg, keys=None):
    pred = th.predict(cfg)
    # One block of the four seeds: the default block of a model this small is 64 runs,
    # 60 of them padding. The block size changes the last bits only.
    traj = simulate(m, cfg, seeds=SEEDS, steps=5000, every=5000, block_size=SEEDS)
    gap = traj.final("loss") - float(pred["loss"])
    assert np.all(gap > -LOSS_ATOL), f"a seed went below the predicted minimum: {gap}"
    at_min = np.flatnonzero(gap < LOSS_ATOL)
    assert at_min.size >= 1, f"no seed reached the predicted minimum value: {gap}"
    reached = dataclasses.replace(
        traj,
        seeds=traj.seeds[at_min],
        metrics={k: v[at_min] for k, v in traj.metrics.items()},
    )
    keys = keys or [k for k in pred if k != "loss"]
    agreement = compare(reached, {k: pred[k] for k in keys}, z=0, atol=ATOL, at="final")
    assert agreement.passed, agreement.table()
    return pred


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
    _check_global_minimiser(cfg)


def test_minority_class_below_threshold_collapses_at_depth_three():
    cfg = m.Config(num_classes=4, dim=6, depth=3, per_class=(20, 20, 20, 1), **RUN)
    c = cfg.num_samples * 1e-2  # N·μ with every λ = 1e-2
    # n = 1 lies below the existence threshold (no non-zero stationary point), so the
    # collapse is the only limit GD can reach, and n = 20 lies above the collapse one.
    assert 1.0 < float(th.existence_threshold(c, 4)) ** 2
    assert 20.0 > float(th.collapse_threshold(c, 4)) ** 2
    pred = _check_global_minimiser(cfg, ["w_norm", "mean_norm", "sv"])
    assert float(pred["w_norm"][3]) == 0.0 and float(pred["w_norm"][0]) > 0.1


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
