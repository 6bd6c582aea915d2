"""Config validation: every model's float fields refuse what is not a finite real
number in range, naming the field; tracers and grid arrays pass."""

import dataclasses
import importlib.util
import math
import pathlib
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax import config, models
from collapse_jax.models import ufm


def _contract_registry(name):
    """A registry of tests/test_model_contract.py (tests import as files here)."""
    path = pathlib.Path(__file__).with_name("test_model_contract.py")
    spec = importlib.util.spec_from_file_location("_model_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


SMALL = _contract_registry("SMALL")
# Values users passed where a float belongs (a CLI --set, a typo, a list meant as a
# sweep): each used to be accepted and to crash inside JAX, or to read "out of range".
NOT_A_NUMBER = ["abc", "0.1", [0.1, 0.2], None, math.inf, True, 1 + 1j]


def _leaf_fields(cls):
    return [
        f.name for f in dataclasses.fields(cls) if f.metadata.get("pytree_node", True)
    ]


@pytest.mark.parametrize("name", sorted(set(SMALL) & set(models.available())))
def test_every_float_field_refuses_text_lists_none_and_inf_naming_the_field(name):
    model = models.get(name)
    for field in _leaf_fields(model.Config):
        for value in NOT_A_NUMBER:
            with pytest.raises(config.ConfigError) as err:
                model.Config(**{**SMALL[name], field: value})
            assert err.value.field == field, (field, value, str(err.value))
            assert str(err.value).startswith(f"{field}={value!r}"), str(err.value)
            assert "allowed" in str(err.value)


def test_messages_say_what_is_wrong_and_what_is_allowed():
    cases = {
        "abc": "lr='abc' is text, not a number: allowed real numbers in (0.0, inf)",
        None: "lr=None is None, not a number",
        math.inf: "lr=inf is out of range: allowed real numbers in (0.0, inf)",
        (0.1, 0.2): "is a sequence, not one number (to run several values, sweep",
    }
    for value, message in cases.items():
        with pytest.raises(ValueError) as err:
            ufm.Config(lr=value)
        assert message in str(err.value)
        assert err.value.allowed == "real numbers in (0.0, inf)"


def test_a_config_error_is_a_value_error_that_survives_pickling():
    with pytest.raises(ValueError) as err:
        ufm.Config(momentum=1.0)
    back = pickle.loads(pickle.dumps(err.value))
    assert isinstance(back, config.ConfigError)
    assert (back.field, back.value, str(back)) == ("momentum", 1.0, str(err.value))


def test_numbers_of_every_real_kind_and_grid_arrays_are_accepted():
    for value in (3, np.float32(0.2), np.int64(2), jnp.float32(0.5), 0.25):
        assert ufm.Config(lr=value).lr == value
    grid_cfg, _ = cj.expand_grid(ufm.Config(), {"lr": [0.1, 0.2]})
    np.testing.assert_allclose(grid_cfg.lr, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"lr=.* is out of range"):
        ufm.Config(lr=np.array([0.1, -0.2]))
    with pytest.raises(ValueError, match="lr=.* has dtype bool"):
        ufm.Config(lr=np.array([True]))


def test_tracers_and_jax_placeholders_pass_unchecked():
    grid_cfg, _ = cj.expand_grid(ufm.Config(), {"lr": [0.1, 0.2]})
    np.testing.assert_allclose(jax.vmap(lambda c: 2 * c.lr)(grid_cfg), [0.2, 0.4])
    assert jax.jit(lambda c: c.lr)(ufm.Config(lr=0.3)) == pytest.approx(0.3)
    shapes = jax.eval_shape(lambda c: c, ufm.Config())
    assert shapes.lr.shape == ()


def test_a_documented_vector_field_takes_a_tuple_of_its_shape():
    config.check_range("w", (0.5, 1.0), 0.0, shape=(2,))
    config.check_range("w", np.ones((3, 2)), 0.0, shape=(2,))  # a grid of vectors
    with pytest.raises(ValueError, match=r"w=\(0.5, 1.0, 2.0\) has shape \(3,\)"):
        config.check_range("w", (0.5, 1.0, 2.0), 0.0, shape=(2,))
    with pytest.raises(ValueError, match="w=.* is out of range"):
        config.check_range("w", (0.5, -1.0), 0.0, shape=(2,))
    with pytest.raises(ValueError, match="not a sequence of real numbers"):
        config.check_range("w", ("a", 1.0), 0.0, shape=(2,))


def test_int_choice_and_dtype_errors_carry_field_and_allowed_values():
    with pytest.raises(config.ConfigError) as err:
        config.check_int("dim", 2.5, 1)
    assert (err.value.field, err.value.allowed) == ("dim", "integers in [1, inf]")
    with pytest.raises(config.ConfigError) as err:
        config.check_choice("loss", "hinge", ("mse", "ce"))
    assert err.value.allowed == "one of ('mse', 'ce')"
    with pytest.raises(config.ConfigError, match="choose one of"):
        config.check_choice("loss", np.zeros(2), ("mse", "ce"))


def test_the_private_import_path_is_the_public_module():
    from collapse_jax import _config

    for name in config.__all__:
        assert getattr(_config, name) is getattr(config, name)
    assert cj.config_to_dict is config.config_to_dict
    assert cj.ConfigError is config.ConfigError
