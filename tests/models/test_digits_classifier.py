"""digits_classifier: a flax network's training run as an engine model.

Generic checks (shapes, finiteness, vmapped seeds, no retrace, bad configs) are in
tests/test_model_contract.py; here: bitwise determinism of minibatch training per
seed, NC1 of the penultimate features falling, the CNN's metric shapes, the data split.
"""

import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import digits_classifier as dc

# Minibatch momentum SGD on 10 images per class: the key in State drives the batches.
# tests/theory/test_digits_classifier.py runs the same config and length; the two files
# are one xdist group (one process), so the engine compiles its two programs once.
pytestmark = pytest.mark.xdist_group("digits_classifier")
CFG = dc.Config(widths=(32,), per_class=10, batch_size=50, lr=0.1)
STEPS, EVERY = 90, 30


@pytest.fixture(scope="module")
def runs():
    two = cj.simulate(dc, CFG, seeds=2, steps=STEPS, every=EVERY)
    again = cj.simulate(dc, CFG, seeds=2, steps=STEPS, every=EVERY)
    alone = cj.simulate(dc, CFG, seeds=[1], steps=STEPS, every=EVERY)
    return two, again, alone


def test_same_key_gives_bitwise_the_same_training_run(runs):
    two, again, _ = runs
    for name in two.metrics:
        np.testing.assert_array_equal(two[name], again[name], err_msg=name)


def test_a_seed_run_alone_equals_it_run_beside_another(runs):
    two, _, alone = runs
    for name in two.metrics:
        np.testing.assert_array_equal(two[name][1], alone[name][0], err_msg=name)
    assert not np.array_equal(two["loss"][0], two["loss"][1])  # seeds differ


def test_penultimate_nc1_decreases_and_training_error_falls(runs):
    two, _, _ = runs
    nc1 = two["nc1"][:, :, -1]  # [seed, time], the classifier's input
    assert np.all(nc1[:, -1] < nc1[:, 0]), nc1
    assert np.all(two["train_error"][:, -1] < two["train_error"][:, 0])


def test_cnn_records_one_nc1_per_conv_and_dense_layer():
    cfg = dc.Config(arch="cnn", channels=(2, 3), widths=(5,), per_class=2)
    state = jax.eval_shape(lambda k: dc.init(k, cfg), jax.random.PRNGKey(0))
    out = jax.eval_shape(lambda s: dc.observe(s, cfg), state)
    assert dc.layer_names(cfg) == ("conv_0", "conv_1", "dense_0", "classifier")
    assert out["nc1"].shape == out["cdnv"].shape == out["nc2_h"].shape == (4,)
    assert out["w_cos"].shape == (10, 10) and out["h_norm"].shape == (10,)


def test_split_is_disjoint_sorted_by_class_and_imbalanced_on_request():
    cfg = dc.Config(per_class=(5,) * 5 + (2,) * 5, test_per_class=3)
    x, y, x_test, y_test = dc._data(cfg)
    assert x.shape == (35, 8, 8) and x_test.shape == (30, 8, 8)
    np.testing.assert_array_equal(y, cfg.labels)
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 3))
    flat = {tuple(a.ravel()) for a in x}
    assert not flat & {tuple(a.ravel()) for a in x_test}
