"""vector_quantizer theory (theory/vector_quantizer.md) vs simulation: which codes
move, the live-code count at init, the ladder toy (vanilla collapse, SimVQ's uniform
quantiser) and SimVQ's failures at the two ends of the basis scale."""

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import vector_quantizer as m
from collapse_jax.theory import vector_quantizer as th

K = 8
# The ladder toy: 8 codes at 2, 2 + 1/16, ... (right of the data), full-batch SGD on
# the 512-point grid of U[0, 1], evaluated on the same grid.
LADDER = dict(
    num_codes=K,
    codebook_init="ladder",
    init_offset=2.0,
    init_spacing=1 / 16,
    sampling="grid",
    samples=512,
    eval_samples=512,
    lr=0.3,
    dtype="float64",
)
STEPS, EVERY = 2000, 100
SCALES = (1e-4, 0.2, 1.0)  # tiny basis, intermediate, unit basis
# The theory, jitted (record steps are static): called eagerly it would compile each
# of its primitives.
predict = jax.jit(lambda cfg, t: th.predict(cfg, np.asarray(t)), static_argnums=1)
code_gradient = jax.jit(th.code_gradient)
init, step = jax.jit(m.init), jax.jit(m.step)


@pytest.fixture(scope="module")
def ladder_runs():
    # Vanilla at a smaller step, so the recorded trajectory is not yet at its limit.
    # Each call in one block of exactly its runs: a default block would step padding
    # runs along (the block size never changes a run's numbers).
    vanilla = m.Config(quantizer="vanilla", **{**LADDER, "lr": 0.01})
    simvq = m.Config(quantizer="simvq", **LADDER)
    sizes = dict(steps=STEPS, every=EVERY, seeds=1)
    return {
        "vanilla": cj.simulate(m, vanilla, **sizes, block_size=1),
        "simvq": cj.sweep(
            m, simvq, grid={"basis_scale": SCALES}, **sizes, block_size=len(SCALES)
        ),
    }


def test_one_vanilla_step_moves_selected_codes_by_minus_lr_gradient_and_no_other():
    cfg = m.Config(
        num_codes=16,
        init_margin=2.0,
        samples=32,
        sampling="fixed",
        lr=0.1,
        dtype="float64",
    )
    s0 = init(jax.random.PRNGKey(3), cfg)
    s1 = step(s0, cfg)
    G = code_gradient(s0.params["codes"], s0.train_x)
    dead = np.asarray(s1.hits) == 0
    assert dead.any() and (~dead).any()
    np.testing.assert_allclose(
        s1.params["codes"] - s0.params["codes"], -0.1 * G, rtol=1e-12, atol=1e-15
    )
    # Exactly zero gradient, hence bitwise frozen, for the codes nobody selected.
    assert np.all(np.asarray(G)[dead] == 0)
    np.testing.assert_array_equal(s1.params["codes"][dead], s0.params["codes"][dead])


