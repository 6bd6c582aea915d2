"""The engine: shapes, determinism, chunking, vmapped seeds, sweeps, divergence, files."""

import os

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import collapse_jax as cj
from collapse_jax.models import ufm

# One Config for every UFM run here (and in tests/test_resume.py): its programs compile
# once per layout and per number of records in a chunk, so the UFM runs below keep to
# 1-4 records per chunk, simulations to one block (up to 64 seeds), sweeps to one
# layout (SWEEP_BLOCKS), and vary float fields only.
CFG = ufm.Config(num_classes=3, dim=4, per_class=3, lr=0.2)


def test_trajectory_shapes_and_steps():
    tr = cj.simulate(ufm, CFG, seeds=3, steps=40, every=10)
    np.testing.assert_array_equal(tr.steps, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(tr.seeds, [0, 1, 2])
    chex.assert_shape(tr["loss"], (3, 5))
    chex.assert_shape(tr["w_norm"], (3, 5, 3))
    chex.assert_shape(tr["class_logits"], (3, 5, 3, 3))
    chex.assert_tree_all_finite(tr.metrics)
    assert tr.mean("loss").shape == (5,)
    assert tr.final("loss").shape == (3,)


def test_same_key_gives_identical_bits_and_other_key_differs():
    a = cj.simulate(ufm, CFG, seeds=2, steps=30, every=10, key=7)
    b = cj.simulate(ufm, CFG, seeds=2, steps=30, every=10, key=7)
    c = cj.simulate(ufm, CFG, seeds=2, steps=30, every=10, key=8)
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert not np.array_equal(a["loss"], c["loss"])


# Chunks of one record, of two (an even split) and of three (the last chunk shorter).
@pytest.mark.parametrize("chunk", [10, 20, 30])
def test_chunked_run_equals_unchunked_bit_for_bit(chunk):
    whole = cj.simulate(ufm, CFG, seeds=3, steps=40, every=10)
    parts = cj.simulate(ufm, CFG, seeds=3, steps=40, every=10, chunk=chunk)
    for name in whole.metrics:
        np.testing.assert_array_equal(whole[name], parts[name], err_msg=name)


def test_seed_results_do_not_depend_on_the_other_seeds():
    many = cj.simulate(ufm, CFG, seeds=4, steps=50, every=25)
    some = cj.simulate(ufm, CFG, seeds=[1, 3], steps=50, every=25)
    np.testing.assert_array_equal(many["loss"][[1, 3]], some["loss"])


def test_vmapped_seeds_equal_single_seed_runs():
    batch = cj.simulate(ufm, CFG, seeds=3, steps=60, every=20)
    for s in range(3):
        single = cj.simulate(ufm, CFG, seeds=[s], steps=60, every=20)
        for name in ("loss", "w_norm", "nc1"):
            # A batched matmul may sum in another order than an unbatched one.
            np.testing.assert_allclose(
                batch[name][s], single[name][0], rtol=2e-6, atol=1e-7, err_msg=name
            )


# The sweeps here fill 12 slots in blocks of 4, as in the padding test below: one
# sweep program for the file.
SWEEP_BLOCKS = dict(block_size=4)


def test_sweep_grid_axis_equals_separate_runs():
    grid = {"lambda_w": [1e-3, 1e-2], "lr": [0.1, 0.2]}
    tr = cj.sweep(ufm, CFG, grid, seeds=3, steps=40, every=20, **SWEEP_BLOCKS)
    chex.assert_shape(tr["loss"], (4, 3, 3))
    np.testing.assert_allclose(tr.grid["lambda_w"], [1e-3, 1e-3, 1e-2, 1e-2])
    np.testing.assert_allclose(tr.grid["lr"], [0.1, 0.2, 0.1, 0.2])
    for g in range(4):
        cfg = CFG.replace(
            lambda_w=float(tr.grid["lambda_w"][g]), lr=float(tr.grid["lr"][g])
        )
        one = cj.simulate(ufm, cfg, seeds=3, steps=40, every=20)
        np.testing.assert_allclose(tr["loss"][g], one["loss"], rtol=2e-6)


def test_second_call_does_not_recompile():
    compiled = cj.simulate.__globals__["_compiled"](ufm)
    programs = (compiled.start, compiled.advance, compiled.whole)
    for chunk in (None, 10):  # one program, then chunked
        cj.simulate(ufm, CFG, seeds=2, steps=20, every=10, chunk=chunk)
        before = [p._cache_size() for p in programs]
        new = CFG.replace(lr=0.05, lambda_h=0.02)
        cj.simulate(ufm, new, seeds=2, steps=20, every=10, chunk=chunk)
        after = [p._cache_size() for p in programs]
        assert after == before  # float hyperparameters are traced, not baked in


def test_bad_engine_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="every=3 must divide steps=10"):
        cj.simulate(ufm, CFG, steps=10, every=3)
    with pytest.raises(ValueError, match="seeds=0"):
        cj.simulate(ufm, CFG, steps=10, seeds=0)
    with pytest.raises(ValueError, match="chunk=15 must be a multiple of every=10"):
        cj.simulate(ufm, CFG, steps=30, every=10, chunk=15)
    with pytest.raises(ValueError, match="'dim' is a static field"):
        cj.sweep(ufm, CFG, {"dim": [2, 3]}, steps=10)
    with pytest.raises(ValueError, match="'nope' is not a field"):
        cj.sweep(ufm, CFG, {"nope": [1.0]}, steps=10)
    with pytest.raises(ValueError, match="lambda_w=.* out of range"):
        cj.sweep(ufm, CFG, {"lambda_w": [1e-3, -1.0]}, steps=10)


