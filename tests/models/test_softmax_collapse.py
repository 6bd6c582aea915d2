"""softmax_collapse: data, aligned initialisation, StableMax, ⊥Grad, the SC metric.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import softmax_collapse as m

# Jitted once per config: eager dispatch of every small op costs more than a compile.
_init, _step, _observe = jax.jit(m.init), jax.jit(m.step), jax.jit(m.observe)


def test_data_are_class_means_plus_antithetic_noise_orthogonal_to_them():
    cfg = m.Config(num_classes=3, dim=6, per_class=4, margin=2.0, noise=0.7)
    s = _init(jax.random.PRNGKey(0), cfg)
    x, y = np.asarray(s.x), np.asarray(s.y)
    chex.assert_shape(s.x, (12, 6))
    np.testing.assert_array_equal(y, np.repeat(np.arange(3), 4))
    np.testing.assert_array_equal(x[:, :3], 2.0 * np.eye(3)[y])
    for c in range(3):  # the noise of every class sums to zero (pairs ±ξ)
        np.testing.assert_allclose(x[y == c, 3:].sum(0), 0.0, atol=1e-6)
    assert np.std(x[:, 3:]) > 0.3


@pytest.mark.parametrize("num_classes", [3])
def test_aligned_init_gives_every_sample_the_initial_gap(num_classes):
    cfg = m.Config(
        num_classes=num_classes,
        dim=6,
        init_gap=3.5,
        margin=1.5,
        dtype="float64",
        param_dtype="float64",
    )
    s = _init(jax.random.PRNGKey(1), cfg)
    obs = _observe(s, cfg)
    np.testing.assert_allclose(obs["gap_min"], 3.5, rtol=1e-14)
    np.testing.assert_allclose(obs["gap_mean"], 3.5, rtol=1e-14)
    z = np.asarray(m.working_logits(s.params, s.x, cfg))
    np.testing.assert_allclose(z.sum(-1), 0.0, atol=1e-13)  # centred logits
    assert float(obs["accuracy"]) == 1.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_loss_runs_in_the_working_dtype_and_metrics_in_the_parameter_dtype(dtype):
    # Shapes and dtypes by tracing alone (no compile per dtype).
    cfg = m.Config(dtype=dtype, param_dtype="float64")
    s = jax.eval_shape(lambda k: m.step(m.init(k, cfg), cfg), jax.random.PRNGKey(2))
    z = jax.eval_shape(lambda s: m.working_logits(s.params, s.x, cfg), s)
    assert z.dtype == jnp.dtype(dtype)
    g = jax.eval_shape(lambda z, y: m.logit_grad(z, y, cfg), z, s.y)
    assert g.dtype == z.dtype
    obs = jax.eval_shape(lambda s: m.observe(s, cfg), s)
    for value in obs.values():
        assert value.shape == () and value.dtype == jnp.float64


def test_float16_run_stays_finite():
    cfg = m.Config(dtype="float16", param_dtype="float64", lr=4.0)
    s = _step(_init(jax.random.PRNGKey(2), cfg), cfg)
    chex.assert_tree_all_finite(_observe(s, cfg))


def test_stablemax_is_rational_and_normalised():
    z = jnp.array([[-3.0, -0.5, 0.0, 2.0]], jnp.float64)
    s = np.array([1 / 4, 1 / 1.5, 1.0, 3.0])
    cfg = m.Config(
        num_classes=4, dim=4, loss="stablemax", param_dtype="float64", dtype="float64"
    )
    labels = jnp.arange(4)
    losses = jax.jit(m._per_sample_loss, static_argnums=2)(
        jnp.repeat(z, 4, axis=0), labels, "stablemax"
    )
    np.testing.assert_allclose(losses, -np.log(s / s.sum()), rtol=1e-14)
    # d/dz_j of log Σ S − log S(z_y): S'(z_j)/ΣS − δ_jy S'(z_y)/S(z_y), S' = 1 or S²
    ds = np.where(np.asarray(z[0]) >= 0, 1.0, s**2)
    expected = ds / s.sum() - np.eye(4)[3] * ds[3] / s[3]
    np.testing.assert_allclose(
        jax.jit(m.logit_grad)(z, jnp.array([3]), cfg)[0], expected, rtol=1e-13
    )


def test_perp_step_is_orthogonal_to_each_tensor_and_keeps_the_gradient_norm():
    cfg = m.Config(
        num_classes=3,
        dim=5,
        hidden=4,
        init_scale=0.5,
        param_dtype="float64",
        dtype="float64",
    )
    s = _init(jax.random.PRNGKey(3), cfg)
    grads = jax.jit(jax.grad(m.loss))(s.params, s.x, s.y, cfg)
    new = _step(s, cfg.replace(grad="perp"))
    for w, w1, g in zip(s.params, new.params, grads, strict=True):
        w, d, g = (
            np.asarray(w),
            (np.asarray(w) - np.asarray(w1)) / cfg.lr,
            np.asarray(g),
        )
        np.testing.assert_allclose(np.vdot(d, w), 0.0, atol=1e-14)
        np.testing.assert_allclose(np.linalg.norm(d), np.linalg.norm(g), rtol=1e-12)


def test_collapsed_counts_samples_whose_correct_logit_gradient_is_exactly_zero():
    # float32 collapses at gap 24 ln 2 ≈ 16.64: gap 17 collapses, 16 does not.
    for gap, expected in ((16.0, 0.0), (17.0, 1.0)):
        cfg = m.Config(init_gap=gap, param_dtype="float64", dtype="float32")
        obs = _observe(_init(jax.random.PRNGKey(4), cfg), cfg)
        assert float(obs["collapsed"]) == expected
        # the rival's gradient ≈ e^{−g}/n is still non-zero
        assert float(obs["zero_grad"]) == 0.0
        assert (float(obs["loss"]) == 0.0) == bool(expected)
