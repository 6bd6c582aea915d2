"""The result of a simulation: metric arrays over (grid,) seed and time, saved atomically."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import tempfile
from typing import Any

import numpy as np

from collapse_jax._config import to_jsonable

_FORMAT = "collapse_jax.trajectory/1"


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A seed whose metrics first became NaN/inf at ``step``."""

    seed: int
    step: int
    metric: str
    grid_index: int | None = None

    def __str__(self) -> str:
        where = "" if self.grid_index is None else f"grid point {self.grid_index}, "
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

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics[name]

    def _masked(self, name: str) -> np.ndarray:
        values = np.asarray(self.metrics[name], dtype=np.float64)
        mask = self.finite.reshape(
            self.finite.shape + (1,) * (values.ndim - self.finite.ndim)
        )
        return np.where(mask, values, np.nan)

    def mean(self, name: str) -> np.ndarray:
        """Mean over finite seeds: ``[(G,) T, *metric_shape]``."""
        axis = 1 if self.is_sweep else 0
        return np.nanmean(self._masked(name), axis=axis)

    def se(self, name: str) -> np.ndarray:
        """Standard error of the mean over finite seeds (0 for a single seed)."""
        axis = 1 if self.is_sweep else 0
        values = self._masked(name)
        n = np.sum(np.isfinite(values), axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            std = (
                np.nanstd(values, axis=axis, ddof=1) if values.shape[axis] > 1 else 0.0
            )
            se = np.where(n > 1, std / np.sqrt(np.maximum(n, 1)), 0.0)
        return se

    def final(self, name: str) -> np.ndarray:
        """Values at the last record: ``[(G,) S, *metric_shape]``."""
        axis = 2 if self.is_sweep else 1
        return np.take(self.metrics[name], -1, axis=axis)

    def save(self, path: str | os.PathLike) -> None:
        """Writes one ``.npz`` file atomically (a crash never leaves a half file)."""
        header = {
            "format": _FORMAT,
            "model": self.model,
            "config": to_jsonable(self.config),
            "metric_names": list(self.metrics),
            "grid_names": list(self.grid),
            "divergences": [dataclasses.asdict(d) for d in self.divergences],
        }
        arrays = {"steps": self.steps, "seeds": self.seeds}
        arrays.update({f"metric/{k}": v for k, v in self.metrics.items()})
        arrays.update({f"grid/{k}": v for k, v in self.grid.items()})
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trajectory:
        """Reads a file written by :meth:`save`; rebuilds ``cfg`` if the model imports."""
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header.get("format") != _FORMAT:
                raise ValueError(f"{path}: not a collapse_jax trajectory file")
            metrics = {k: data[f"metric/{k}"] for k in header["metric_names"]}
            grid = {k: data[f"grid/{k}"] for k in header["grid_names"]}
            steps, seeds = data["steps"], data["seeds"]
        cfg = _rebuild_config(header["model"], header["config"], grid)
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


def _rebuild_config(model: str, record: dict[str, Any], grid: dict[str, np.ndarray]):
    try:
        module = importlib.import_module(model)
        fields = {f.name for f in dataclasses.fields(module.Config)}
        kwargs = {}
        for key, value in record.items():
            if key not in fields:
                continue
            if key in grid:
                value = np.asarray(grid[key])
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return module.Config(**kwargs)
    except Exception:  # a user's model may not be importable where the file is read
        return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path``, fsyncs, then renames."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode())
