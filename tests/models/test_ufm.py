"""UFM model: x64 requirement, loss definitions, optimisers, dtypes, metric shapes.

The generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import ufm
from collapse_jax.simulate import seed_keys


def test_float64_requires_x64():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="needs 64-bit JAX"):
            ufm.Config(dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", True)


def test_mse_loss_matches_its_definition():
    cfg = ufm.Config(
        num_classes=3,
        dim=2,
        per_class=(2, 1, 3),
        bias=True,
        lambda_w=0.1,
        lambda_h=0.2,
        lambda_b=0.3,
        dtype="float64",
    )
    p = ufm.init(jax.random.PRNGKey(0), cfg).params
    p = p._replace(b=jnp.array([0.1, -0.2, 0.3]))
    W, H, b = (np.asarray(x) for x in p)
    Y = np.eye(3)[:, cfg.labels]
    expected = (
        np.sum((W @ H + b[:, None] - Y) ** 2) / 12
        + 0.05 * np.sum(W**2)
        + 0.1 * np.sum(H**2)
        + 0.15 * np.sum(b**2)
    )
    assert float(ufm.loss(p, cfg)) == pytest.approx(expected, rel=1e-12)


def test_ce_loss_matches_its_definition():
    cfg = ufm.Config(
        num_classes=3,
        dim=2,
        per_class=2,
        loss="ce",
        lambda_w=0.1,
        lambda_h=0.2,
        dtype="float64",
    )
    p = ufm.init(jax.random.PRNGKey(1), cfg).params
    W, H = np.asarray(p.W), np.asarray(p.H)
    Z = W @ H
    logp = Z - np.log(np.exp(Z).sum(0, keepdims=True))
    fit = -np.mean(logp[cfg.labels, np.arange(6)])
    expected = fit + 0.05 * np.sum(W**2) + 0.1 * np.sum(H**2)
    assert float(ufm.loss(p, cfg)) == pytest.approx(expected, rel=1e-12)


def test_smoothed_losses_match_their_definitions():
    cfg = ufm.Config(
        num_classes=3, dim=2, per_class=2, loss="ls", smoothing=0.2, dtype="float64"
    )
    p = ufm.init(jax.random.PRNGKey(2), cfg).params
    W, H = np.asarray(p.W) * 30, np.asarray(p.H) * 30  # some samples misclassified
    p = p._replace(W=jnp.asarray(W), H=jnp.asarray(H))
    Z = W @ H
    logp = Z - np.log(np.exp(Z).sum(0, keepdims=True))
    reg = cfg.lambda_w / 2 * np.sum(W**2) + cfg.lambda_h / 2 * np.sum(H**2)
    q = 0.8 * np.eye(3)[:, cfg.labels] + 0.2 / 3  # (1 − ε) e_y + ε/K
    assert float(ufm.loss(p, cfg)) == pytest.approx(
        -np.sum(q * logp) / 6 + reg, rel=1e-12
    )
    ce = -np.mean(logp[cfg.labels, np.arange(6)])
    maxsup = ce + 0.2 * np.mean(Z.max(0) - Z.mean(0))
    assert np.any(Z.argmax(0) != cfg.labels)
    assert float(ufm.loss(p, cfg.replace(loss="maxsup"))) == pytest.approx(
        maxsup + reg, rel=1e-12
    )


def test_tethered_inputs_are_a_frame_plus_whitened_within_class_noise():
    cfg = ufm.Config(
        num_classes=3,
        dim=4,
        per_class=3,
        tether=True,
        input_scale=2.0,
        input_noise=0.3,
        dtype="float64",
    )

    def draws(key):  # one program: both inits and the loss
        state = ufm.init(key, cfg)
        plain = ufm.init(key, cfg.replace(tether=False))
        return state, plain, ufm.loss(state.params, cfg, state.inputs)

    state, plain, value = jax.jit(draws)(jax.random.PRNGKey(0))
    X = np.asarray(state.inputs)
    Y = np.eye(3)[:, cfg.labels]
    means = X @ Y.T / 3  # [d, K]
    E = X - means @ Y
    np.testing.assert_allclose(means.T @ means, 4.0 * np.eye(3), atol=1e-12)
    np.testing.assert_allclose(E @ E.T, 9 * 0.09 * np.eye(4), atol=1e-12)  # Nσ² I
    np.testing.assert_allclose(E @ Y.T, 0.0, atol=1e-12)
    # Features start at the inputs; W and H draws are those of the untethered model.
    np.testing.assert_array_equal(state.params.W, plain.params.W)
    np.testing.assert_allclose(state.params.H, plain.params.H + X, atol=1e-15)
    W, H = np.asarray(state.params.W), np.asarray(state.params.H)
    expected = (
        np.sum((W @ H - Y) ** 2) / 18
        + cfg.lambda_w / 2 * np.sum(W**2)
        + cfg.lambda_h / 2 * np.sum((H - X) ** 2)
    )
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_mixup_loss_weights_every_mixed_sample_by_one_over_2k():
    cfg = ufm.Config(
        num_classes=3, dim=2, per_class=2, mixup=True, mixup_alpha=0.5, dtype="float64"
    )

    def draws(key):  # one program: init and the loss there
        state = ufm.init(key, cfg)
        return state, ufm.loss(state.params, cfg)

    state, value = jax.jit(draws)(jax.random.PRNGKey(0))
    W, H = np.asarray(state.params.W), np.asarray(state.params.H)
    assert H.shape == (2, 36)  # 2KN columns
    sd = 0.5 / np.sqrt(2 * 0.5 + 1)  # standard deviation of Beta(0.5, 0.5)
    lam = np.array([0.5 + sd, 0.5 - sd])
    Y = np.zeros((3, 6, 3, 2))
    for i, a in enumerate(cfg.labels):
        for b in range(3):
            Y[:, i, b, :] = np.outer(np.eye(3)[a], lam) + np.outer(
                np.eye(3)[b], 1 - lam
            )
    Y = Y.reshape(3, 36)  # column (i, b, q) = (i K + b) 2 + q
    expected = (
        np.sum((W @ H - Y) ** 2) / (2 * 6 * 6)
        + cfg.lambda_w / 2 * np.sum(W**2)
        + cfg.lambda_h / 2 * np.sum(H**2) / 6
    )
    assert float(value) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(
        Y[:, ufm._pure_columns(cfg)], np.eye(3)[:, cfg.labels]
    )


OPTIMIZER_LR = {"gd": 0.5, "momentum": 0.05, "adam": 0.01}
SEEDS = 2


def _loss_before_and_after(cfg, steps, keys):
    """``([S], [S])``: the loss at ``init`` and after ``steps`` steps, for seeds
    0..SEEDS-1 on the engine's keys (tests/test_model_contract.py checks ``simulate``
    against this loop of init and step). The seeds run one after another."""

    def run(key):
        state = ufm.init(key, cfg)
        before = ufm.loss(state.params, cfg, state.inputs)
        state = jax.lax.fori_loop(0, steps, lambda _, s: ufm.step(s, cfg), state)
        return before, ufm.loss(state.params, cfg, state.inputs)

    return jax.lax.map(run, keys)


@pytest.fixture(scope="module")
def short_runs():
    """Every optimiser and loss for 200 steps, and the float32 run to the minimum of
    the float64 test for 3000 steps, in one compiled program."""
    runs = {
        f"{loss}-{optimizer}": (
            ufm.Config(loss=loss, optimizer=optimizer, lr=lr, bias=True),
            200,
        )
        for loss in ("mse", "ce")
        for optimizer, lr in OPTIMIZER_LR.items()
    }
    runs["float32"] = ufm.Config(lr=0.5), 3000
    run_all = jax.jit(
        lambda keys: {k: _loss_before_and_after(*run, keys) for k, run in runs.items()}
    )
    return jax.device_get(run_all(seed_keys(0, np.arange(SEEDS))))


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_every_optimizer_decreases_the_loss(short_runs, optimizer, loss):
    before, after = short_runs[f"{loss}-{optimizer}"]
    assert np.all(after < 0.8 * before)


def test_float64_run_keeps_float64_and_reaches_the_same_minimum_as_float32(
    short_runs,
):
    cfg64 = ufm.Config(lr=0.5, dtype="float64")
    tr64 = cj.simulate(ufm, cfg64, seeds=SEEDS, steps=3000, every=1000)
    _, loss32 = short_runs["float32"]  # the same Config in float32, same steps
    assert tr64["loss"].dtype == np.float64 and loss32.dtype == np.float32
    # The draws differ (normal sampling depends on dtype), but the landscape is benign:
    # both reach the same minimum value, up to float32 rounding of the loss (~1e-7).
    assert np.all(tr64["grad_norm"][:, -1] < 1e-5)
    np.testing.assert_allclose(loss32, tr64["loss"][:, -1], rtol=1e-5)


def test_observe_reports_documented_metrics():
    cfg = ufm.Config()
    # Shapes only: traced, never compiled.
    out = jax.eval_shape(
        lambda k: ufm.observe(ufm.init(k, cfg), cfg), jax.random.PRNGKey(0)
    )
    for name in (
        "loss",
        "grad_norm",
        "nc1",
        "nc2_h",
        "nc2_w",
        "nc3",
        "nc4",
        "cdnv",
        "equinorm_h",
        "equiangular_w",
        "b_mean",
    ):
        assert out[name].shape == (), name
    assert out["w_norm"].shape == (4,) and out["h_norm"].shape == (4,)
    assert out["class_logits"].shape == (4, 4)
