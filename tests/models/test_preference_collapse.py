"""preference_collapse: the list-type response set, Bradley–Terry comparisons, the
reward-model gradient and the sampled policy-gradient estimators.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models import preference_collapse as m


def test_list_types_are_every_list_and_their_reference_is_the_multinomial():
    cfg = m.Config(level="distribution", num_items=4, list_size=5, dtype="float64")
    A, log_ref, reward = cfg.responses()
    counts = np.asarray(A) * 5
    assert counts.shape == (math.comb(8, 3), 4) == (cfg.num_responses, 4)
    np.testing.assert_allclose(counts.sum(axis=1), 5)
    assert len({tuple(np.rint(c)) for c in counts}) == counts.shape[0]
    P = np.exp(np.asarray(log_ref))
    np.testing.assert_allclose(P.sum(), 1.0, rtol=1e-13)
    # E_ref[q] = p_ref: n draws of the base model have mean type p_ref.
    np.testing.assert_allclose(P @ np.asarray(A), cfg.item_probs(), rtol=1e-13)
    np.testing.assert_array_equal(reward, 0.0)


def test_init_starts_at_the_reference_and_oracle_keeps_no_comparisons():
    cfg = m.Config(reward_model="oracle", dtype="float64", reward="random")
    table_cfg = cfg.replace(reward_model="table")

    @jax.jit
    def both(key):
        return m.init(key, cfg), m.init(key, table_cfg), cfg.responses()

    state, table, (_, log_ref, reward) = both(jax.random.PRNGKey(0))
    np.testing.assert_allclose(state.theta, log_ref, atol=1e-15)
    np.testing.assert_allclose(state.rhat, reward + cfg.alpha * log_ref, atol=1e-15)
    assert state.wins.shape == (0, 0) and state.theta.dtype == jnp.float64
    assert float(table.wins.sum()) == cfg.comparisons
    np.testing.assert_array_equal(table.rhat, 0.0)


def test_comparisons_follow_bradley_terry_win_probabilities():
    cfg = m.Config(num_items=3, comparisons=60_000, alpha=1.0, dtype="float64")
    _, log_ref, reward = cfg.responses()
    R = reward + cfg.alpha * log_ref
    wins = np.asarray(jax.jit(m._draw_wins)(jax.random.PRNGKey(1), cfg, R))
    n = wins + wins.T
    expected = np.asarray(jax.nn.sigmoid(R[:, None] - R[None, :]))
    off = ~np.eye(3, dtype=bool)
    freq = wins[off] / n[off]
    se = np.sqrt(expected[off] * (1 - expected[off]) / n[off])
    assert np.all(np.abs(freq - expected[off]) <= 4 * se)  # z = 4 per ordered pair
    # Pairs uniform over the 6 ordered pairs: each count ~ N/3 per unordered pair.
    pairs = n[np.triu_indices(3, 1)]
    assert np.all(np.abs(pairs - 20_000) <= 4 * np.sqrt(60_000 * (1 / 3) * (2 / 3)))


def test_reward_model_gradient_is_the_bradley_terry_likelihood_gradient():
    rng = np.random.default_rng(2)
    wins = rng.poisson(3.0, (5, 5)) * (1 - np.eye(5))
    rhat = rng.normal(size=5)

    def nll(r, w):
        d = r[:, None] - r[None, :]
        return -jnp.sum(w * jax.nn.log_sigmoid(d)) / jnp.sum(w)

    both = jax.jit(lambda r, w: (m._rm_grad(r, w), jax.grad(nll)(r, w)))
    ours, autodiff = both(jnp.asarray(rhat), jnp.asarray(wins, jnp.float64))
    np.testing.assert_allclose(ours, autodiff, atol=1e-14)


def test_sampled_policy_directions_are_unbiased_up_to_a_constant_logit_shift():
    S = 40_000
    logits = np.array([1.0, 0.3, -0.5, -1.2])
    pi = np.exp(logits) / np.exp(logits).sum()
    logp, g = jnp.log(pi), jnp.array([0.4, -0.2, 0.9, 0.1], jnp.float64)
    # Exact directions: natural gradient g (up to a constant); plain π ⊙ (g − π·g).
    exact = {"npg": np.asarray(g), "pg": pi * (np.asarray(g) - pi @ np.asarray(g))}
    keys = jax.random.split(jax.random.PRNGKey(4), S)
    cfgs = {
        opt: m.Config(num_items=4, optimizer=opt, policy_samples=3, dtype="float64")
        for opt in ("npg", "pg")
    }

    @jax.jit
    def directions(keys):  # both estimators in one compiled program
        return {
            opt: jax.vmap(lambda k, c=c: m._policy_direction(k, logp, g, c))(keys)
            for opt, c in cfgs.items()
        }

    for optimizer, d in directions(keys).items():
        d = np.array(d)
        d -= d.mean(axis=1, keepdims=True)  # softmax ignores constant shifts
        target = exact[optimizer] - exact[optimizer].mean()
        se = d.std(axis=0, ddof=1) / np.sqrt(S)
        assert np.all(np.abs(d.mean(axis=0) - target) <= 4 * se), optimizer  # z = 4
