"""Layer probe: the features entering or leaving every Dense/Conv layer of a flax
linen network, flattened to ``[N, features]``, and the last of them being the
penultimate features the network's classifier uses."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax.metrics import probe
from collapse_jax.models import digits_classifier as dc

N = 5


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(7)(x))
        x = nn.relu(nn.Dense(4)(x))
        return nn.Dense(3)(x)


class _CNN(nn.Module):
    @nn.compact
    def __call__(self, x):  # [N, 8, 8, 1]
        x = nn.relu(nn.Conv(2, (3, 3))(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(3, (3, 3))(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(4)(x)


def _setup(module, shape):
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *shape))
    return module.init(jax.random.PRNGKey(0), x), x


def test_mlp_probe_shapes_inputs_and_outputs():
    v, x = _setup(_MLP(), (6,))
    inputs = probe.layer_features(_MLP(), v, x)
    outputs = probe.layer_features(_MLP(), v, x, side="output")
    assert list(inputs) == ["Dense_0", "Dense_1", "Dense_2"]
    assert [a.shape for a in inputs.values()] == [(N, 6), (N, 7), (N, 4)]
    assert [a.shape for a in outputs.values()] == [(N, 7), (N, 4), (N, 3)]
    np.testing.assert_array_equal(inputs["Dense_0"], x)


def test_cnn_probe_flattens_conv_features():
    v, x = _setup(_CNN(), (8, 8, 1))
    inputs = probe.layer_features(_CNN(), v, x)
    outputs = probe.layer_features(_CNN(), v, x, side="output")
    # conv 1 sees 8·8·1, conv 2 the pooled 4·4·2, the Dense the flattened 4·4·3
    assert {k: a.shape for k, a in inputs.items()} == {
        "Conv_0": (N, 64),
        "Conv_1": (N, 32),
        "Dense_0": (N, 48),
    }
    assert outputs["Conv_0"].shape == (N, 8 * 8 * 2)
    assert outputs["Dense_0"].shape == (N, 4)


def test_last_probed_input_is_the_penultimate_feature_the_classifier_uses():
    v, x = _setup(_MLP(), (6,))
    out, feats = probe.apply_with_features(_MLP(), v, x)
    p = v["params"]

    def dense(name, h):
        return h @ p[name]["kernel"] + p[name]["bias"][None, :]

    h = jax.nn.relu(dense("Dense_1", jax.nn.relu(dense("Dense_0", x))))
    np.testing.assert_allclose(feats["Dense_2"], h, rtol=1e-12)
    logits = dense("Dense_2", feats["Dense_2"])
    np.testing.assert_allclose(out, logits, rtol=1e-12)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_digits_network_logits_are_the_classifier_of_its_probed_features(arch):
    cfg = dc.Config(arch=arch, widths=(6,), channels=(2, 3), per_class=2)
    v = dc.init(jax.random.PRNGKey(0), cfg).params
    x = jnp.asarray(dc._data(cfg)[0])
    out, feats = probe.apply_with_features(dc.network(cfg), v, x)
    assert tuple(feats) == dc.layer_names(cfg)
    head = v["params"]["classifier"]
    np.testing.assert_allclose(
        out,
        feats["classifier"] @ head["kernel"] + head["bias"][None, :],
        rtol=1e-5,
        atol=1e-6,
    )


def test_probe_runs_under_jit_and_rejects_a_bad_side():
    v, x = _setup(_MLP(), (6,))
    jitted = jax.jit(lambda v, x: probe.layer_features(_MLP(), v, x))(v, x)
    assert set(jitted) == {"Dense_0", "Dense_1", "Dense_2"}
    with pytest.raises(ValueError, match="side='middle'"):
        probe.layer_features(_MLP(), v, x, side="middle")
