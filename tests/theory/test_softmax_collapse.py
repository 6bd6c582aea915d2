"""softmax_collapse bit-level theory (setting of Prieto et al. 2025, arXiv 2501.04697)
vs computation in the dtype and vs simulation.

Thresholds: the exact collapse gap is found by computing the model's logit gradient
on every representable gap near it, in the dtype, and compared with the formula to
one ulp. Collapse steps: the aligned two-class toy is deterministic (the seeds only
draw noise orthogonal to the class means, which the logits never see, so SE = 0); the
tolerance is the stated discretisation/rounding bound ``collapse_step_tolerance``.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import softmax_collapse as m
from collapse_jax.theory import softmax_collapse as th

DTYPES = ["bfloat16", "float16", "float32", "float64"]
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _neighbours(value, dtype, below, above):
    """The representable positive ``dtype`` numbers from ``below`` steps under
    ``value`` (rounded into the dtype) to ``above`` steps over it, ascending."""
    x = np.asarray(value, dtype=jnp.dtype(dtype))
    bits = x.view(_UINT[x.itemsize])
    span = np.arange(-below, above + 1).astype(np.int64)
    return (bits.astype(np.int64) + span).astype(bits.dtype).view(x.dtype)


def _ulp(value, dtype):
    a, b = _neighbours(value, dtype, 0, 1).astype(np.float64)
    return b - a


@jax.jit
def _correct_grad_zero(z, cfg):
    """``[N]``: whether each row's own correct-class (label 0) gradient is exactly 0."""
    one = jax.vmap(lambda zi: m.logit_grad(zi[None], jnp.zeros(1, jnp.int32), cfg))
    return one(z)[:, 0, 0] == 0


def _first_collapsing(values, logits_of, cfg):
    """Smallest of ascending ``values`` whose logits collapse; asserts monotonicity."""
    zero = np.asarray(_correct_grad_zero(logits_of(values), cfg))
    assert zero.any() and not zero.all(), "window does not straddle the threshold"
    first = int(np.argmax(zero))
    assert zero[first:].all(), "collapse is not monotone in the gap"
    return np.float64(values[first])


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_class_softmax_collapses_at_p_ln2_to_one_ulp(dtype):
    cfg = m.Config(dtype=dtype, param_dtype="float64")
    g_star = th.softmax_threshold(dtype)
    gaps = _neighbours(g_star, dtype, 40, 40)
    found = _first_collapsing(gaps, lambda G: jnp.stack([0 * G, -G], -1), cfg)
    # the smallest representable gap at or above the formula (exp's last-bit error
    # moves the threshold by ~2^{-p} ≪ ulp(g*) = 2^{⌊log2 g*⌋+1-p})
    assert 0 <= found - g_star <= _ulp(g_star, dtype), (found, g_star)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stablemax_collapse_gap_is_exponential_in_the_bits(dtype):
    cfg = m.Config(dtype=dtype, param_dtype="float64", loss="stablemax")
    lo, hi = (g / 2 for g in th.stablemax_threshold_bracket(dtype))  # logits ±g/2

    def zero(zs):
        return np.asarray(_correct_grad_zero(jnp.stack([zs, -zs], -1), cfg))

    below_lo = _neighbours(lo, dtype, 400, 0)[:-1]
    assert not zero(below_lo).any()  # reciprocals still differ: never zero
    around_hi = _neighbours(hi, dtype, 400, 400)
    z0 = zero(around_hi)
    assert z0[400:].all() and not z0[399]  # from 2^{⌈p/2⌉} − 1 on: the sum absorbs
    p = th.significand_bits(dtype)
    assert hi == 2 ** math.ceil(p / 2) - 1  # exact, and representable
    # exponential vs linear in the bits: 7–15 vs 5.5 (bfloat16) … 1e8 vs 36.7
    assert 2 * lo > 2 ** (p / 2 - 1) > th.softmax_threshold(dtype) or p == 8


def _sequential_sum_collapses(G, C, correct_first):
    """float32 ``((a₀ + a₁) + a₂) + …`` of ``(1, e, …, e)`` in the given order, for
    an array of gaps ``G``."""
    e = np.exp(-np.asarray(G, np.float64)).astype(np.float32)
    one = np.ones_like(e)
    terms = [one] + [e] * (C - 1)
    total = np.zeros_like(e)
    for a in terms if correct_first else terms[::-1]:
        total = (total + a).astype(np.float32)
    return total == one


