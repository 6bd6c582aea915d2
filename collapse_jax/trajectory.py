"""The result of a simulation: metric arrays over (grid,) seed and time, saved atomically."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from collapse_jax._io import atomic_write
from collapse_jax.config import to_jsonable

_FORMAT = "collapse_jax.trajectory/1"


class ConfigRebuildWarning(UserWarning):
    """``Trajectory.load`` could not rebuild the run's Config; ``cfg`` is None."""


def grid_point(grid: Mapping[str, Any], index: int) -> dict[str, float]:
    """Field -> value of grid point ``index``, from ``[G]`` values per field."""
    return {k: float(v[index]) for k, v in grid.items()}


def format_grid_point(values: Mapping[str, Any]) -> str:
    """``"lr=0.1, lambda_w=0.01"``: a grid point named by its values."""
    return ", ".join(f"{k}={float(v):.6g}" for k, v in values.items())


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A run whose metrics first became NaN/inf at ``step``.

    ``metric`` is the first metric, in the order ``observe`` returns them, that was
    non-finite at that record. In a sweep, ``grid_index`` is the grid point and
    ``grid`` its values (field -> value).
    """

    seed: int
    step: int
    metric: str
    grid_index: int | None = None
    # Not hashed (a dict): grid_index already tells the grid points apart.
    grid: dict[str, float] | None = dataclasses.field(default=None, hash=False)

    def __str__(self) -> str:
        if self.grid:
            where = f"{format_grid_point(self.grid)}, "
        elif self.grid_index is not None:
            where = f"grid point {self.grid_index}, "
        else:
            where = ""
        return f"{where}seed {self.seed}: {self.metric} non-finite at step {self.step}"


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Recorded metrics of a ``simulate`` or ``sweep`` run.

    Attributes:
      model: import path of the model module, e.g. ``collapse_jax.models.ufm``.
      config: JSON-ready record of the config (grid fields hold lists).
      steps: ``[T]`` step index of each record (0 is the initial state).
      seeds: ``[S]`` seed ids; seed ``s`` uses ``fold_in(PRNGKey(key), s)``.
      metrics: name -> ``[(G,) S, T, *metric_shape]`` array.
      grid: for a sweep, field name -> ``[G]`` values; empty for ``simulate``.
      divergences: seeds whose metrics became non-finite, with the first bad step.
      cfg: the Config object itself when available (not serialised as such).
    """

    model: str
    config: dict[str, Any]
    steps: np.ndarray
    seeds: np.ndarray
    metrics: dict[str, np.ndarray]
    grid: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    divergences: tuple[Divergence, ...] = ()
    cfg: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_sweep(self) -> bool:
        return bool(self.grid)

    @property
    def finite(self) -> np.ndarray:
        """``[(G,) S]`` bool: True for seeds whose every metric stayed finite."""
        lead = 2 if self.is_sweep else 1
        ok = None
        for values in self.metrics.values():
            axes = tuple(range(lead, values.ndim))
            good = np.all(np.isfinite(values), axis=axes)
            ok = good if ok is None else ok & good
        return ok

    @property
    def all_diverged(self) -> bool:
        """True when no run stayed finite: every seed (of every grid point) diverged."""
        return not bool(np.any(self.finite))

    def grid_point(self, index: int) -> dict[str, float]:
        """Field -> value of grid point ``index`` of a sweep."""
        return grid_point(self.grid, index)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics[name]

    def _finite_values(self, name: str) -> tuple[np.ndarray, np.ndarray, int]:
        """``(values, mask, seed axis)``: float64 values with diverged seeds zeroed,
        and the mask of finite seeds broadcast to their shape."""
        values = np.asarray(self.metrics[name], dtype=np.float64)
        finite = self.finite.reshape(
            self.finite.shape + (1,) * (values.ndim - self.finite.ndim)
        )
        mask = np.broadcast_to(finite, values.shape)
        return np.where(mask, values, 0.0), mask, 1 if self.is_sweep else 0

    def count(self, name: str) -> np.ndarray:
        """Seeds that stayed finite: ``[(G,) T, *metric_shape]`` ints."""
        _, mask, axis = self._finite_values(name)
        return mask.sum(axis=axis)

    def mean(self, name: str) -> np.ndarray:
        """Mean over finite seeds: ``[(G,) T, *metric_shape]``; NaN where none is."""
        values, mask, axis = self._finite_values(name)
        n = mask.sum(axis=axis)
        total = values.sum(axis=axis)
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    def se(self, name: str) -> np.ndarray:
        """Standard error of the mean over finite seeds, ``std(ddof=1) / sqrt(n)``:
        ``[(G,) T, *metric_shape]``; NaN where fewer than two seeds are finite (one
        seed has no standard error)."""
        values, mask, axis = self._finite_values(name)
        n = mask.sum(axis=axis)
        mean = np.expand_dims(self.mean(name), axis)
        squares = np.where(mask, (values - np.nan_to_num(mean)) ** 2, 0.0)
        var = squares.sum(axis=axis) / np.maximum(n - 1, 1)
        return np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)

    def final(self, name: str) -> np.ndarray:
        """Values at the last record: ``[(G,) S, *metric_shape]``."""
        axis = 2 if self.is_sweep else 1
        return np.take(self.metrics[name], -1, axis=axis)

    def save(self, path: str | os.PathLike) -> None:
        """Writes one ``.npz`` file atomically (a crash never leaves a half file).

        The file holds the metrics, steps, seeds, grid values and divergences, and the
        config record with the Config's class, from which :meth:`load` rebuilds it.
        """
        config_type = None
        if self.cfg is not None:
            kind = type(self.cfg)
            config_type = f"{kind.__module__}:{kind.__qualname__}"
        header = {
            "format": _FORMAT,
            "model": self.model,
            "config": to_jsonable(self.config),
            "config_type": config_type,
            "metric_names": list(self.metrics),
            "grid_names": list(self.grid),
            "divergences": [dataclasses.asdict(d) for d in self.divergences],
        }
        arrays = {"steps": self.steps, "seeds": self.seeds}
        arrays.update({f"metric/{k}": v for k, v in self.metrics.items()})
        arrays.update({f"grid/{k}": v for k, v in self.grid.items()})
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, *, require_cfg: bool = False) -> Trajectory:
        """Reads a file written by :meth:`save` and rebuilds ``cfg``.

        Args:
          path: the ``.npz`` file.
          require_cfg: raise instead of warning when the Config cannot be rebuilt.

        Raises:
          ValueError: the file is not a trajectory file, or lacks an entry (named).

        Warns:
          ConfigRebuildWarning: ``cfg`` could not be rebuilt (the model does not
            import here, or its Config refuses the record, e.g. a float64 run read
            without ``jax_enable_x64``); ``cfg`` is then None and the reason and the
            fix are in the message.
        """
        path = os.fspath(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as err:
            if isinstance(err, FileNotFoundError | IsADirectoryError):
                raise
            raise ValueError(
                f"{path}: not a collapse_jax trajectory file ({type(err).__name__}: "
                f"{err})"
            ) from err
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{path}: not a collapse_jax trajectory file (one .npy array, not an "
                ".npz archive)"
            )
        with data:
            if "header" not in data:
                raise ValueError(
                    f"{path}: not a collapse_jax trajectory file: no 'header' entry "
                    f"(it holds {sorted(data.files)})"
                )
            try:
                header = json.loads(bytes(data["header"]).decode())
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{path}: unreadable header ({err})") from err
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                found = header.get("format") if isinstance(header, dict) else None
                raise ValueError(
                    f"{path}: not a collapse_jax trajectory file (format {found!r}, "
                    f"expected {_FORMAT!r})"
                )
            missing = [k for k in _HEADER_KEYS if k not in header]
            if missing:
                raise ValueError(f"{path}: the header lacks {missing}")

            def array(key):
                if key not in data:
                    raise ValueError(f"{path}: the file lacks the array {key!r}")
                return data[key]

            metrics = {k: array(f"metric/{k}") for k in header["metric_names"]}
            grid = {k: array(f"grid/{k}") for k in header["grid_names"]}
            steps, seeds = array("steps"), array("seeds")
        cfg = _rebuild_config(path, header, grid, require_cfg)
        return cls(
            model=header["model"],
            config=header["config"],
            steps=steps,
            seeds=seeds,
            metrics=metrics,
            grid=grid,
            divergences=tuple(Divergence(**d) for d in header["divergences"]),
            cfg=cfg,
        )


_HEADER_KEYS = ("model", "config", "metric_names", "grid_names", "divergences")


def _config_class(header: dict[str, Any]):
    """The Config class named in the header (or the model module's ``Config``)."""
    module_name, _, qualname = (header.get("config_type") or "").partition(":")
    if not qualname:
        module_name, qualname = header["model"], "Config"
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _from_record(value: Any, leaf: bool) -> Any:
    """A JSON value back into a Config value: lists become tuples (static fields)
    or arrays (leaves), and the strings of non-finite floats become floats."""
    if leaf:
        if isinstance(value, list):
            return np.asarray([_from_record(v, True) for v in value])
        if value in ("nan", "inf", "-inf"):
            return float(value)
        return value
    if isinstance(value, list):
        return tuple(_from_record(v, False) for v in value)
    return value


def _rebuild_config(path, header, grid, require: bool):
    """The run's Config from the header, or None with a ConfigRebuildWarning."""

    def fail(reason: str, err: BaseException | None = None):
        message = f"{path}: cfg not rebuilt ({reason}); the trajectory loads without it"
        if require:
            raise ValueError(message) from err
        warnings.warn(message, ConfigRebuildWarning, stacklevel=4)

    try:
        config_class = _config_class(header)
    except (ImportError, AttributeError) as err:
        return fail(f"{header['model']} does not import here: {err}", err)
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    record = header["config"]
    unknown = sorted(set(record) - set(fields))
    if unknown:
        return fail(f"{config_class.__qualname__} no longer has the fields {unknown}")
    kwargs = {}
    for name, value in record.items():
        leaf = fields[name].metadata.get("pytree_node", True)
        value = _from_record(value, leaf)
        if leaf and np.ndim(value) > 0:
            # A sweep's Config holds the grid axis; the base takes one value and
            # the grid is laid over it as sweep does.
            value = np.asarray(value).reshape(-1)[0].item()
        kwargs[name] = value
    if record.get("dtype") == "float64":
        import jax  # noqa: PLC0415  (only when a float64 record needs the check)

        if not jax.config.jax_enable_x64:
            return fail(
                "the run used dtype='float64': call "
                "jax.config.update('jax_enable_x64', True) before Trajectory.load"
            )
    try:
        cfg = config_class(**kwargs)
    except (TypeError, ValueError) as err:
        return fail(f"{config_class.__qualname__} refuses the record: {err}", err)
    if grid:
        from collapse_jax.simulate import _grid_leaves  # noqa: PLC0415  (a cycle)

        cfg = _grid_leaves(cfg, {k: np.asarray(v) for k, v in grid.items()})
    return cfg


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see ``collapse_jax._io.atomic_write``)."""
    atomic_write(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write(path, text)
