"""Deep linear network vs Saxe et al. 2014 (arXiv 1312.6120) mode dynamics.

GD with learning rate η is an Euler discretisation of the gradient flow the theory
describes, so simulation and theory differ by O(η). The allowance used below is derived,
not fitted: ``gd_first_order_error`` is the leading-order term −(η/2) u̇ ln(ȧ/ȧ₀) of that
gap (theory/deep_linear.md); the tolerance is 1.5× its maximum over time, the extra half
covering the O(η²) remainder, which ``test_gd_gap_is_first_order_and_its_leading_term_is_exact``
shows shrinks 4× per halving of η.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import compare, simulate
from collapse_jax.models import deep_linear as m
from collapse_jax.theory import deep_linear as th

SMALL = dict(in_dim=3, hidden=6, out_dim=3, singular_values=(3.0, 2.0, 1.0))
# Every run records 50 times per compiled chunk, so runs of one static config (depth,
# sizes, singular values) share both engine programs whatever their lr and length.
RECORDS = 50


@functools.cache
def _theory_at(name: str, steps: tuple):
    """``th.<name>(cfg, steps)`` jitted at fixed steps (the RK4 length is static): one
    compile per config and run length instead of one per primitive on every call."""
    fn, t = getattr(th, name), np.asarray(steps)
    return jax.jit(lambda cfg: fn(cfg, t))


def _modes(cfg, steps):
    return _theory_at("predict", tuple(int(k) for k in steps))(cfg)["modes"]


def _first_order(cfg, steps):
    return _theory_at("gd_first_order_error", tuple(int(k) for k in steps))(cfg)


def _balanced(depth, lr, **kw):
    scale = 0.05 if depth == 2 else 0.3
    return m.Config(
        depth=depth, lr=lr, init_scale=scale, dtype="float64", **{**SMALL, **kw}
    )


def test_two_layer_closed_form_equals_rk4_of_the_mode_ode():
    s = jnp.array([3.0, 2.0, 1.0])
    lam = jnp.array([1.0, 0.5, 2.0])
    u0 = jnp.full(3, 1e-3)
    steps = np.arange(0, 801, 50)
    lr = 0.01
    rk4 = th.mode_strength_depth(steps, s, lam, u0, 2, lr)
    exact = th.mode_strength_two_layer(
        lr * steps[:, None], s[None, :], lam[None, :], u0[None, :]
    )
    # RK4 with h = lr/8: global error O(h⁴) ≈ 1e-11 here; 1e-8 relative leaves margin.
    np.testing.assert_allclose(rk4, exact, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "depth, kw",
    [(2, {}), (3, {}), (4, {}), (2, {"input_eigs": (1.5, 0.5, 2.0)})],
)
def test_balanced_gd_follows_the_mode_flow_within_the_first_order_bound(depth, kw):
    lr = 0.01
    cfg = _balanced(depth, lr, **kw)
    steps = 1000 if depth == 2 else 1200
    traj = simulate(m, cfg, seeds=2, steps=steps, every=steps // RECORDS)
    bound = 1.5 * float(np.max(np.abs(_first_order(cfg, traj.steps))))
    agreement = compare(traj, {"modes": _modes(cfg, traj.steps)}, z=4, atol=bound)
    assert agreement.passed, agreement.table()
    # the leading term is not vacuous: the measured gap is at least half of it
    assert agreement["modes"].max_abs_error > bound / 3


def test_gd_gap_is_first_order_and_its_leading_term_is_exact():
    errors, remainders = [], []
    for lr in (0.02, 0.01, 0.005):
        cfg = _balanced(3, lr)
        steps = int(10 / lr)
        traj = simulate(m, cfg, seeds=1, steps=steps, every=steps // RECORDS)
        gap = traj.mean("modes") - np.asarray(_modes(cfg, traj.steps))
        e1 = np.asarray(_first_order(cfg, traj.steps))
        errors.append(np.max(np.abs(gap)))
        remainders.append(np.max(np.abs(gap - e1)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    rem_ratios = np.array(remainders[:-1]) / np.array(remainders[1:])
    # order 1 in η (ratio 2 per halving) and an O(η²) remainder (ratio 4)
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)
    np.testing.assert_allclose(rem_ratios, 4.0, rtol=0.15)


def test_random_init_seed_mean_follows_theory_within_4se_plus_discretisation():
    # 200 seeds, z = 4; atol = 1.5 × the first-order GD-vs-flow term (module docstring)
    cfg = m.Config(
        depth=2,
        in_dim=4,
        hidden=32,
        out_dim=4,
        init="random",
        init_scale=0.01,
        lr=0.005,
        dtype="float64",
    )
    traj = simulate(m, cfg, seeds=200, steps=1200, every=20)
    bound = 1.5 * float(np.max(np.abs(_first_order(cfg, traj.steps))))
    agreement = compare(traj, {"modes": _modes(cfg, traj.steps)}, z=4, atol=bound)
    assert agreement.passed, agreement.table()


def test_half_learning_times_match_saxe_formula_fastest_mode_first():
    lr = 0.002
    # SMALL's singular values: the depth-2 config of the test above, so both engine
    # programs are reused (chunks of RECORDS records; chunking never changes results).
    cfg = _balanced(2, lr)
    traj = simulate(m, cfg, seeds=1, steps=5000, every=5, chunk=5 * RECORDS)
    u = traj.mean("modes")
    s = np.asarray(cfg.singular_values)
    t = lr * traj.steps
    measured = np.array([np.interp(si / 2, u[:, a], t) for a, si in enumerate(s)])
    theory = np.asarray(th.learning_time_two_layer(s, 1.0, cfg.init_scale**2, s / 2))
    # GD grows a mode by (1 + ηs)² per step instead of e^{2ηs}: a relative time
    # dilation ηs/2 to first order; allow ηs (twice that) per mode.
    np.testing.assert_allclose(measured, theory, rtol=lr * s.max())
    # stage-like learning: modes are learned in order of singular value, the time
    # scale being 1/s up to the slowly varying factor ½ ln(s/u₀ − 1)
    assert np.all(np.diff(measured) > 0)
    np.testing.assert_allclose(theory * s, 0.5 * np.log(s / cfg.init_scale**2 - 1))


def test_random_init_prediction_refuses_depth_three():
    cfg = m.Config(depth=3, init="random", **SMALL)
    with pytest.raises(ValueError, match="depth"):
        th.predict(cfg, np.arange(3))
