"""The engine: ``lax.scan`` over steps, ``vmap`` over seeds and grids, one ``jit``.

A run is cut into chunks of whole records. Every chunk runs the same per-step
computation on the same state, so the numbers do not depend on the chunk size; between
chunks the engine advances a progress bar, checks for divergence and may checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from collapse_jax import _checkpoint
from collapse_jax._config import config_to_dict
from collapse_jax.trajectory import Divergence, Trajectory

__all__ = ["DivergenceWarning", "expand_grid", "seed_keys", "simulate", "sweep"]

# Without a chunk size, runs up to this many steps go in one chunk; longer ones in ~10.
_ONE_CHUNK_MAX_STEPS = 20_000


class DivergenceWarning(RuntimeWarning):
    """Some seeds produced NaN/inf; see ``Trajectory.divergences``."""


def seed_keys(key: int, seeds: np.ndarray) -> jax.Array:
    """``[S, 2]`` uint32 keys: ``fold_in(PRNGKey(key), s)`` for each seed id ``s``."""
    base = jax.random.PRNGKey(key)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(seeds))


def simulate(
    model: Any,
    cfg: Any,
    *,
    steps: int,
    seeds: int | Sequence[int] = 1,
    every: int = 1,
    key: int = 0,
    chunk: int | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | None = None,
    devices: int | Sequence[jax.Device] | None = None,
) -> Trajectory:
    """Runs ``model`` from ``init`` for ``steps`` steps on every seed.

    Args:
      model: a module (or object) with ``init(key, cfg)``, ``step(state, cfg)`` and
        ``observe(state, cfg) -> dict[str, Array]``.
      cfg: the model's ``Config``.
      steps: number of ``step`` calls; a multiple of ``every``.
      seeds: a count ``S`` (seed ids ``0..S-1``) or explicit seed ids. A seed's numbers
        do not depend on which other seeds run beside it.
      every: record ``observe`` every this many steps (and at step 0).
      key: base PRNG seed; seed ``s`` uses ``fold_in(PRNGKey(key), s)``.
      chunk: steps per compiled chunk (a multiple of ``every``); never changes results.
      progress: show a progress bar (default: only on a terminal).
      checkpoint_dir: write a checkpoint after every chunk and resume from it.
      devices: shard the seed axis over these devices (default: all local devices when
        the seed count divides evenly; 1 disables sharding).

    Returns:
      A ``Trajectory`` with metrics ``[S, T, ...]``, ``T = steps // every + 1``.
    """
    return _run(
        model,
        cfg,
        {},
        steps,
        seeds,
        every,
        key,
        chunk,
        progress,
        checkpoint_dir,
        devices,
    )


def sweep(
    model: Any,
    cfg: Any,
    grid: Mapping[str, Sequence[float]],
    *,
    steps: int,
    seeds: int | Sequence[int] = 1,
    every: int = 1,
    key: int = 0,
    chunk: int | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | None = None,
    devices: int | Sequence[jax.Device] | None = None,
) -> Trajectory:
    """``simulate`` over the Cartesian product of float hyperparameter values.

    ``grid`` maps Config fields that are pytree leaves to 1-D values. The product is
    flattened (first field slowest) into a leading axis ``G``: metrics are
    ``[G, S, T, ...]`` and ``trajectory.grid[name]`` is ``[G]``. Every grid point uses
    the same seed keys (common random numbers), so differences between points are not
    sampling noise of the initialisation. Other arguments as in ``simulate``.
    """
    if not grid:
        raise ValueError("grid: give at least one field with values to sweep")
    return _run(
        model,
        cfg,
        dict(grid),
        steps,
        seeds,
        every,
        key,
        chunk,
        progress,
        checkpoint_dir,
        devices,
    )


def expand_grid(cfg: Any, grid: Mapping[str, Sequence[float]]):
    """The Config of a ``sweep``: every pytree leaf gets a leading grid axis ``[G]``.

    Returns ``(grid_cfg, values)`` with ``values[name]`` the ``[G]`` flattened product.
    ``jax.vmap(lambda c: theory.predict(c, t))(grid_cfg)`` evaluates a prediction on
    the whole grid; ``sweep`` returns the same object as ``trajectory.cfg``.
    """
    return _grid_config(cfg, dict(grid))


def _grid_config(cfg: Any, grid: dict[str, Sequence[float]]):
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    dtype = jnp.dtype(getattr(cfg, "dtype", None) or jnp.zeros(()).dtype)
    columns = {}
    for name, values in grid.items():
        if name not in fields:
            raise ValueError(f"grid: {name!r} is not a field of {type(cfg).__name__}")
        if not fields[name].metadata.get("pytree_node", True):
            raise ValueError(
                f"grid: {name!r} is a static field (it sets shapes or code paths) and "
                "cannot be vmapped; run one sweep per value instead"
            )
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"grid: {name!r} needs a non-empty 1-D list of values")
        columns[name] = values
    product = list(itertools.product(*columns.values()))
    flat = {n: np.array([p[i] for p in product]) for i, n in enumerate(columns)}
    size = len(product)
    # Every leaf gets the grid axis so one vmap maps the whole Config; float values
    # take the model's dtype so they never promote its state.
    leaves = {}
    for name, field in fields.items():
        if not field.metadata.get("pytree_node", True):
            continue
        value = flat[name] if name in flat else getattr(cfg, name)
        value = np.asarray(value)
        cast = dtype if value.dtype.kind == "f" else value.dtype
        leaves[name] = jnp.broadcast_to(jnp.asarray(value, cast), (size,))
    return cfg.replace(**leaves), flat


def _check_args(steps, seeds, every, chunk):
    for name, value in (("steps", steps), ("every", every)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or value < 1
        ):
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if steps % every:
        raise ValueError(f"every={every} must divide steps={steps}")
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds} must be >= 1")
        seed_ids = np.arange(int(seeds))
    else:
        seed_ids = np.asarray(seeds)
        if seed_ids.ndim != 1 or seed_ids.size == 0 or seed_ids.dtype.kind not in "iu":
            raise ValueError(
                "seeds must be a count >= 1 or a non-empty 1-D list of ints"
            )
        if len(np.unique(seed_ids)) != len(seed_ids) or seed_ids.min() < 0:
            raise ValueError("seeds: ids must be distinct and >= 0")
    if chunk is None:
        chunk = (
            steps
            if steps <= _ONE_CHUNK_MAX_STEPS
            else every * math.ceil(steps // every / 10)
        )
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be an integer >= 1")
    if chunk % every:
        raise ValueError(f"chunk={chunk} must be a multiple of every={every}")
    return seed_ids, int(chunk)


class _Compiled:
    """Jitted init/observe/advance for one model, cached so reruns do not retrace."""

    def __init__(self, model):
        self.model = model

        def batch(fn, grid):
            seeded = jax.vmap(fn, in_axes=(0, None))
            return jax.vmap(seeded, in_axes=(0, 0)) if grid else seeded

        def init(keys, cfg, grid):
            one = model.init
            if grid:
                return jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0))(
                    keys, cfg
                )
            return jax.vmap(one, in_axes=(0, None))(keys, cfg)

        def observe(state, cfg, grid):
            return batch(model.observe, grid)(state, cfg)

        def advance(state, cfg, grid, every, records):
            def one_seed(s, c):
                def record(s, _):
                    s, _ = lax.scan(
                        lambda s, _: (model.step(s, c), None), s, None, length=every
                    )
                    return s, model.observe(s, c)

                return lax.scan(record, s, None, length=records)

            return batch(one_seed, grid)(state, cfg)

        self.init = jax.jit(init, static_argnums=(2,))
        self.observe = jax.jit(observe, static_argnums=(2,))
        self.advance = jax.jit(advance, static_argnums=(2, 3, 4))


_COMPILED: dict[int, _Compiled] = {}


def _compiled(model) -> _Compiled:
    entry = _COMPILED.get(id(model))
    if entry is None or entry.model is not model:
        entry = _COMPILED[id(model)] = _Compiled(model)
    return entry


def _mesh_for(devices, batch_sizes: Sequence[int]):
    """Picks devices and the batch axis to shard, or None for a single device."""
    if devices is None:
        devs = jax.local_devices()
    elif isinstance(devices, int | np.integer):
        if devices < 1 or devices > jax.local_device_count():
            raise ValueError(
                f"devices={devices} must be in [1, {jax.local_device_count()}]"
            )
        devs = jax.local_devices()[: int(devices)]
    else:
        devs = list(devices)
    if len(devs) <= 1:
        return None
    for axis, size in enumerate(batch_sizes):
        if size % len(devs) == 0:
            return Mesh(np.array(devs), ("batch",)), axis
    if devices is not None:
        raise ValueError(
            f"devices: {len(devs)} devices do not divide the batch axes {batch_sizes}"
        )
    return None


def _run(
    model, cfg, grid, steps, seeds, every, key, chunk, progress, ckpt_dir, devices
) -> Trajectory:
    seed_ids, chunk = _check_args(steps, seeds, every, chunk)
    for attr in ("init", "step", "observe"):
        if not callable(getattr(model, attr, None)):
            raise TypeError(f"model must define {attr}(...); got {model!r}")
    model_name = getattr(model, "__name__", type(model).__qualname__)
    fns = _compiled(model)
    has_grid = bool(grid)
    grid_values: dict[str, np.ndarray] = {}
    if has_grid:
        cfg, grid_values = _grid_config(cfg, grid)
    batch_sizes = ([len(next(iter(grid_values.values())))] if has_grid else []) + [
        len(seed_ids)
    ]

    keys = seed_keys(key, seed_ids)
    state = fns.init(keys, cfg, has_grid)
    placement = _mesh_for(devices, batch_sizes)
    if placement is not None:
        mesh, axis = placement
        spec = PartitionSpec(*([None] * axis), "batch")
        state = jax.device_put(state, NamedSharding(mesh, spec))
        cfg = jax.device_put(cfg, NamedSharding(mesh, PartitionSpec()))

    total = steps // every
    chunk_records = chunk // every
    first = jax.tree.map(
        lambda x: np.expand_dims(np.asarray(x), len(batch_sizes)),
        fns.observe(state, cfg, has_grid),
    )
    records = {k: [v] for k, v in first.items()}
    done = 0

    if ckpt_dir is not None:
        fingerprint = {
            "model": model_name,
            "config": config_to_dict(cfg),
            "grid": {k: v.tolist() for k, v in grid_values.items()},
            "seeds": seed_ids.tolist(),
            "steps": steps,
            "every": every,
            "key": key,
            "chunk": chunk,
        }
        _checkpoint.prepare(ckpt_dir, fingerprint)
        resumed = _checkpoint.latest(ckpt_dir)
        if resumed is not None:
            leaves, treedef = jax.tree.flatten(state)
            like = {
                k: np.zeros(
                    v[0].shape[: len(batch_sizes)]
                    + (resumed + 1,)
                    + v[0].shape[len(batch_sizes) + 1 :],
                    v[0].dtype,
                )
                for k, v in records.items()
            }
            leaves, restored = _checkpoint.restore(ckpt_dir, resumed, leaves, like)
            shardings = [getattr(x, "sharding", None) for x in jax.tree.leaves(state)]
            leaves = [
                jax.device_put(x, s) if s is not None else jnp.asarray(x)
                for x, s in zip(leaves, shardings, strict=True)
            ]
            state = jax.tree.unflatten(treedef, leaves)
            records = {k: [v] for k, v in restored.items()}
            done = resumed

    from tqdm import tqdm

    bar = tqdm(
        total=steps,
        initial=done * every,
        desc=model_name,
        unit="step",
        disable=None if progress is None else not progress,
        leave=False,
    )
    time_axis = len(batch_sizes)
    try:
        while done < total:
            n = min(chunk_records, total - done)
            state, out = fns.advance(state, cfg, has_grid, every, n)
            for k, v in out.items():
                records[k].append(np.asarray(v))
            done += n
            bar.update(n * every)
            if ckpt_dir is not None:
                merged = {
                    k: np.concatenate(v, axis=time_axis) for k, v in records.items()
                }
                records = {k: [v] for k, v in merged.items()}
                _checkpoint.save(ckpt_dir, done, jax.tree.leaves(state), merged)
    finally:
        bar.close()

    metrics = {k: np.concatenate(v, axis=time_axis) for k, v in records.items()}
    step_index = np.arange(total + 1) * every
    divergences = _find_divergences(metrics, step_index, seed_ids, has_grid)
    if divergences:
        shown = "; ".join(str(d) for d in divergences[:5])
        more = f" (and {len(divergences) - 5} more)" if len(divergences) > 5 else ""
        warnings.warn(
            f"{model_name}: {len(divergences)} run(s) diverged: {shown}{more}. "
            "Their values are kept in the trajectory and left out of means and "
            "comparisons.",
            DivergenceWarning,
            stacklevel=3,
        )
    return Trajectory(
        model=model_name,
        config=config_to_dict(cfg),
        steps=step_index,
        seeds=seed_ids,
        metrics=metrics,
        grid=grid_values,
        divergences=tuple(divergences),
        cfg=cfg,
    )


def _find_divergences(metrics, step_index, seed_ids, has_grid) -> list[Divergence]:
    lead = 2 if has_grid else 1
    first_bad: dict[tuple[int, ...], tuple[int, str]] = {}
    for name, values in metrics.items():
        bad = ~np.isfinite(values)
        bad = bad.reshape(bad.shape[: lead + 1] + (-1,)).any(axis=-1)
        for idx in zip(*np.nonzero(bad.any(axis=-1)), strict=True):
            t = int(np.argmax(bad[idx]))
            if idx not in first_bad or t < first_bad[idx][0]:
                first_bad[idx] = (t, name)
    out = []
    for idx, (t, name) in sorted(first_bad.items()):
        grid_index = int(idx[0]) if has_grid else None
        seed = int(seed_ids[idx[-1]])
        out.append(
            Divergence(
                seed=seed, step=int(step_index[t]), metric=name, grid_index=grid_index
            )
        )
    return out
