"""vector_quantizer: observe shapes, bitwise-frozen dead codes (SGD and Adam), SimVQ
moving every code from the same initial codebook, the commitment term, float64.

The generic checks (shapes over seeds, finiteness, vmapped seeds, no retrace, bad
configs) are in tests/test_model_contract.py. Three configs share one compile each.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import vector_quantizer as m

# Codes over [-3, 4] around data on [0, 1]: many cells never meet a minibatch.
BASE = dict(num_codes=24, init_margin=3.0, samples=32, dtype="float64")
CONFIGS = {
    "vanilla-sgd": m.Config(**BASE),
    "vanilla-adam": m.Config(optimizer="adam", **BASE),
    "simvq-sgd": m.Config(quantizer="simvq", **BASE),
}
STEPS = 200


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, cfg in CONFIGS.items():
        start = jax.jit(m.init)(jax.random.PRNGKey(0), cfg)
        loop = jax.jit(
            lambda s, c: jax.lax.fori_loop(0, STEPS, lambda _, s: m.step(s, c), s)
        )
        end = loop(start, cfg)
        out[name] = (start, end, jax.jit(m.observe)(end, cfg))
    return out


def test_observe_shapes_dtype_and_finite(runs):
    for _start, end, obs in runs.values():
        for name in ("live_codes", "utilisation", "perplexity", "mse", "loss"):
            chex.assert_shape(obs[name], ())
        chex.assert_shape(obs["displacement"], (24,))
        chex.assert_tree_all_finite(obs)
        assert all(v.dtype == jnp.float64 for v in obs.values())
        assert jax.tree.leaves(end.params)[0].dtype == jnp.float64
        assert 1 <= float(obs["perplexity"]) <= float(obs["live_codes"]) + 1e-9


@pytest.mark.parametrize("name", ["vanilla-sgd", "vanilla-adam"])
def test_never_selected_vanilla_codes_stay_bitwise_frozen(runs, name):
    start, end, obs = runs[name]
    dead = np.asarray(end.hits) == 0
    assert 0 < dead.sum() < 24
    np.testing.assert_array_equal(
        end.params["codes"][dead], start.params["codes"][dead]
    )
    disp = np.asarray(obs["displacement"])
    assert np.all(disp[dead] == 0) and np.all(disp[~dead] > 0)


def test_simvq_moves_every_code_including_never_selected_ones(runs):
    _, end, obs = runs["simvq-sgd"]
    assert (np.asarray(end.hits) == 0).any()
    assert np.all(np.asarray(obs["displacement"]) > 0)


def test_simvq_starts_from_the_vanilla_codebook_of_the_same_seed(runs):
    vanilla = runs["vanilla-sgd"][0].params["codes"]
    init = jax.jit(m.init)
    for scale in (1e-3, 1.0, 30.0):  # a leaf: one compile
        cfg = CONFIGS["simvq-sgd"].replace(basis_scale=scale)
        state = init(jax.random.PRNGKey(0), cfg)
        np.testing.assert_allclose(
            m.codes(state.params, state.basis, cfg), vanilla, atol=1e-13
        )
        # The basis is centred with RMS ``scale`` per dimension.
        np.testing.assert_allclose(jnp.mean(state.basis, axis=0), 0.0, atol=1e-13)
        np.testing.assert_allclose(
            jnp.sqrt(jnp.mean(state.basis**2)), scale, rtol=1e-12
        )


def test_commitment_term_gives_the_codebook_no_gradient(runs):
    start = runs["simvq-sgd"][0]
    cfg = CONFIGS["simvq-sgd"]
    grad = jax.jit(jax.grad(m.loss))
    x = start.eval_x[:32]
    g0 = grad(start.params, start.basis, x, cfg.replace(beta=0.0))
    g5 = grad(start.params, start.basis, x, cfg.replace(beta=5.0))
    chex.assert_trees_all_equal(g0, g5)