class _Blowup:
    """A model whose odd-keyed seeds become inf at step 3 (x ← inf once t = 2)."""

    @struct.dataclass
    class Config:
        pass

    @staticmethod
    def init(key, cfg):
        return {"x": jnp.ones(()), "t": jnp.zeros((), jnp.int32), "key": key}

    @staticmethod
    def step(state, cfg):
        blow = (state["t"] == 2) & (state["key"][1] % 2 == 1)
        x = jnp.where(blow, jnp.inf, state["x"])
        return {"x": x, "t": state["t"] + 1, "key": state["key"]}

    @staticmethod
    def observe(state, cfg):
        return {"x": state["x"]}


def test_divergence_is_reported_with_seed_and_step_and_other_seeds_kept():
    keys = np.asarray(cj.simulate.__globals__["seed_keys"](0, np.arange(6)))
    odd = [s for s in range(6) if keys[s, 1] % 2 == 1]
    assert odd, "need at least one seed whose key word is odd"
    with pytest.warns(cj.DivergenceWarning, match="diverged"):
        tr = cj.simulate(_Blowup, _Blowup.Config(), seeds=6, steps=6)
    assert sorted(d.seed for d in tr.divergences) == odd
    assert all(d.step == 3 and d.metric == "x" for d in tr.divergences)
    assert tr.finite.sum() == 6 - len(odd)
    np.testing.assert_array_equal(tr.mean("x"), np.ones(7))  # finite seeds only


def test_trajectory_save_load_roundtrip_and_atomic_write(tmp_path):
    tr = cj.sweep(
        ufm, CFG, {"lr": [0.1, 0.2]}, seeds=6, steps=20, every=10, **SWEEP_BLOCKS
    )
    path = tmp_path / "run.npz"
    tr.save(path)
    back = cj.Trajectory.load(path)
    for name in tr.metrics:
        np.testing.assert_array_equal(tr[name], back[name])
    np.testing.assert_array_equal(back.grid["lr"], tr.grid["lr"])
    assert back.cfg.num_classes == CFG.num_classes
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temp file left


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    tr = cj.simulate(ufm, CFG, steps=20, every=10)
    path = tmp_path / "run.npz"

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        tr.save(path)
    assert list(tmp_path.iterdir()) == []


