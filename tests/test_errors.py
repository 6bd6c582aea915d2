"""Reports that name their cause: diverged runs, failed comparisons on a sweep,
capacity limits before running, checkpoints of another run; no statistics of nothing."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import collapse_jax as cj
from collapse_jax import _checkpoint
from collapse_jax.config import check_range

STEPS = 8


class Doubling:
    """``x ← rate·x`` from 1. Observe reports ``loss`` and ``cdnv`` (inf and NaN once
    ``x > 100``, the same record) and ``zz_early`` (inf once ``x > early``)."""

    traced = 0  # how many times init was traced: 0 means nothing was compiled

    @struct.dataclass
    class Config:
        rate: float = 2.0
        early: float = 1e9

        def __post_init__(self):
            check_range("rate", self.rate, 0.0)
            check_range("early", self.early, 0.0)

    @staticmethod
    def init(key, cfg):
        Doubling.traced += 1
        return {"x": jnp.ones(()), "key": key}

    @staticmethod
    def step(state, cfg):
        return {"x": state["x"] * cfg.rate, "key": state["key"]}

    @staticmethod
    def observe(state, cfg):
        x = state["x"]
        return {
            "loss": jnp.where(x > 100, jnp.inf, x),
            "cdnv": jnp.where(x > 100, jnp.nan, x),
            "zz_early": jnp.where(x > cfg.early, jnp.inf, x),
        }

    @staticmethod
    def check_steps(cfg, steps):
        if steps > STEPS:
            raise ValueError(f"steps={steps}: Doubling allows at most {STEPS}")


@pytest.fixture(scope="module")
def diverged_sweep():
    """Every run diverges: x = 2^t passes 100 at step 7, and 5 at step 3."""
    with pytest.warns(cj.DivergenceWarning) as caught:
        tr = cj.sweep(
            Doubling, Doubling.Config(), {"early": [1e9, 5.0]}, seeds=2, steps=STEPS
        )
    return tr, str(caught[0].message)


def test_metrics_keep_the_order_observe_returns_them_in(diverged_sweep):
    tr, _ = diverged_sweep
    assert list(tr.metrics) == ["loss", "cdnv", "zz_early"]  # not sorted


def test_divergence_names_the_earliest_bad_record_then_observes_first_metric(
    diverged_sweep,
):
    tr, _ = diverged_sweep
    by_point = {(d.grid_index, d.seed): d for d in tr.divergences}
    assert len(by_point) == 4 == len(set(tr.divergences))  # hashable, distinct
    for seed in (0, 1):
        # loss and cdnv go bad at the same record: observe lists loss first.
        late = by_point[(0, seed)]
        assert (late.metric, late.step) == ("loss", 7)
        # zz_early goes bad four records before: the earliest record wins.
        early = by_point[(1, seed)]
        assert (early.metric, early.step) == ("zz_early", 3)


def test_sweep_divergences_name_the_grid_values(diverged_sweep):
    tr, message = diverged_sweep
    texts = sorted(str(d) for d in tr.divergences)
    assert texts[0] == "early=1e+09, seed 0: loss non-finite at step 7"
    assert "early=5, seed 1: zz_early non-finite at step 3" in texts
    assert "grid point" not in message and "early=5, seed 0" in message
    assert "4 run(s) diverged (every run)" in message


def test_all_diverged_means_and_errors_are_nan_without_warnings(diverged_sweep):
    tr, _ = diverged_sweep
    assert tr.all_diverged
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's empty-slice warnings would raise
        assert np.all(np.isnan(tr.mean("loss"))) and np.all(np.isnan(tr.se("loss")))
        np.testing.assert_array_equal(tr.count("loss"), np.zeros((2, STEPS + 1)))
        agreement = cj.compare(tr, {"loss": np.ones(2)})
    assert not agreement.passed  # nothing finite to compare is a failure


def _trajectory(values, grid=None):
    """A Trajectory of one metric ``x`` (``[(G,) S, T]`` values), built directly."""
    values = np.asarray(values, dtype=np.float64)
    return cj.Trajectory(
        model="m",
        config={},
        steps=np.arange(values.shape[-1]),
        seeds=np.arange(values.shape[-2]),
        metrics={"x": values},
        grid={k: np.asarray(v) for k, v in (grid or {}).items()},
    )


def test_one_seed_has_no_standard_error_and_no_warning():
    tr = _trajectory([[1.0, 2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(np.isnan(tr.se("x")))
        np.testing.assert_array_equal(tr.mean("x"), [1.0, 2.0, 3.0])
        # compare then has only atol: a deterministic run is compared exactly.
        assert cj.compare(tr, {"x": 3.0}, atol=1e-12).passed
        assert not cj.compare(tr, {"x": 3.1}, atol=1e-12).passed
    assert not tr.all_diverged


def test_se_is_the_sample_std_over_root_n_of_the_finite_seeds():
    values = [[1.0, 2.0], [3.0, np.nan], [2.0, 5.0], [4.0, 1.0]]  # seed 1 diverged
    tr = _trajectory(values)
    kept = np.array(values)[[0, 2, 3]]
    np.testing.assert_allclose(tr.se("x"), kept.std(axis=0, ddof=1) / np.sqrt(3))
    np.testing.assert_allclose(tr.mean("x"), kept.mean(axis=0))


def test_compare_on_a_sweep_names_the_failing_grid_point_by_its_values():
    # [G=4, S=2, T=1]: grid point 2 (lr=0.2, lambda_w=0.01) is off by 1.
    values = np.zeros((4, 2, 1))
    values[2] += 1.0
    grid = {"lr": [0.1, 0.1, 0.2, 0.2], "lambda_w": [0.001, 0.01, 0.001, 0.01]}
    agreement = cj.compare(_trajectory(values, grid), {"x": np.zeros(4)}, atol=0.5)
    assert not agreement.passed
    assert agreement["x"].failed_points() == ["lr=0.2, lambda_w=0.001"]
    assert agreement["x"].worst_point == "lr=0.2, lambda_w=0.001"
    assert "x fails at lr=0.2, lambda_w=0.001" in str(agreement)
    assert agreement.summary()[0]["failed_grid_points"] == ["lr=0.2, lambda_w=0.001"]


def test_a_models_capacity_check_runs_before_anything_is_compiled():
    traced = Doubling.traced
    with pytest.raises(ValueError, match="steps=16: Doubling allows at most 8"):
        cj.simulate(Doubling, Doubling.Config(), steps=2 * STEPS)
    with pytest.raises(ValueError, match="steps=16"):
        cj.sweep(Doubling, Doubling.Config(), {"rate": [1.0, 2.0]}, steps=2 * STEPS)
    assert Doubling.traced == traced


def test_sweep_values_that_are_not_numbers_name_the_field():
    with pytest.raises(ValueError, match="grid: 'rate' needs real numbers"):
        cj.sweep(Doubling, Doubling.Config(), {"rate": ["fast"]}, steps=2)
    with pytest.raises(ValueError, match="rate=.* is out of range"):
        cj.sweep(Doubling, Doubling.Config(), {"rate": [1.0, np.inf]}, steps=2)


def test_checkpoint_of_another_run_says_which_settings_differ(tmp_path):
    run = {
        "model": "m",
        "config": {"lr": 0.1, "dim": 4, "steps": 3},  # a field named like a setting
        "grid": {},
        "seeds": [0, 1],
        "steps": 100,
        "every": 10,
        "key": 0,
        "chunk": 50,
    }
    _checkpoint.prepare(str(tmp_path), run)
    other = {
        **run,
        "config": {"lr": 0.2, "dim": 4, "steps": 3},
        "seeds": [0, 1, 2],
        "every": 20,
    }
    with pytest.raises(_checkpoint.CheckpointMismatchError) as err:
        _checkpoint.prepare(str(tmp_path), other)
    message = str(err.value)
    assert "(checkpoint vs this run: lr: 0.1 vs 0.2; " in message
    assert "seeds: [0, 1] vs [0, 1, 2]; every: 10 vs 20)" in message
    assert "dim" not in message and "'config'" not in message
    assert err.value.differences == {
        "lr": (0.1, 0.2),
        "seeds": ([0, 1], [0, 1, 2]),
        "every": (10, 20),
    }
    long = {**run, "seeds": list(range(20))}
    with pytest.raises(
        ValueError, match=r"seeds: \[0, 1\] vs \[0, 1, 2, 3, 4, \.\.\. "
    ):
        _checkpoint.prepare(str(tmp_path), long)
