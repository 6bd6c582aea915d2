"""Trajectory files: written whole with the umask's mode, read back with the Config
rebuilt, and refused with the file and the missing entry named."""

import json
import os
import stat

import jax
import numpy as np
import pytest
from flax import struct

import collapse_jax as cj
from collapse_jax import _io
from collapse_jax.models import ufm
from collapse_jax.trajectory import ConfigRebuildWarning

CFG = ufm.Config(num_classes=3, dim=4, per_class=3, lr=0.2)


def _trajectory(cfg, grid=None, model="collapse_jax.models.ufm"):
    """A Trajectory with a random ``[(G,) S, T]`` metric, built without simulating."""
    lead = (len(next(iter(grid.values()))),) if grid else ()
    values = np.random.default_rng(0).normal(size=lead + (2, 3))
    return cj.Trajectory(
        model=model,
        config=cj.config_to_dict(cfg),
        steps=np.arange(3),
        seeds=np.arange(2),
        metrics={"loss": values, "cdnv": values**2},
        grid=grid or {},
        cfg=cfg,
    )


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0, 0o666)])
def test_saved_files_get_the_mode_the_umask_gives_new_files(
    tmp_path, umask, mask, mode
):
    umask(mask)
    path = tmp_path / "run.npz"
    _trajectory(CFG).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    _io.atomic_write(tmp_path / "note.txt", "text")
    assert stat.S_IMODE(os.stat(tmp_path / "note.txt").st_mode) == mode


def test_atomic_write_takes_bytes_text_or_a_writer_and_leaves_no_temporary(tmp_path):
    _io.atomic_write(tmp_path / "a", b"\x00bytes")
    _io.atomic_write(tmp_path / "b", "tëxt")
    _io.atomic_write(tmp_path / "sub" / "c", lambda f: f.write(b"from a callback"))
    assert (tmp_path / "a").read_bytes() == b"\x00bytes"
    assert (tmp_path / "b").read_text(encoding="utf-8") == "tëxt"
    assert (tmp_path / "sub" / "c").read_bytes() == b"from a callback"

    def broken(f):
        f.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        _io.atomic_write(tmp_path / "a", broken)
    assert (tmp_path / "a").read_bytes() == b"\x00bytes"  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "sub"]


def test_a_sweep_config_is_rebuilt_as_sweep_built_it(tmp_path):
    grid_cfg, values = cj.expand_grid(CFG, {"lr": [0.1, 0.2], "lambda_w": [1e-3]})
    _trajectory(grid_cfg, values).save(tmp_path / "run.npz")
    back = cj.Trajectory.load(tmp_path / "run.npz")
    assert list(back.metrics) == ["loss", "cdnv"]  # the saved order
    assert jax.tree.structure(back.cfg) == jax.tree.structure(grid_cfg)
    for a, b in zip(jax.tree.leaves(back.cfg), jax.tree.leaves(grid_cfg), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert back.cfg.per_class == CFG.per_class


@struct.dataclass
class LocalConfig:
    """A user's Config outside any model module, with a tuple and an inf."""

    sizes: tuple = struct.field(pytree_node=False, default=(2, 3))
    cap: float = float("inf")


def test_a_config_class_outside_the_model_module_is_rebuilt(tmp_path):
    cfg = LocalConfig()
    _trajectory(cfg, model="my_unimportable_model").save(tmp_path / "run.npz")
    back = cj.Trajectory.load(tmp_path / "run.npz")
    assert back.cfg == cfg


def test_a_float64_run_read_without_x64_warns_how_to_enable_it(tmp_path):
    _trajectory(CFG.replace(dtype="float64")).save(tmp_path / "run.npz")
    with jax.enable_x64(False):
        with pytest.warns(ConfigRebuildWarning, match="jax_enable_x64', True"):
            back = cj.Trajectory.load(tmp_path / "run.npz")
        assert back.cfg is None
        np.testing.assert_array_equal(back["loss"], _trajectory(CFG)["loss"])
        with pytest.raises(ValueError, match="run.npz: cfg not rebuilt.*float64"):
            cj.Trajectory.load(tmp_path / "run.npz", require_cfg=True)
    assert cj.Trajectory.load(tmp_path / "run.npz").cfg.dtype == "float64"


def test_an_unimportable_model_warns_and_keeps_the_data(tmp_path):
    tr = _trajectory(CFG, model="no_such_package.model")
    header_less = cj.Trajectory(**{**tr.__dict__, "cfg": None})  # no Config class
    header_less.save(tmp_path / "run.npz")
    with pytest.warns(ConfigRebuildWarning, match="no_such_package.model does not"):
        back = cj.Trajectory.load(tmp_path / "run.npz")
    np.testing.assert_array_equal(back["cdnv"], tr["cdnv"])


def test_foreign_files_are_refused_naming_the_file_and_what_is_missing(tmp_path):
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"foreign.npz: .*no 'header' entry.*\['a'\]"):
        cj.Trajectory.load(tmp_path / "foreign.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="one.npy: not a collapse_jax trajectory"):
        cj.Trajectory.load(tmp_path / "one.npy")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="text.npz: not a collapse_jax trajectory"):
        cj.Trajectory.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        cj.Trajectory.load(tmp_path / "absent.npz")

    path = tmp_path / "run.npz"
    _trajectory(CFG).save(path)
    with np.load(path) as data:
        arrays = dict(data)
    header = json.loads(bytes(arrays["header"]).decode())
    without_metric = {k: v for k, v in arrays.items() if k != "metric/cdnv"}
    np.savez(tmp_path / "cut.npz", **without_metric)
    with pytest.raises(
        ValueError, match="cut.npz: the file lacks the array 'metric/cdnv'"
    ):
        cj.Trajectory.load(tmp_path / "cut.npz")
    del header["metric_names"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(
        ValueError, match=r"old.npz: the header lacks \['metric_names'\]"
    ):
        cj.Trajectory.load(tmp_path / "old.npz")