def test_c_class_threshold_is_bracketed_and_summation_order_picks_the_end():
    C, dtype = 5, "float32"
    lo, hi = th.softmax_threshold_bracket(dtype, C)
    gaps = _neighbours(lo, dtype, 64, int(1.2 * (hi - lo) / _ulp(lo, dtype)))
    ends = {}
    for first in (True, False):
        zero = _sequential_sum_collapses(gaps, C, first)
        ends[first] = np.float64(gaps[int(np.argmax(zero))])
    assert 0 <= ends[True] - lo <= _ulp(lo, dtype)  # the leading 1 absorbs each term
    assert abs(ends[False] - hi) <= 2 * _ulp(hi, dtype)  # tiny terms summed first
    # The model's own sum lands in the bracket whichever slot the correct class has.
    cfg = m.Config(num_classes=C, dim=C, dtype=dtype, param_dtype="float64")
    for slot in (0, C - 1):
        z = jnp.repeat(-jnp.asarray(gaps)[:, None], C, axis=1).at[:, slot].set(0.0)
        zero = np.asarray(_correct_grad_zero_at(z, slot, cfg))
        found = np.float64(gaps[int(np.argmax(zero))])
        assert zero[int(np.argmax(zero)) :].all()
        assert lo - _ulp(lo, dtype) <= found <= hi + 2 * _ulp(hi, dtype), (slot, found)


@jax.jit
def _correct_grad_zero_at(z, slot, cfg):
    """``[N]``: whether row ``i``'s gradient at its correct class ``slot`` is 0."""
    label = jnp.full((1,), slot, jnp.int32)
    g = jax.vmap(lambda zi: m.logit_grad(zi[None], label, cfg))(z)[:, 0]
    return (
        jnp.take_along_axis(g, label[None, :].repeat(z.shape[0], 0), axis=1)[:, 0] == 0
    )


# Aligned two-class toy per working dtype: (lr, init_gap, steps); κ = lr·m², m = 1.
RUNS = {
    "bfloat16": (1.0, 2.0, 300),
    "float16": (4.0, 3.0, 600),
    "float32": (16384.0, 12.5, 1000),
}


@functools.cache
def _collapse_run(dtype):
    """One simulation per dtype, shared by the tests that read it."""
    lr, g0, steps = RUNS[dtype]
    cfg = m.Config(dtype=dtype, param_dtype="float64", lr=lr, init_gap=g0)
    return cfg, cj.simulate(m, cfg, steps=steps, every=1, seeds=2)


# float32 in the fast set; the 16-bit dtypes (one more compile each) are slow-marked.
@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param("bfloat16", marks=pytest.mark.slow),
        pytest.param("float16", marks=pytest.mark.slow),
        "float32",
    ],
)
def test_collapse_step_matches_the_quantised_gap_flow(dtype):
    cfg, tr = _collapse_run(dtype)
    collapsed = tr["collapsed"]
    assert np.all(np.isin(collapsed, (0.0, 1.0)))  # all samples collapse together
    first = tr.steps[np.argmax(collapsed > 0, axis=1)]
    t_star, tol = float(th.collapse_step(cfg)), float(th.collapse_step_tolerance(cfg))
    assert np.all(collapsed[:, -1] == 1)
    assert np.all(np.abs(first - t_star) <= tol), (first, t_star, tol)
    # The gap before SC: the step bound moves the curve by at most its slope × tol;
    # the metric is read in the working dtype (one ulp of g*).
    pred = th.predict(cfg, tr.steps)
    atol = {"gap_mean": th.gap_tolerance(cfg, tr.steps)}
    agreement = cj.compare(tr, pred, z=4, atol=atol, at="trajectory")
    assert agreement.passed, agreement.table()


def test_float64_never_collapses_where_float32_does():
    cfg32, tr32 = _collapse_run("float32")
    cfg = cfg32.replace(dtype="float64")
    tr = cj.simulate(m, cfg, steps=1000, every=10, seeds=2)
    assert tr32["collapsed"][:, -1].min() == 1 and tr["collapsed"].max() == 0
    # its predicted collapse step is e^{(53−24) ln 2} ≈ 5e8 times later
    ratio = float(th.collapse_step(cfg)) / float(th.collapse_step(cfg32))
    assert ratio > 1e8
    atol = {"gap_mean": th.gap_tolerance(cfg, tr.steps)}
    agreement = cj.compare(tr, th.predict(cfg, tr.steps), z=4, atol=atol)
    assert agreement.passed, agreement.table()


