"""recursive_regression: metrics, grid validation, sampler law, vmapped grids.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from scipy import stats

import collapse_jax as cj
from collapse_jax.models import recursive_regression as m

SEEDS, STEPS = 4, 4  # one shape for every small run here, so they share compiles


def _cfg(**kw):
    base = dict(dim=5, samples=12, generator_samples=9, policy="mix", real_weight=0.4)
    base.update(kw)
    return m.Config(**base)


@pytest.fixture(scope="module")
def run4():
    return cj.simulate(m, _cfg(), seeds=SEEDS, steps=STEPS)


def _start_and_two_steps(cfg):
    """Jitted ``key -> (init state, its observation, state after two steps)``: one
    compile (the step traced once, in a loop) instead of op-by-op eager calls."""

    def run(key):
        state = m.init(key, cfg)
        later = lax.fori_loop(0, 2, lambda _, s: m.step(s, cfg), state)
        return state, m.observe(state, cfg), later

    return jax.jit(run)


@pytest.fixture(scope="module")
def start_and_two_steps():
    return _start_and_two_steps(_cfg())


def test_observe_reports_finite_float32_scalars(run4):
    assert set(run4.metrics) == {"test_error", "downstream_error"}
    for values in run4.metrics.values():
        assert values.shape == (SEEDS, STEPS + 1) and values.dtype == np.float32
        assert np.all(np.isfinite(values))
    assert not run4.divergences


def test_step_counts_generations_and_carries_a_legacy_key(start_and_two_steps):
    _, _, state = start_and_two_steps(jax.random.PRNGKey(0))
    assert int(state.generation) == 2
    assert state.key.dtype == jnp.uint32 and state.key.shape == (2,)


def test_generation_zero_is_the_true_model(start_and_two_steps):
    cfg = _cfg()
    state, first, _ = start_and_two_steps(jax.random.PRNGKey(1))
    assert float(first["test_error"]) == 0.0
    np.testing.assert_allclose(np.linalg.norm(state.w_true), cfg.signal, rtol=1e-6)


def test_bad_value_inside_a_grid_array_is_rejected():
    with pytest.raises(ValueError, match="real_weight"):
        _cfg(real_weight=np.array([0.2, 1.2]))


def test_config_passes_through_ahead_of_time_lowering():
    # jit(...).trace(...).lower() rebuilds the Config with placeholder leaves; the
    # sample-count checks must let them through as check_range does, and the
    # lowered program must compute what the jitted call does.
    cfg = _cfg()
    key = jax.random.PRNGKey(0)
    init = jax.jit(m.init)
    compiled = init.trace(key, cfg).lower().compile()
    np.testing.assert_array_equal(compiled(key, cfg).w_true, init(key, cfg).w_true)


def test_sampled_gram_matrix_has_the_wishart_law_of_x_transpose_x():
    # XᵀX for T Gaussian rows N(0, Σ): mean T Σ, Var[(XᵀX)_kk] = 2 T s_k²,
    # and tr(Σ⁻¹XᵀX) ~ χ²(T d). 20000 draws; moments within 5 SE, KS p > 1e-3.
    cfg = m.Config(dim=4, spectrum="power_law", decay=1.0, dtype="float64")
    T = 7.0
    keys = jax.random.split(jax.random.PRNGKey(3), 20_000)
    F, z = jax.jit(jax.vmap(lambda k: m._draw(k, T, cfg, jnp.float64)))(keys)
    gram = np.asarray(jnp.einsum("sij,skj->sik", F, F))
    s = np.arange(1, 5) ** -1.0
    mean, se = gram.mean(0), gram.std(0, ddof=1) / np.sqrt(len(gram))
    assert np.all(np.abs(mean - T * np.diag(s)) <= 5 * se + 1e-12)
    var_diag = gram[:, range(4), range(4)].var(0, ddof=1)
    np.testing.assert_allclose(var_diag, 2 * T * s**2, rtol=0.06)  # ~5 SE of a var
    trace = np.einsum("sii->s", gram / s[None, :, None])
    assert stats.kstest(trace, stats.chi2(T * 4).cdf).pvalue > 1e-3
    # Xᵀε = F z given X: its covariance is E XᵀX = T Σ.
    u = np.asarray(jnp.einsum("sij,sj->si", F, z))
    np.testing.assert_allclose(u.var(0, ddof=1), T * s, rtol=0.06)


@jax.jit
@functools.partial(jax.vmap, in_axes=(0, None))
def _gamma_draws(key, alpha):
    """16 Gamma(alpha) draws per key, as the Bartlett sampler makes them."""
    k_gamma, k_boost = jax.random.split(key)
    boost = jax.random.uniform(k_boost, (16,), jnp.float64)
    return m._gamma(k_gamma, jnp.full((16,), alpha, jnp.float64), boost)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 4.5, 60.0])
def test_gamma_draws_have_the_gamma_law(alpha):
    # The Bartlett diagonal needs Gamma((n - k) / 2): alpha = 1/2 is chi²(1), the
    # smallest (n = d). 400 keys x 16 draws, vmapped as in the engine; KS p > 1e-3,
    # no draw left unaccepted (NaN).
    keys = jax.random.split(jax.random.PRNGKey(11), 400)
    x = np.asarray(_gamma_draws(keys, jnp.float64(alpha))).ravel()
    assert not np.isnan(x).any()
    assert stats.kstest(x, stats.gamma(alpha).cdf).pvalue > 1e-3


def test_a_gamma_draw_does_not_depend_on_the_draws_beside_it():
    # Rounds run until every draw of the batch has accepted; each keeps its own
    # first accepted proposal, so a draw alone equals the same draw in a batch.
    keys = jax.random.split(jax.random.PRNGKey(12), 64)
    alpha = jnp.full((3,), 0.5, jnp.float64)
    boost = jnp.full((3,), 0.5, jnp.float64)
    draw = jax.jit(jax.vmap(lambda k: m._gamma(k, alpha, boost)))
    batch = np.asarray(draw(keys))
    alone = np.concatenate([np.asarray(draw(keys[i : i + 1])) for i in (0, 17, 63)])
    np.testing.assert_array_equal(alone, batch[[0, 17, 63]])


def test_vmapped_grid_over_T0_ridge_and_weight_equals_separate_runs():
    cfg = _cfg()
    grid = {
        "generator_samples": [9, 30],
        "ridge": [0.0, 0.5],
        "real_weight": [0.2, 0.9],
    }
    tr = cj.sweep(m, cfg, grid, seeds=SEEDS, steps=STEPS)
    assert tr["test_error"].shape == (8, SEEDS, STEPS + 1)
    for g in range(8):
        point = {k: float(v[g]) for k, v in tr.grid.items()}
        point["generator_samples"] = int(point["generator_samples"])
        one = cj.simulate(m, cfg.replace(**point), seeds=SEEDS, steps=STEPS)
        for name in tr.metrics:
            np.testing.assert_allclose(one[name], tr[name][g], rtol=1e-5, atol=1e-7)


def test_fixed_design_is_reused_and_fresh_design_is_not(start_and_two_steps):
    cfg = _cfg(policy="replace", fixed_design=True)
    state, _, later = _start_and_two_steps(cfg)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.design, later.design)
    assert float(np.abs(state.design).sum()) > 0
    fresh, _, _ = start_and_two_steps(jax.random.PRNGKey(0))  # fresh design
    assert float(np.abs(fresh.design).sum()) == 0  # unused placeholder


def test_float64_run_is_finite_and_float64():
    cfg = _cfg(dtype="float64", policy="accumulate", generator_ridge=0.1)
    tr = cj.simulate(m, cfg, seeds=SEEDS, steps=STEPS)
    assert tr["downstream_error"].dtype == np.float64
    assert np.all(np.isfinite(tr["test_error"])) and not tr.divergences


def test_min_norm_fit_on_padded_rows_is_the_pseudoinverse_solution():
    # T0 = 3 kept rows of d = 5: the fit interpolates the labels and equals
    # pinv(X) y on the kept rows, as if the zeroed rows were never drawn.
    cfg = _cfg(dtype="float64", interpolate=True, generator_samples=3, policy="replace")
    X, eps = jax.jit(lambda k: m._draw_rows(k, cfg, jnp.float64))(jax.random.PRNGKey(4))
    X, eps = np.asarray(X), np.asarray(eps)
    assert np.all(X[3:] == 0) and np.all(eps[3:] == 0)
    w = np.linspace(-1.0, 1.0, 5)
    fit_rows = jax.jit(lambda lam: m._fit_rows(jnp.asarray(X), eps, w, cfg, 0.3, lam))
    fit = np.asarray(fit_rows(0.0))
    y = X[:3] @ w + 0.3 * eps[:3]
    np.testing.assert_allclose(fit, np.linalg.pinv(X[:3]) @ y, rtol=1e-10)
    np.testing.assert_allclose(X[:3] @ fit, y, rtol=1e-10)
    ridge = np.asarray(fit_rows(0.1))
    gram = X[:3].T @ X[:3] + 3 * 0.1 * np.eye(5)
    np.testing.assert_allclose(ridge, np.linalg.solve(gram, X[:3].T @ y), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ridge_solve_is_accurate_to_the_conditioning_of_the_system(dtype):
    # Gram matrices of n Gaussian rows in d = 10 (condition numbers ~1e0 to ~1e4):
    # elimination on a positive definite system is forward stable, so the relative
    # error is at most a small multiple of kappa(A) * eps (Higham, Accuracy and
    # Stability of Numerical Algorithms, 2002, sec. 14.4); d * kappa * eps bounds it.
    rng = np.random.default_rng(0)
    d, penalty = 10, 0.01
    solve = jax.jit(jax.vmap(lambda a, b: m._ridge_solve(a, b, dtype(penalty))))
    for n in (11, 32, 316):
        X = rng.standard_normal((200, n, d))
        gram = np.einsum("bnk,bnj->bkj", X, X)
        moment = rng.standard_normal((200, d))
        A = gram + penalty * np.eye(d)
        exact = np.linalg.solve(A, moment[..., None])[..., 0]
        x = np.asarray(solve(gram.astype(dtype), moment.astype(dtype)), np.float64)
        error = np.linalg.norm(x - exact, axis=1) / np.linalg.norm(exact, axis=1)
        bound = d * np.linalg.cond(A) * np.finfo(dtype).eps
        assert np.all(error <= bound), (n, np.max(error / bound))


def test_power_law_source_has_the_stated_second_moments():
    # E w*_k² = r² k^-a / Σ_j j^-a; 4000 draws, each coordinate within 5 SE.
    cfg = _cfg(dtype="float64", target_decay=1.5, signal=2.0)
    keys = jax.random.split(jax.random.PRNGKey(5), 4000)
    draw = jax.jit(  # one compile for both sources (same static fields)
        jax.vmap(lambda k, c: m._true_weights(k, c, jnp.float64), in_axes=(0, None))
    )
    w = np.asarray(draw(keys, cfg))
    tail = np.arange(1, 6) ** -1.5
    sq = w**2
    se = sq.std(0, ddof=1) / np.sqrt(len(sq))
    assert np.all(np.abs(sq.mean(0) - 4.0 * tail / tail.sum()) <= 5 * se)
    flat = np.asarray(draw(keys, _cfg(dtype="float64")))
    norms = np.linalg.norm(flat, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-12)  # a = 0: on the sphere


def test_interpolate_accepts_at_most_dim_samples_and_no_accumulate():
    with pytest.raises(ValueError, match="generator_samples"):
        _cfg(interpolate=True, generator_samples=6)
    with pytest.raises(ValueError, match="interpolate"):
        _cfg(interpolate=True, generator_samples=3, policy="accumulate")
