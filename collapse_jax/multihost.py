"""Several processes (hosts), each running its own seeds, and their union.

Call ``jax.distributed.initialize(...)`` first in every process (on CPU hosts also
``jax.config.update("jax_cpu_collectives_implementation", "gloo")`` before it). Each
process then runs ``simulate(..., seeds=process_seeds(S))`` on its local devices, with
no communication during the run, and ``gather_processes`` assembles the trajectory of
all ``S`` seeds on every process. A seed's numbers depend only on its id, so the union
equals one process running all ``S`` seeds (tested bit for bit with two processes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from collapse_jax.trajectory import Divergence, Trajectory, grid_point

__all__ = ["gather_processes", "process_seeds"]


def process_seeds(seeds: int | Sequence[int]) -> np.ndarray:
    """This process's contiguous share of the seed ids (a count means ``0..S-1``)."""
    ids = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
    count = jax.process_count()
    if ids.size < count:
        raise ValueError(
            f"seeds: {ids.size} seed(s) cannot be shared by {count} processes"
        )
    return np.array_split(ids, count)[jax.process_index()]


def _allgather_ragged(x: np.ndarray, axis: int) -> np.ndarray:
    """Every process's ``x`` concatenated along ``axis``, whose length may differ by
    process: padded to the longest for the collective, then trimmed."""
    from jax.experimental import multihost_utils  # noqa: PLC0415

    x = np.asarray(x)
    counts = np.asarray(
        multihost_utils.process_allgather(np.int64(x.shape[axis]))
    ).reshape(-1)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, max(1, int(counts.max())) - x.shape[axis])
    fill = np.nan if x.dtype.kind == "f" else 0
    stacked = np.asarray(
        multihost_utils.process_allgather(np.pad(x, pad, constant_values=fill))
    )
    parts = [np.take(stacked[p], np.arange(n), axis=axis) for p, n in enumerate(counts)]
    return np.concatenate(parts, axis=axis)


def gather_processes(trajectory: Trajectory) -> Trajectory:
    """The trajectory of every process's seeds, in process order, on every process.

    Every process must call it, with trajectories of the same model, config, steps and
    grid; the seed axis is concatenated.
    """
    if jax.process_count() == 1:
        return trajectory
    seed_axis = 1 if trajectory.is_sweep else 0
    metrics = {
        name: _allgather_ragged(values, seed_axis)
        for name, values in trajectory.metrics.items()
    }
    # Divergences travel as int rows (seed, step, grid index or -1, metric index).
    names = list(trajectory.metrics)  # observe's order, the same on every process
    rows = np.array(
        [
            (d.seed, d.step, -1 if d.grid_index is None else d.grid_index,
             names.index(d.metric))
            for d in trajectory.divergences
        ],
        dtype=np.int64,
    ).reshape(-1, 4)  # fmt: skip
    divergences = tuple(
        Divergence(
            seed=int(r[0]),
            step=int(r[1]),
            metric=names[int(r[3])],
            grid_index=None if r[2] < 0 else int(r[2]),
            grid=None if r[2] < 0 else grid_point(trajectory.grid, int(r[2])),
        )
        for r in _allgather_ragged(rows, 0)
    )
    return dataclasses.replace(
        trajectory,
        seeds=_allgather_ragged(trajectory.seeds, 0),
        metrics=metrics,
        divergences=divergences,
    )
