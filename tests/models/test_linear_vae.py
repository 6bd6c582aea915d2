"""linear_vae: the data model, the two objectives and the decoder constraint."""

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models import linear_vae as m

CFG = dict(
    eigenvalues=(3.0, 1.5, 0.5),
    latent_dim=2,
    condition_dim=2,
    correlation=0.7,
    dtype="float64",
)
# One compile per config, not per op.
init, step, observe = jax.jit(m.init), jax.jit(m.step), jax.jit(m.observe)
loss, project = jax.jit(m.loss), jax.jit(m._project)
population_moment = jax.jit(m._population_moment, static_argnums=1)
SAMPLED = m.Config(samples=40, batch_size=40, objective="mc", sigma2=0.7, **CFG)


def test_drawn_samples_have_the_population_second_moment():
    cfg = m.Config(samples=20_000, **CFG)
    state = init(jax.random.PRNGKey(1), cfg)
    pop = np.asarray(population_moment(cfg, jnp.float64))
    # Gaussian u: Var(u_a u_b) = S_aa S_bb + S_ab²; z = 4 on each of the 15 entries.
    se = np.sqrt((np.outer(np.diag(pop), np.diag(pop)) + pop**2) / cfg.samples)
    assert np.all(np.abs(np.asarray(state.moment) - pop) <= 4 * se)
    np.testing.assert_allclose(pop[0, 3], 0.7 * np.sqrt(3.0))  # Cov(x_0, y_0) = ρ√λ_0


def test_latent_eigs_are_those_of_the_sample_conditional_covariance():
    state = init(jax.random.PRNGKey(2), SAMPLED)
    u = np.asarray(state.data)
    S = u.T @ u / len(u)
    sxx, sxy, syy = S[:3, :3], S[:3, 3:], S[3:, 3:]
    want = np.sort(np.linalg.eigvalsh(sxx - sxy @ np.linalg.solve(syy, sxy.T)))[::-1]
    np.testing.assert_allclose(np.asarray(state.latent_eigs), want, rtol=1e-10)


def test_reparameterised_loss_is_an_unbiased_estimate_of_the_exact_loss():
    cfg = SAMPLED
    state = init(jax.random.PRNGKey(3), cfg)
    params = state.params._replace(log_s=np.log(np.array([0.3, 0.8])))
    exact = float(loss(params, state.moment, cfg))
    draws = 4000

    @jax.jit
    def estimate(params, data, key):
        eps = jax.random.normal(key, (draws, 40, 2), jnp.float64)
        return jax.vmap(m.mc_loss, in_axes=(None, None, 0, None))(
            params, data, eps, cfg
        )

    mc = np.asarray(estimate(params, state.data, jax.random.PRNGKey(4)))
    # The whole sample in every batch: only ε varies; z = 4 standard errors.
    assert abs(mc.mean() - exact) <= 4 * mc.std(ddof=1) / np.sqrt(draws)


def test_inverse_lipschitz_projection_keeps_the_smallest_singular_value_at_the_floor():
    cfg = m.Config(decoder="inverse_lipschitz", lipschitz=0.9, lr=0.1, **CFG)
    state = init(jax.random.PRNGKey(5), cfg)
    for _ in range(50):
        state = step(state, cfg)
        sv = np.linalg.svd(np.asarray(state.params.W), compute_uv=False)
        assert sv.min() >= 0.9 - 1e-12
    # A feasible decoder is left as it is (up to the rounding of the SVD round trip).
    again = project(state.params, cfg)
    np.testing.assert_allclose(again.W, state.params.W, atol=1e-13)


def test_fixed_sigma2_is_never_trained():
    cfg = SAMPLED
    state = init(jax.random.PRNGKey(6), cfg)
    for _ in range(5):
        state = step(state, cfg)
    assert float(jnp.exp(state.params.log_sigma2)) == np.float64(0.7)
    assert float(observe(state, cfg)["sigma2"]) == 0.7