def test_compare_uses_seed_standard_error():
    tr = cj.simulate(ufm, CFG, seeds=8, steps=20, every=10)
    mean, se = tr.mean("loss")[-1], tr.se("loss")[-1]
    assert se > 0
    np.testing.assert_allclose(se, tr.final("loss").std(ddof=1) / np.sqrt(8))
    inside = cj.compare(tr, {"loss": mean + 3.9 * se}, z=4)
    outside = cj.compare(tr, {"loss": mean + 4.1 * se}, z=4)
    assert inside.passed and not outside.passed
    assert inside["loss"].at == "final"
    along = cj.compare(tr, {"loss": tr.mean("loss")}, z=0)
    assert along["loss"].at == "trajectory" and along.passed
    with pytest.raises(KeyError, match="does not record"):
        cj.compare(tr, {"nope": 0.0})
    with pytest.raises(ValueError, match="matches neither"):
        cj.compare(tr, {"loss": np.zeros(7)})


def test_block_size_depends_on_the_model_not_on_the_seed_count():
    plan = cj.simulate.__globals__["_plan"]
    big = ufm.Config(num_classes=10, dim=64, per_class=50)
    blocks = {
        plan(ufm, big, {}, 10, s, 10, 0, None, 1, None).layout.block
        for s in (1, 7, 300)
    }
    assert len(blocks) == 1
    (block,) = blocks
    state_bytes = (10 * 64 + 64 * 500) * 4
    assert (
        1 <= block <= max(1, cj.simulate.__globals__["_CPU_BLOCK_BYTES"] // state_bytes)
    )


@pytest.mark.parametrize("block_size", [1, 5])
def test_other_block_sizes_agree_to_rounding(block_size):
    # A batch of another width compiles to other code: the last bits of reductions may
    # differ. float32 sums of <= 100 terms: relative error <= 100 * 2^-23 ~ 1.2e-5.
    ref = cj.simulate(ufm, CFG, seeds=5, steps=40, every=20)
    other = cj.simulate(ufm, CFG, seeds=5, steps=40, every=20, block_size=block_size)
    for name in ref.metrics:
        np.testing.assert_allclose(
            other[name], ref[name], rtol=1.2e-5, atol=1e-7, err_msg=name
        )


def test_padding_runs_never_leak_into_the_trajectory():
    # 3 grid points x 3 seeds in blocks of 4: 12 slots, 3 of them padding, which share
    # the last block with grid point 2's third seed.
    swept = cj.sweep(ufm, CFG, {"lr": [0.1, 0.2, 0.3]}, seeds=3, steps=20, every=10,
                     **SWEEP_BLOCKS)  # fmt: skip
    chex.assert_shape(swept["loss"], (3, 3, 3))
    # Grid point 2 alone, its seeds in the first block, none beside padding: 9 seeds
    # fill the same 12 slots, so it runs the same compiled program.
    last = cj.sweep(
        ufm, CFG, {"lr": [0.3]}, seeds=9, steps=20, every=10, **SWEEP_BLOCKS
    )
    chex.assert_shape(last["loss"], (1, 9, 3))
    np.testing.assert_array_equal(swept["loss"][2], last["loss"][0, :3])


def test_a_changed_step_function_is_compiled_anew():
    class Counter:
        @struct.dataclass
        class Config:
            pass

        @staticmethod
        def init(key, cfg):
            return {"x": jnp.zeros(())}

        @staticmethod
        def step(state, cfg):
            return {"x": state["x"] + 1.0}

        @staticmethod
        def observe(state, cfg):
            return {"x": state["x"]}

    before = cj.simulate(Counter, Counter.Config(), steps=3)
    Counter.step = staticmethod(lambda state, cfg: {"x": state["x"] + 2.0})
    after = cj.simulate(Counter, Counter.Config(), steps=3)
    np.testing.assert_array_equal(before["x"][0], [0, 1, 2, 3])
    np.testing.assert_array_equal(after["x"][0], [0, 2, 4, 6])


def test_block_size_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="block_size=0 must be an integer >= 1"):
        cj.simulate(ufm, CFG, steps=10, block_size=0)
