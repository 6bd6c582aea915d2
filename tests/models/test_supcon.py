"""supcon: the loss against a plain NumPy SupCon, embeddings, the GD norm identity,
the gradient on the sphere, float32 and Adam.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py. Few configs, each function jitted once per config.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.models import supcon as m

CFG = dict(num_classes=3, dim=4, per_class=(4, 3, 2), temperature=0.4)
init, loss, step, observe, embeddings = (
    jax.jit(f) for f in (m.init, m.loss, m.step, m.observe, m.embeddings)
)
grad = jax.jit(jax.grad(m.loss))


def _supcon_numpy(h, labels, tau):
    """Khosla et al. 2020 (arXiv 2004.11362), L_out, averaged over anchors."""
    N = len(labels)
    total = 0.0
    for i in range(N):
        others = [a for a in range(N) if a != i]
        log_z = np.log(sum(np.exp(h[i] @ h[a] / tau) for a in others))
        pos = [p for p in others if labels[p] == labels[i]]
        total += np.mean([log_z - h[i] @ h[p] / tau for p in pos])
    return total / N


@pytest.mark.parametrize("relu", [False, True])
def test_loss_matches_a_plain_numpy_supcon(relu):
    cfg = m.Config(**CFG, relu=relu, dtype="float64")
    u = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (cfg.num_samples, cfg.dim)))
    u = u + 0.5 if relu else u  # keep every ReLU embedding defined
    h = np.asarray(embeddings(u, cfg))
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, rtol=1e-14)
    if relu:
        assert np.all(h >= 0)
        np.testing.assert_array_equal(h == 0, np.asarray(u) <= 0)
    expected = _supcon_numpy(h, cfg.labels, cfg.temperature)
    assert float(loss(u, cfg)) == pytest.approx(expected, rel=1e-13)


def test_relu_init_starts_in_the_positive_orthant_on_the_sphere():
    cfg = m.Config(**CFG, relu=True, dtype="float64")
    u = init(jax.random.PRNGKey(0), cfg).u
    assert np.all(np.asarray(u) >= 0)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("relu", [False, True])
def test_gd_step_is_orthogonal_to_u_so_norms_grow_by_lr2_grad2(relu):
    # ∇_u L ⊥ u row by row (L depends on u_i only through its direction), so
    # ‖u_i − lr g_i‖² = ‖u_i‖² + lr²‖g_i‖² exactly, up to rounding.
    cfg = m.Config(**CFG, relu=relu, lr=0.3, dtype="float64")
    state = init(jax.random.PRNGKey(1), cfg)
    g = grad(state.u, cfg)
    np.testing.assert_allclose(jnp.sum(g * state.u, axis=1), 0.0, atol=1e-15)
    new = step(state, cfg).u
    np.testing.assert_allclose(
        jnp.sum(new**2, axis=1),
        jnp.sum(state.u**2, axis=1) + 0.3**2 * jnp.sum(g**2, axis=1),
        rtol=1e-14,
    )


def test_grad_norm_is_the_gradient_on_the_sphere_whatever_the_scale_of_u():
    cfg = m.Config(**CFG, dtype="float64")
    u = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (cfg.num_samples, cfg.dim)))
    h = embeddings(u, cfg)

    y = cfg.labels
    eye = np.eye(cfg.num_samples, dtype=bool)
    pos = (y[:, None] == y[None, :]) & ~eye

    def supcon_of_h(h):  # SupCon of raw h, no normalisation inside
        S = h @ h.T / cfg.temperature
        log_z = jax.nn.logsumexp(jnp.where(eye, -jnp.inf, S), axis=1)
        return jnp.mean(log_z - jnp.sum(jnp.where(pos, S, 0.0), 1) / pos.sum(1))

    @jax.jit
    def riemannian_norm(h):
        g = jax.grad(supcon_of_h)(h)
        return jnp.linalg.norm(g - jnp.sum(g * h, axis=1, keepdims=True) * h)

    expected = float(riemannian_norm(h))
    scales = np.asarray([[0.2], [5.0]] * (cfg.num_samples // 2) + [[1.0]])
    for v in (u, u * scales):
        state = m.State(v, None)
        assert float(observe(state, cfg)["grad_norm"]) == pytest.approx(
            expected, rel=1e-12
        )


def test_collapsed_orthogonal_embeddings_have_the_observed_geometry():
    cfg = m.Config(**CFG, dtype="float64")
    eye = np.eye(cfg.dim)[: cfg.num_classes]
    state = m.State(jnp.asarray(eye[cfg.labels] * 2.0), None)
    obs = observe(state, cfg)
    for name in ("class_cos_mean", "class_cos_min", "class_cos_max", "orth_distance"):
        assert float(obs[name]) == pytest.approx(0.0, abs=1e-15), name
    assert float(obs["within_cos"]) == pytest.approx(1.0, abs=1e-15)
    assert float(obs["nc1"]) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_float32_default_keeps_float32_in_state_and_metrics(optimizer):
    # Shapes and dtypes only (no compile); the float32 runs themselves are in
    # tests/test_model_contract.py.
    cfg = m.Config(**CFG, optimizer=optimizer, lr=0.05)
    state = jax.eval_shape(m.init, jax.random.PRNGKey(5), cfg)
    state = jax.eval_shape(m.step, state, cfg)
    assert state.u.dtype == jnp.float32
    for leaf in jax.tree.leaves(state.opt_state):
        assert leaf.dtype in (jnp.float32, jnp.int32), leaf
    for name, value in jax.eval_shape(m.observe, state, cfg).items():
        assert value.shape == () and value.dtype == jnp.float32, name
