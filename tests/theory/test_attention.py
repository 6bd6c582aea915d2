"""attention theory (theory/attention.md) vs simulation of the self-attention stack.

- Zhai et al. 2023 (arXiv 2303.06296), Thm 3.1: entropy lower bound, never violated
  and attained by the one-high logit vector;
- Dong et al. 2021 (arXiv 2103.03404): the cubic residual map of a pure attention
  layer, its next-order term, and the doubly exponential (3^L) law;
- Zhou et al. 2024 (arXiv 2410.24200): the non-mean energy an attention layer passes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import attention as m
from collapse_jax.theory import attention as th

EPS64 = np.finfo(np.float64).eps
# The theory, jitted (T and the order are sizes): called eagerly it would compile
# each of its primitives.
entropy_lower_bound = jax.jit(th.entropy_lower_bound, static_argnums=2)
energy_ratio_exact = jax.jit(th.energy_ratio_exact)
energy_ratio_leading = jax.jit(th.energy_ratio_leading, static_argnums=2)

# ------------------------------------------------------------- entropy bound


@pytest.mark.parametrize(
    "sigma_reparam", [False, pytest.param(True, marks=pytest.mark.slow)]
)
def test_entropy_never_below_zhai_bound_over_random_networks(sigma_reparam):
    # 6 grid points x 8 seeds x 5 fresh draws = 240 networks, 3 layers x 2 heads.
    cfg = m.Config(
        seq_len=6, dim=5, depth=3, heads=2, head_dim=3, skip=True, mlp=True,
        sigma_reparam=sigma_reparam, dtype="float64",
    )  # fmt: skip
    scale = "gamma" if sigma_reparam else "qk_scale"
    grid = {scale: [0.3, 1.5, 4.0], "token_mean": [0.0, 2.0]}
    tr = cj.sweep(m, cfg, grid, steps=4, every=1, seeds=8)
    if sigma_reparam:  # σ ≤ γ_Q γ_K = γ²: a bound from γ (and σ_x) alone
        sigma = np.asarray(tr.grid["gamma"])[:, None, None, None, None] ** 2
        assert np.all(tr["qk_norm"] <= sigma * (1 + 1e-12))
    else:
        sigma = tr["qk_norm"]
    bound = entropy_lower_bound(sigma, tr["token_norm"][..., None], 6)
    # Float64 rounding of the entropy: far below 1e-12.
    assert np.all(tr["entropy"] >= bound - 1e-12)
    assert np.min(tr["entropy"] - bound) < 2.0  # the bound is not vacuous here


def _softmax_entropy(z):
    p = jax.nn.softmax(z, axis=-1)
    return -jnp.sum(p * jnp.log(p), axis=-1)


@functools.partial(jax.jit, static_argnums=2)
def _entropies_on_the_ball(z, r, T):
    """(entropy of ``z``, entropies after projected descent on ``‖z − z̄‖ = r``)."""

    def project(z):
        zc = z - jnp.mean(z, axis=-1, keepdims=True)
        return zc * (r[:, None, None] / jnp.linalg.norm(zc, axis=-1)[..., None])

    def descend(z, _):
        g = jax.grad(lambda z: jnp.sum(_softmax_entropy(z)))(z)
        return project(z - 0.5 * g), None

    z0 = project(jax.random.normal(jax.random.PRNGKey(T), (len(r), 32, T)))
    zT, _ = jax.lax.scan(descend, z0, None, length=3000)
    return _softmax_entropy(z), _softmax_entropy(zT)


@pytest.mark.parametrize("T", [2, 5, 16])
def test_bound_is_attained_by_the_one_high_logits_and_is_the_minimum_on_the_ball(T):
    r = np.array([0.1, 1.0, 3.0, 8.0])
    gap = r * np.sqrt(T / (T - 1))
    z = np.zeros((len(r), T))
    z[:, 0] = gap
    z -= z.mean(axis=1, keepdims=True)  # centred: ‖z‖ = r exactly
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), r, rtol=1e-14)
    bound = np.asarray(entropy_lower_bound(r, 1.0, T))

    # Projected gradient descent of the entropy on the sphere ‖z − z̄‖ = r from 32
    # random starts per radius: never below the bound, and the best start reaches it
    # (radii up to 3: beyond, the entropy gradient ~ e^{-gap} makes descent slow).
    ent_z, ent = map(np.asarray, _entropies_on_the_ball(z, r[:3], T))
    np.testing.assert_allclose(ent_z, bound, rtol=1e-12, atol=1e-15)
    r, bound = r[:3], bound[:3]
    assert np.all(ent >= bound[:, None] - 1e-12)
    np.testing.assert_allclose(ent.min(axis=1), bound, atol=1e-8)


# ------------------------------------------------------------- cubic residual map

EPSILONS = (1e-1, 1e-2, 1e-3)  # residual scale (token_std) at token_mean = 1
CUBIC = m.Config(seq_len=8, dim=6, depth=1, heads=2, token_mean=1.0, dtype="float64")


@jax.jit
def _cubic_terms(key, cfg):
    """Relative errors of the cubic map and of cubic + next order for one draw."""
    state = m.init(key, cfg)
    X = state.tokens[0]
    Xs, _ = m.forward(state.params, X, cfg)
    p = state.params
    W = jnp.einsum("hde,hfe->hdf", p["q"][0], p["k"][0])
    xbar = jnp.mean(X, axis=0)
    R = X - xbar[None, :]
    R_out = Xs[1] - jnp.mean(Xs[1], axis=0, keepdims=True)
    C = th.cubic_residual(R, W, p["v"][0])
    N = th.next_order_residual(R, xbar, W, p["v"][0])
    Z = jnp.einsum("td,hde,sd->hts", X, W, X)
    norm = jnp.linalg.norm
    return {
        "e1": norm(R_out - C) / norm(C),  # error of the cubic map
        "n": norm(N) / norm(C),  # relative size of the next-order term
        "e2": norm(R_out - C - N) / norm(C),  # error after the next-order term
        # Expansion parameter: the largest centred logit.
        "kappa": jnp.max(jnp.abs(Z - jnp.mean(Z, axis=-1, keepdims=True))),
        "res_in": norm(R),
        "res_out": norm(R_out),
    }


def _vmapped_terms(keys, cfg):
    return jax.vmap(lambda k: _cubic_terms(k, cfg))(keys)


@pytest.fixture(scope="module")
def cubic():
    keys = jax.random.split(jax.random.PRNGKey(11), 6)  # 6 random networks
    runs = [_vmapped_terms(keys, CUBIC.replace(token_std=eps)) for eps in EPSILONS]
    return {name: np.stack([np.asarray(r[name]) for r in runs]) for name in runs[0]}


def test_next_order_term_leaves_a_remainder_one_order_smaller(cubic):
    # After the fourth-order term the remainder is fifth order: relative to the
    # next-order term it is of the size of the expansion parameter κ.
    assert np.all(cubic["e2"] <= 2 * cubic["kappa"] * cubic["n"])


def test_cubic_map_relative_error_falls_tenfold_per_decade_of_residual(cubic):
    # e1 = n (1 + θ), |θ| ≤ 2κ (previous test), and n ∝ residual exactly (N is one
    # order above C); so the error ratio over a decade is 10 (1+θ_k)/(1+θ_{k+1}).
    ratio = cubic["e1"][:-1] / cubic["e1"][1:]
    theta = 2 * cubic["kappa"]
    tol = 10 * (theta[:-1] + theta[1:]) / (1 - theta[:-1])
    assert np.all(np.abs(ratio - 10) <= tol), (ratio, tol)


def test_cubic_map_log_log_slope_is_three(cubic):
    slope = np.log(cubic["res_out"][:-1] / cubic["res_out"][1:]) / np.log(
        cubic["res_in"][:-1] / cubic["res_in"][1:]
    )
    # ‖R_out‖ = ‖C‖(1 + δ), ‖C‖ ∝ ‖R‖³ exactly, |δ| ≤ e1 ≤ n (1 + 2κ): the slope
    # over a decade is 3 within (|δ_k| + |δ_{k+1}|)/ln 10 (×1.1 for log(1+δ) ≥ δ/1.1).
    delta = cubic["n"] * (1 + 2 * cubic["kappa"])
    tol = 1.1 * (delta[:-1] + delta[1:]) / np.log(10)
    assert np.all(np.abs(slope - 3) <= tol), (slope, tol)
    assert np.all(tol[-1] < 0.01)


# ------------------------------------------------------------- isotropic stack

ISO = m.Config(
    seq_len=8, dim=9, depth=4, init="isotropic", tokens="orthonormal",
    token_mean=1.0, token_std=0.7, qk_scale=1.0, v_scale=1.0, dtype="float64",
)  # fmt: skip


@pytest.fixture(scope="module", params=[False, True], ids=["pure", "skip"])
def iso_run(request):
    cfg = ISO.replace(skip=request.param)
    return cfg, cj.simulate(m, cfg, steps=1, every=1, seeds=2)


def test_isotropic_stack_follows_the_exact_recursion(iso_run):
    cfg, tr = iso_run
    pred = jax.jit(th.predict, static_argnums=1)(cfg, tuple(tr.steps))
    # Below ~1e-12 the residual is rounding of O(1) tokens (float64): no prediction.
    floor = 1e3 * EPS64 * np.sqrt(cfg.seq_len) * 10
    for name in ("residual", "residual_norm", "energy_ratio"):
        pred[name] = np.where(np.asarray(pred[name]) < floor, np.nan, pred[name])
    # Seeds only rotate the tokens (SE = 0); tolerance: float64 rounding of the
    # forward pass relative to the metric, and 1e3 ulp absolute near the floor.
    agreement = cj.compare(tr, pred, z=4.0, rtol=1e-9, atol=floor, at="trajectory")
    assert agreement.passed, agreement.table()


def test_pure_isotropic_residual_is_doubly_exponential_with_depth(iso_run):
    cfg, tr = iso_run
    if cfg.skip:
        # Skip connections keep the residual: c' = (1 + vλ) c ≥ c at every layer.
        assert np.all(np.diff(tr.mean("residual_norm")[0]) > 0)
        return
    lead = jax.jit(th.leading_residual_norm)(cfg)
    sim = tr.mean("residual_norm")[0]
    ok = np.asarray(lead["residual_norm"]) > 1e-11  # above float64 rounding
    # log c_{l+1} = 3 log c_l + log(s v/T) + δ_l, δ_l = log(Tλ/g) with |δ_l| ≤ g_l/2,
    # g_l = s c_l²: the law's error in log c_L is Σ_l 3^{L−1−l} g_l/2.
    c = sim / np.sqrt(cfg.seq_len - 1)
    g = cfg.qk_scale * c**2
    tol = np.array(
        [sum(3 ** (L - 1 - l) * g[l] / 2 for l in range(L)) for L in range(5)]
    )
    err = np.abs(np.log(sim) - np.log(np.asarray(lead["residual_norm"])))
    assert np.all(err[ok] <= tol[ok] + 1e-12), (err, tol)
    assert ok.sum() >= 3 and np.log(sim[2]) < 3 * np.log(sim[1]) + np.log(8)


# ------------------------------------------------------------- energy ratio


def test_energy_ratio_matches_exact_quadrature_within_seed_se():
    # i.i.d. N(0, s²) logits: Gaussian W_Q W_Kᵀ on orthonormal zero-mean tokens.
    cfg = m.Config(
        seq_len=8, dim=9, depth=1, heads=4, tokens="orthonormal", dtype="float64"
    )
    grid = {"qk_scale": [0.5, 1.0, 2.0]}
    tr = cj.sweep(m, cfg, grid, steps=2, every=1, seeds=64)
    pred = jax.jit(jax.vmap(lambda c: th.predict(c, tr.steps)))(tr.cfg)
    # 64 seeds, z = 4.5 over 3 x 3 x 4 = 36 compared means.
    agreement = cj.compare(tr, {"energy_ratio": pred["energy_ratio"]}, z=4.5)
    assert agreement.passed, agreement.table()
    assert np.all(agreement["energy_ratio"].se > 0)


def test_quadrature_limits_and_large_n_expansion():
    # s = 0: uniform attention passes nothing; n = 1: nothing to mix.
    assert abs(float(energy_ratio_exact(0.0, 16.0))) < 1e-12
    assert abs(float(energy_ratio_exact(1.0, 1.0))) < 1e-10
    n = np.array([64.0, 256.0, 1024.0])
    for s in (0.5, 1.0):
        exact = np.asarray(energy_ratio_exact(s, n))
        first = np.asarray(energy_ratio_leading(s, n, 1))
        second = np.asarray(energy_ratio_leading(s, n, 2))
        # Leading order: relative error O(1/n), falls fourfold per fourfold n.
        rel1 = np.abs(exact / first - 1)
        np.testing.assert_allclose(rel1[:-1] / rel1[1:], 4, rtol=0.25)
        # With the 1/n² term the remainder is O(1/n³) relative to O(1/n): 16-fold.
        rel2 = np.abs(exact / second - 1)
        assert np.all(rel2 < rel1 / 2)
        assert np.all(rel2[:-1] / rel2[1:] > 8)