@pytest.mark.parametrize(
    "rule, init_gap", [("stablemax", 80.0), ("perp", 12.5)], ids=["stablemax", "perp"]
)
def test_stablemax_and_perp_grad_follow_their_gap_laws_and_do_not_collapse(
    rule, init_gap
):
    # float32, κ = 16384 as in the float32 collapse run (softmax: SC at step ≈ 920).
    # StableMax starts at gap 80 so that a step moves r = 1 + g/2 by < 0.3 %.
    kw = dict(loss="stablemax") if rule == "stablemax" else dict(grad="perp")
    cfg = m.Config(
        dtype="float32", param_dtype="float64", lr=16384.0, init_gap=init_gap, **kw
    )
    every = 1 if rule == "perp" else 10  # ⊥Grad: the norm identity step by step
    tr = cj.simulate(m, cfg, steps=1000, every=every, seeds=2)
    assert tr["collapsed"].max() == 0
    assert float(th.collapse_step(cfg)) > 1e6  # vs ≈ 920 for softmax, plain GD
    pred = th.predict(cfg, tr.steps)
    atol = th.gap_tolerance(cfg, tr.steps)
    agreement = cj.compare(tr, pred, z=4, atol={"gap_mean": atol}, at="trajectory")
    assert agreement.passed, agreement.table()
    if rule == "perp":
        # ⊥Grad norm identity, step by step, where ∇L has a genuine tangential part
        # (init_scale > 0; same compiled program). Bound: float64 rounding of the
        # squared norms over 8 entries, 16·2^-52·‖θ‖². (On the exactly aligned run ∇L
        # is radial but for rounding, and the rescaled residue of its projection
        # keeps a radial part: there the identity holds only to ~1e-8.)
        # (same shapes as above: the compiled programs are reused)
        tr = cj.simulate(m, cfg.replace(init_scale=0.05), steps=1000, every=1, seeds=2)
        n2, g2 = tr["weight_norm"] ** 2, tr["grad_norm"] ** 2
        err = np.abs(np.diff(n2, axis=1) - cfg.lr**2 * g2[:, :-1])
        assert np.all(err <= 16 * 2.0**-52 * n2[:, 1:]), err.max()


@pytest.mark.parametrize(
    "hidden, degree",
    [pytest.param(0, 1, marks=pytest.mark.slow), (6, 2)],
    ids=["linear", "relu"],
)
def test_negative_gradient_has_a_positive_component_along_the_weights(hidden, degree):
    cfg = m.Config(
        num_classes=3,
        dim=6,
        per_class=4,
        hidden=hidden,
        init_scale=1.0,
        init_gap=3.0,
        margin=3.0,
        lr=0.5,
        dtype="float64",
        param_dtype="float64",
    )

    @jax.jit
    def trained(key):  # 200 GD steps: 100 % training accuracy
        s = m.init(key, cfg)
        s = jax.lax.fori_loop(0, 200, lambda _, s: m.step(s, cfg), s)
        grads = jax.grad(m.loss)(s.params, s.x, s.y, cfg)
        return s, m.working_logits(s.params, s.x, cfg), grads, m.observe(s, cfg)["nlm"]

    state, z, grads, nlm = trained(jax.random.PRNGKey(5))
    z = np.asarray(z)
    assert np.all(np.argmax(z, 1) == np.asarray(state.y))
    inner = sum(float(np.vdot(w, g)) for w, g in zip(state.params, grads, strict=True))
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred = float(th.euler_inner_product(z, probs, np.asarray(state.y), degree))
    assert pred < 0 and inner < 0
    np.testing.assert_allclose(inner, pred, rtol=1e-10)  # Euler's identity, float64
    assert float(nlm) > 0


def test_threshold_formulas_are_linear_and_exponential_in_the_bits():
    for dtype in DTYPES:
        p = th.significand_bits(dtype)
        assert math.isclose(th.softmax_threshold(dtype), p * math.log(2), abs_tol=1e-2)
        assert th.stablemax_threshold(dtype) == 2 * (2 ** math.ceil(p / 2) - 1)
