"""Every theory module's ``predict(cfg)`` works with ``t`` omitted: it gives the
limits, each without the time axis its time-resolved prediction has."""

import importlib
import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from collapse_jax import models


def _contract_registry(name):
    """A registry of tests/test_model_contract.py (tests import as files here)."""
    path = pathlib.Path(__file__).with_name("test_model_contract.py")
    spec = importlib.util.spec_from_file_location("_model_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


SMALL = _contract_registry("SMALL")
NAMES = sorted(
    n
    for n in set(SMALL) & set(models.available())
    if importlib.util.find_spec(f"collapse_jax.theory.{n}") is not None
)


def _jitted(predict, cfg, *args):
    """``predict(cfg, *args)`` as one compiled program (``t`` is concrete: it sets
    scan lengths), not one per operation; eagerly where a prediction needs concrete
    values of the Config."""
    try:
        return jax.jit(lambda c: predict(c, *args))(cfg)
    except jax.errors.JAXTypeError:
        return predict(cfg, *args)


def _predict(name, *args):
    theory = importlib.import_module(f"collapse_jax.theory.{name}")
    cfg = models.get(name).Config(**SMALL[name])
    try:
        return _jitted(theory.predict, cfg, *args)
    except ValueError as err:  # the config lies outside the theory's premises
        return err


T = 7  # records in the time-resolved call: no metric of a SMALL config has 7 entries


@pytest.mark.parametrize("name", NAMES)
def test_predict_without_t_gives_limits_or_default_times(name):
    limit, timed = _predict(name), _predict(name, np.arange(T))
    if isinstance(limit, ValueError):
        # Refused with t omitted only where it is refused with t given too.
        assert isinstance(timed, ValueError), f"predict(cfg) raised {limit}"
        return
    assert isinstance(limit, dict)
    for metric, value in limit.items():
        value = np.asarray(value)
        assert value.dtype.kind == "f", (metric, value.dtype)
        if isinstance(timed, dict) and metric in timed:
            shape = np.shape(timed[metric])
            if shape[:1] == (T,):  # time-resolved: a limit, or default times
                inner = shape[1:]
                assert value.shape == inner or value.shape[1:] == inner, (metric, shape)
            else:  # a limit already: the same with t omitted
                assert value.shape == shape, (metric, value.shape, shape)


# The time-resolved predictions are checked against simulations in tests/theory; a
# limit given with t omitted must be where they end. Each late time is far past
# convergence (stated per case), so the two agree to rounding: rtol 1e-6 in float64.
LATE = {
    # sigmoid u(t) with e^{-2st}: s = 1, lr = 0.01, 1e5 steps: e^{-2000} = 0.
    "deep_linear": (
        dict(depth=2, in_dim=3, hidden=4, out_dim=3, singular_values=(2.0, 1.0),
             init="balanced", init_scale=0.3, dtype="float64"),
        100_000,
    ),
    # diversity and survival converge as (1 - 1/n)^t = (6/7)^3000 < 1e-200.
    "categorical_self_training": (dict(num_symbols=4, samples=7, dtype="float64"), 3000),
    # MAE on two features: h -> rho^{1/3} within 1e-9 well before step 20000.
    "linear_jepa": (dict(depth=2, objective="mae", lr=0.05, init_scale=0.3), 20_000),
    # vanilla ladder: the gap shrinks by (1 - 2 lr)^t = 0.8^1000 ~ 1e-97.
    "vector_quantizer": (
        dict(num_codes=3, dim=1, data="uniform", codebook_init="ladder",
             sampling="grid", optimizer="sgd", lr=0.1, init_offset=2.0,
             eval_samples=8),
        1000,
    ),
    # invariance loss: rho = (1 - a q)^2 = 0.64 per step at lr 0.1, 1000 steps.
    "linear_contrastive": (
        dict(dim=3, embed_dim=2, batch_size=0, loss="invariance", lr=0.1,
             inv_weight=0.25, aug_var=0.5),
        1000,
    ),
    # sampling never trains: every step is the initial stack.
    "attention": (dict(init="isotropic", tokens="orthonormal", seq_len=4, dim=5), 10),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LATE))
def test_the_limit_is_where_the_time_resolved_prediction_ends(name):
    overrides, late = LATE[name]
    theory = importlib.import_module(f"collapse_jax.theory.{name}")
    cfg = models.get(name).Config(**overrides)
    limit = _jitted(theory.predict, cfg)
    end = _jitted(theory.predict, cfg, np.array([0, late]))
    assert limit, f"{name}: no limit for a config its time-resolved theory covers"
    for metric, value in limit.items():
        np.testing.assert_allclose(
            value, np.asarray(end[metric])[-1], rtol=1e-6, atol=1e-12, err_msg=metric
        )