def test_one_simvq_step_moves_every_code_by_the_kernel_of_the_basis():
    cfg = m.Config(
        num_codes=16,
        dim=2,
        init_margin=2.0,
        samples=32,
        sampling="fixed",
        quantizer="simvq",
        basis_scale=0.7,
        lr=0.1,
        dtype="float64",
    )
    s0 = init(jax.random.PRNGKey(4), cfg)
    s1 = step(s0, cfg)

    @jax.jit
    def codes_and_update(s0, s1):
        q0 = m.codes(s0.params, s0.basis, cfg)
        q1 = m.codes(s1.params, s1.basis, cfg)
        G = th.code_gradient(q0, s0.train_x)
        return q0, q1, th.simvq_update(s0.basis, G, 0.1)

    q0, q1, pred = codes_and_update(s0, s1)
    # float64 rounding of a few matrix products of O(1) numbers.
    tol = dict(rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(s1.params["W"] - s0.params["W"], pred["W"], **tol)
    np.testing.assert_allclose(s1.params["b"] - s0.params["b"], pred["b"], **tol)
    np.testing.assert_allclose(q1 - q0, pred["codes"], **tol)
    dead = np.asarray(s1.hits) == 0
    assert dead.any()
    assert np.all(np.linalg.norm(np.asarray(q1 - q0)[dead], axis=1) > 0)


@pytest.mark.parametrize("margin", [0.5, 3.0])
def test_live_codes_at_init_match_the_voronoi_expectation(margin):
    cfg = m.Config(num_codes=32, init_margin=margin, samples=1, eval_samples=4096)
    seeds = 400  # z = 4 below: the tolerance is 4 SE of the 400-seed mean
    traj = cj.simulate(m, cfg, steps=1, every=1, seeds=seeds)
    pred = predict(cfg, tuple(traj.steps))
    bound = float(jax.jit(th.live_codes_deficit_bound)(cfg))
    # The finite evaluation set can only miss codes (a one-sided bias <= bound), so
    # compare with the prediction shifted by half the bound, and half the bound added.
    shifted = {"live_codes": np.asarray(pred["live_codes"]) - bound / 2}
    agreement = cj.compare(traj, shifted, z=4.0, atol=bound / 2, at="trajectory")
    assert agreement.passed, agreement["live_codes"].summary()
    assert bound < traj.se("live_codes")[0]  # the bias is below the noise floor


def test_vanilla_ladder_keeps_one_live_code_and_ends_at_the_data_variance(ladder_runs):
    traj = ladder_runs["vanilla"]
    pred = predict(traj.cfg, tuple(traj.steps))
    # Deterministic (one seed, SE = 0): float64 rounding over 2000 steps.
    agreement = cj.compare(traj, pred, z=0.0, atol=1e-12, at="trajectory")
    assert agreement.passed, agreement.table()
    assert np.all(traj["live_codes"] == 1)
    assert np.all(traj["utilisation"] == 1 / K)
    np.testing.assert_array_equal(traj["displacement"][0, :, 1:], 0.0)  # frozen
    # (1 − 2η)^2000 ≈ 3e-18: the limit is the variance of the grid, 1/12 − 1/(12 n²).
    np.testing.assert_allclose(traj.final("mse"), (1 - 1 / 512**2) / 12, rtol=1e-12)


def test_simvq_from_the_same_ladder_reaches_the_uniform_quantiser(ladder_runs):
    traj = ladder_runs["simvq"]
    i = SCALES.index(0.2)
    mse, live = traj.final("mse")[i, 0], traj.final("live_codes")[i, 0]
    assert live == K  # utilisation exactly 1
    # On the grid with K | n the uniform quantiser's boundaries k/K fall on grid-cell
    # edges: the grid MSE is exactly 1/(12K²) − 1/(12n²). Near it all codes are live
    # and SGD contracts by at least 1 − 2η s² = 0.976 per step; after 2000 steps the
    # residual is below float64 rounding.
    best = th.uniform_quantizer_mse(K) + th.grid_mse_shift(512)
    np.testing.assert_allclose(mse, best, rtol=1e-10)
    pred = predict(
        m.Config(quantizer="simvq", basis_scale=0.2, **LADDER), tuple(traj.steps)
    )
    np.testing.assert_allclose(mse, pred["mse"][-1], rtol=1e-10)


def test_simvq_with_a_tiny_basis_only_translates_the_codebook(ladder_runs):
    traj = ladder_runs["simvq"]
    s = SCALES[0]
    i = SCALES.index(s)
    cfg = m.Config(quantizer="simvq", basis_scale=s, **LADDER)
    assert traj.final("live_codes")[i, 0] == K  # every code in, but rigidly
    rigid = float(th.rigid_translation_mse(cfg) + th.grid_mse_shift(512))
    # Shape drift: the spacing scale u = s·w moves by lr·s²·Σ_k G_k ĉ_k per step,
    # |Σ G_k ĉ_k| <= 2·max|ĉ|·(max distance <= o + (K−1)Δ), so after T steps its
    # relative change is eps <= T·lr·s²·2·max|ĉ|·(o + (K−1)Δ)/ρ; the MSE moves by at
    # most (K−1)·max(Δ²/4, e²)·Δ·eps, plus the grid's kink bound.
    D, o, lr, T = 1 / 16, 2.0, LADDER["lr"], STEPS
    c_hat = (np.arange(K) - (K - 1) / 2) / np.sqrt((K**2 - 1) / 12)
    rho = D * np.sqrt((K**2 - 1) / 12)
    eps = T * lr * s**2 * 2 * np.max(np.abs(c_hat)) * (o + (K - 1) * D) / rho
    e = (1 - (K - 1) * D) / 2
    drift = (K - 1) * max(D**2 / 4, e**2) * D * eps
    kink = float(th.grid_kink_bound(K, D, 512))
    assert abs(traj.final("mse")[i, 0] - rigid) <= drift + kink
    assert rigid > 10 * float(th.uniform_quantizer_mse(K))  # a failure: ~11.5x


def test_simvq_with_a_unit_basis_stalls_at_a_partial_collapse(ladder_runs):
    traj = ladder_runs["simvq"]
    i = SCALES.index(1.0)
    j = int(traj.final("live_codes")[i, 0])
    assert 1 < j < K  # more than vanilla's one code, fewer than K
    # It stops at a stationary point: the j-level uniform quantiser of the grid.
    best_j = float(th.uniform_quantizer_mse(j) + th.grid_mse_shift(512))
    kink = float(th.grid_kink_bound(j, 1 / j, 512))
    assert abs(traj.final("mse")[i, 0] - best_j) <= kink + 1e-12
