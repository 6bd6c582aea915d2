"""The engine: ``lax.scan`` over steps, blocks of ``vmap``'d runs, devices, one ``jit``.

A *run* is one (grid point, seed) pair. The runs of a call are flattened into one axis,
padded to fill every device equally, split over the devices with ``shard_map`` (no
cross-device communication: each device owns its runs), and on each device run in
blocks of ``block_size`` runs one after another (``lax.map`` over blocks of a ``vmap``),
so that a block's state stays in cache for the whole chunk of steps. Every run computes
exactly the same per-run program, so its numbers do not depend on the block size, the
device count, the chunk size or which other runs share the call (tested bitwise).

A call goes through five stages: plan (check arguments, lay out runs and blocks),
place (initial states on the devices), resume (from a checkpoint, if any), advance
(chunks of records with a progress bar and checkpoints), assemble (the Trajectory).
A fresh run of one chunk without checkpoints places and advances in one program.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from collapse_jax import _checkpoint, _programs, _runtime
from collapse_jax._config import config_to_dict
from collapse_jax.trajectory import Divergence, Trajectory, grid_point

__all__ = ["DivergenceWarning", "expand_grid", "seed_keys", "simulate", "sweep"]

# Without a chunk size, runs up to this many steps go in one chunk; longer ones in ~10.
_ONE_CHUNK_MAX_STEPS = 20_000
# A CPU block holds per-run state and one record worth a quarter of a core's L2
# cache: its working set (state, gradients, intermediates: a few times the state) then
# stays in L2. Measured on UFM-MSE at 4096 seeds (benchmarks/bench_ufm.py --blocks):
# with 130 KB of state per run, blocks of 2-4 runs are fastest and 64 runs 45% slower.
_CPU_BLOCK_BYTES = _runtime.l2_cache_bytes() // 4
_CPU_MAX_BLOCK = 64  # tiny models: bounds the padding of a call with few seeds
_RUNS = "runs"  # the mesh axis of the flattened runs


class DivergenceWarning(RuntimeWarning):
    """Some seeds produced NaN/inf; see ``Trajectory.divergences``."""


def seed_keys(key: int, seeds: np.ndarray) -> jax.Array:
    """``[S, 2]`` uint32 keys: ``fold_in(PRNGKey(key), s)`` for each seed id ``s``.

    The engine derives the same keys inside its compiled ``start`` program."""
    base = _base_key(key)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(_seed_words(seeds))


@functools.lru_cache(maxsize=64)
def _base_key(key: int) -> np.ndarray:
    """``PRNGKey(key)`` as a host array. A threefry key of a seed in ``[0, 2**31)``
    is the words ``(0, key)``; written out, it costs no eager compile."""
    if jax.config.jax_default_prng_impl == "threefry2x32" and 0 <= key < 2**31:
        return np.array([0, key], np.uint32)
    return np.asarray(jax.random.PRNGKey(key))


def _seed_words(seeds) -> np.ndarray:
    # fold_in takes its data as uint32 (wrapping), so converting first changes no bit.
    return np.asarray(seeds).astype(np.uint32)


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
    block_size: int | None = None,
) -> Trajectory:
    """Runs ``model`` from ``init`` for ``steps`` steps on every seed.

    Args:
      model: a module (or object) with ``init(key, cfg)``, ``step(state, cfg)`` and
        ``observe(state, cfg) -> dict[str, Array]``. It may also define
        ``check_steps(cfg, steps)``, called with the Config as given (for a sweep,
        before the grid is laid over it) before anything is compiled: a model with
        a capacity limit (a buffer preallocated for at most so many steps) raises
        ``ValueError`` there, naming the field and the largest allowed ``steps``.
      cfg: the model's ``Config``.
      steps: number of ``step`` calls; a multiple of ``every``.
      seeds: a count ``S`` (seed ids ``0..S-1``) or explicit seed ids. A seed's numbers
        do not depend on which other seeds run beside it.
      every: record ``observe`` every this many steps (and at step 0).
      key: base PRNG seed; seed ``s`` uses ``fold_in(PRNGKey(key), s)``.
      chunk: steps per compiled chunk (a multiple of ``every``); never changes results.
      progress: show a progress bar (default: only on a terminal).
      checkpoint_dir: write a checkpoint after every chunk and resume from it.
      devices: split the runs over these local devices, or over the first ``n``
        (default: all local devices; ``1`` keeps everything on one).
      block_size: runs vmapped together on a device; the blocks run one after
        another. Default: sized from the per-run state so a block stays in cache on a
        CPU, all runs at once on an accelerator. The default depends on the model
        only, so a seed's numbers are bitwise the same whatever seeds run beside it;
        another block size compiles other code and agrees to rounding.

    Returns:
      A ``Trajectory`` with metrics ``[S, T, ...]``, ``T = steps // every + 1``, in
      the order ``observe`` returns them. Runs that went NaN/inf are listed in
      ``divergences`` (the earliest bad record, and the first metric in observe's
      order bad there) with a ``DivergenceWarning``; ``all_diverged`` says whether
      any run stayed finite.
    """
    return _run(
        model, cfg, {}, steps, seeds, every, key, chunk, progress, checkpoint_dir,
        devices, block_size,
    )  # fmt: skip


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
    block_size: int | None = None,
) -> Trajectory:
    """``simulate`` over the Cartesian product of float hyperparameter values.

    ``grid`` maps Config fields that are pytree leaves to 1-D values. The product is
    flattened (first field slowest) into a leading axis ``G``: metrics are
    ``[G, S, T, ...]`` and ``trajectory.grid[name]`` is ``[G]``. Every grid point uses
    the same seed keys (common random numbers), so differences between points are not
    sampling noise of the initialisation. Grid points and seeds share the blocks and
    devices. Other arguments as in ``simulate``.
    """
    if not grid:
        raise ValueError("grid: give at least one field with values to sweep")
    return _run(
        model, cfg, dict(grid), steps, seeds, every, key, chunk, progress,
        checkpoint_dir, devices, block_size,
    )  # fmt: skip


def expand_grid(cfg: Any, grid: Mapping[str, Sequence[float]]):
    """The Config of a ``sweep``: every pytree leaf gets a leading grid axis ``[G]``.

    Returns ``(grid_cfg, values)`` with ``values[name]`` the ``[G]`` flattened product.
    ``jax.vmap(lambda c: theory.predict(c, t))(grid_cfg)`` evaluates a prediction on
    the whole grid; ``sweep`` returns the same object as ``trajectory.cfg``.
    """
    return _grid_config(cfg, dict(grid))


def _grid_config(cfg: Any, grid: dict[str, Sequence[float]]):
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    columns = {}
    for name, values in grid.items():
        if name not in fields:
            raise ValueError(f"grid: {name!r} is not a field of {type(cfg).__name__}")
        if not fields[name].metadata.get("pytree_node", True):
            raise ValueError(
                f"grid: {name!r} is a static field (it sets shapes or code paths) and "
                "cannot be vmapped; run one sweep per value instead"
            )
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"grid: {name!r} needs real numbers; got {values!r}"
            ) from err
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"grid: {name!r} needs a non-empty 1-D list of values")
        columns[name] = values
    product = list(itertools.product(*columns.values()))
    flat = {n: np.array([p[i] for p in product]) for i, n in enumerate(columns)}
    return _grid_leaves(cfg, flat), flat


def _grid_leaves(cfg: Any, flat: Mapping[str, np.ndarray]):
    """``cfg`` with every pytree leaf on a grid axis ``[G]``: ``flat[name]`` for the
    swept fields, the Config's own value broadcast for the others."""
    size = len(next(iter(flat.values())))
    dtype = jnp.dtype(getattr(cfg, "dtype", None) or jnp.zeros(()).dtype)
    # Every leaf gets the grid axis so one vmap maps the whole Config; float values
    # take the model's dtype so they never promote its state.
    leaves = {}
    for field in dataclasses.fields(cfg):
        if not field.metadata.get("pytree_node", True):
            continue
        name = field.name
        value = np.asarray(flat[name] if name in flat else getattr(cfg, name))
        cast = dtype if value.dtype.kind == "f" else value.dtype
        # NumPy, not jnp: the engine and vmapped theories take host arrays as they
        # are, and an eager JAX op would compile in every process.
        leaves[name] = np.broadcast_to(np.asarray(value, cast), (size,))
    return cfg.replace(**leaves)


# --------------------------------------------------------------------------- compiled


class _Layout(NamedTuple):
    """How the padded runs of one call are split: static, so part of the jit key."""

    block: int  # runs vmapped together
    mesh: Mesh | None  # devices holding equal shares of the runs; None: one device
    cfg_per_run: bool  # a sweep: every Config leaf has a leading run axis


def _shard_map(fn, mesh, in_specs, out_specs):
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is None:  # jax < 0.6
        from jax.experimental.shard_map import shard_map  # noqa: PLC0415

        return shard_map(
            fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False
        )
    return shard_map(
        fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )


def _loop(count, body, init):
    """``fori_loop(0, count, body, init)`` with a trip count XLA cannot see.

    ``count`` is a traced scalar. XLA rewrites a loop it knows runs once (or a few
    times) into straight-line code fused with its neighbours, whose rounding differs
    from the loop's; a trip count that is a runtime value keeps one loop body, so a
    block, a record or a step computes the same bits however many of them there are.
    """
    return lax.fori_loop(0, count, body, init)


def _stack_into(buffers, values, i, axis=0):
    return jax.tree.map(
        lambda b, v: lax.dynamic_update_index_in_dim(b, v, i, axis), buffers, values
    )


def _zeros_like_stacked(count: int, shapes, axis=0):
    return jax.tree.map(
        lambda s: jnp.zeros(s.shape[:axis] + (count,) + s.shape[axis:], s.dtype),
        shapes,
    )


def _traced_once(fn, *args):
    """``(apply, out_shapes)``: ``fn`` traced once at ``args``; ``apply`` replays it.

    A loop body needs its outputs' shapes before the loop (to allocate the stacked
    records); tracing ``fn`` for the shapes and again in the body would trace a
    model's ``step``/``observe`` twice per compile.
    """
    closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
    treedef = jax.tree.structure(shapes)

    def apply(*a):
        flat = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves(a))
        return jax.tree.unflatten(treedef, flat)

    return apply, shapes


def _per_run(block_fn, layout: _Layout):
    """Lifts ``block_fn(block_inputs, block_cfg, counts)`` to leaves ``[R, ...]`` of
    all padded runs.

    ``block_fn`` takes one block: leaves ``[layout.block, ...]``, and the Config
    with a leading ``[layout.block]`` axis on a sweep (shared otherwise). Each device
    gets ``R / devices`` runs and loops over its blocks. ``counts`` (see
    ``_Compiled``) comes last, the block count first.
    """

    def local(inputs, cfg, counts):
        count = jax.tree.leaves(inputs)[0].shape[0] // layout.block
        blocks = jax.tree.map(
            lambda x: x.reshape((count, layout.block) + x.shape[1:]), inputs
        )
        cfg_blocks = (
            jax.tree.map(lambda x: x.reshape((count, layout.block)), cfg)
            if layout.cfg_per_run
            else None
        )

        def block(j):
            pick = functools.partial(lax.dynamic_index_in_dim, index=j, keepdims=False)
            c = jax.tree.map(pick, cfg_blocks) if layout.cfg_per_run else cfg
            return block_fn(jax.tree.map(pick, blocks), c, counts)

        block_once, shapes = _traced_once(block, jnp.int32(0))
        out = _loop(
            counts[0],
            lambda j, buf: _stack_into(buf, block_once(j), j),
            _zeros_like_stacked(count, shapes),
        )
        return jax.tree.map(
            lambda x: x.reshape((count * layout.block,) + x.shape[2:]), out
        )

    if layout.mesh is None:
        return local
    runs = PartitionSpec(_RUNS)
    cfg_spec = runs if layout.cfg_per_run else PartitionSpec()
    return _shard_map(local, layout.mesh, (runs, cfg_spec, PartitionSpec()), runs)


def _over_block(fn, layout: _Layout):
    """``fn(state, cfg)`` vmapped over a block's runs (and its Config on a sweep)."""
    return jax.vmap(fn, in_axes=(0, 0 if layout.cfg_per_run else None))


class _Compiled:
    """Jitted programs of one (init, step, observe).

    ``start`` (init + first observe) and ``advance`` (a chunk of records) serve
    chunked and checkpointed runs; ``whole`` is the two in one program, for a run
    that is one chunk: every distinct program costs its tracing, lowering and
    compile (with a warm cache: tracing, hashing and loading, see ``_programs``),
    far more than these steps. An optimisation barrier
    between the two halves keeps XLA from fusing across them, so ``whole`` computes
    the bits ``start`` then ``advance`` do (tested on models of different structure).

    ``counts`` is ``int32[3]``: blocks per device, steps per record, records; passed
    as traced values so that no loop is specialised on its trip count. The loops
    over steps and records run on a whole block, a ``vmap`` of ``step`` inside
    them: tracing then batches the model once, where a ``vmap`` around the loops
    would batch every loop body again as a jaxpr.
    """

    def __init__(self, init, step, observe):
        def start_one(run, cfg):
            base, seed = run  # the seed's key is derived here, inside the program
            state = init(jax.random.fold_in(base, seed), cfg)
            return state, observe(state, cfg)

        def advance_block(state, cfg, counts, layout, records):
            step_block = _over_block(step, layout)
            observe_once, shapes = _traced_once(
                _over_block(observe, layout), state, cfg
            )

            def record(i, carry):
                s, buf = carry
                s = _loop(counts[1], lambda _, s: step_block(s, cfg), s)
                return s, _stack_into(buf, observe_once(s, cfg), i, axis=1)

            buf = _zeros_like_stacked(records, shapes, axis=1)  # [block, n, ...]
            return _loop(counts[2], record, (state, buf))

        def run_start(runs, cfg, counts, layout):
            start_block = _over_block(start_one, layout)
            return _per_run(lambda r, c, _: start_block(r, c), layout)(
                runs, cfg, counts
            )

        def run_advance(state, cfg, counts, layout, records):
            block_fn = functools.partial(advance_block, layout=layout, records=records)
            return _per_run(block_fn, layout)(state, cfg, counts)

        def run_whole(runs, cfg, counts, layout, records):
            start_block = _over_block(start_one, layout)

            def whole_block(r, c, counts):
                state, first = lax.optimization_barrier(start_block(r, c))
                state, out = advance_block(state, c, counts, layout, records)
                return state, first, out

            return _per_run(whole_block, layout)(runs, cfg, counts)

        self.start = _programs.Program(run_start, static_argnums=(3,))
        self.advance = _programs.Program(run_advance, static_argnums=(3, 4))
        self.whole = _programs.Program(run_whole, static_argnums=(3, 4))


# Keyed by the functions themselves: editing and reloading a model gives new functions
# and so new programs, never the old compiled code.
_COMPILED: dict[tuple[Any, Any, Any], _Compiled] = {}


def _compiled(model) -> _Compiled:
    fns = (model.init, model.step, model.observe)
    entry = _COMPILED.get(fns)
    if entry is None:
        entry = _COMPILED[fns] = _Compiled(*fns)
    return entry


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass
class _Plan:
    model_name: str
    fns: _Compiled
    metric_names: tuple[str, ...]  # observe's own order
    cfg: Any  # the Config; for a sweep, leaves with a leading grid axis [G]
    grid_values: dict[str, np.ndarray]
    seed_ids: np.ndarray
    steps: int
    every: int
    key: int
    chunk: int
    lead: tuple[int, ...]  # (G, S) for a sweep, else (S,)
    runs: int  # G * S
    blocks_per_device: int
    layout: _Layout

    @property
    def records(self) -> int:
        return self.steps // self.every

    def counts(self, records: int) -> np.ndarray:
        """The loop trip counts ``[blocks per device, every, records]``."""
        # host ints: an eager jnp.array would compile a conversion in every process
        return np.array([self.blocks_per_device, self.every, records], np.int32)

    @property
    def padded(self) -> int:
        """Runs rounded up to whole blocks on every device."""
        return self.blocks_per_device * self.devices * self.layout.block

    @property
    def devices(self) -> int:
        mesh = self.layout.mesh
        return 1 if mesh is None else mesh.devices.size

    def leading(self, x: np.ndarray) -> np.ndarray:
        """``[padded, ...]`` -> ``[*lead, ...]`` without the padding runs."""
        return np.asarray(x)[: self.runs].reshape(self.lead + x.shape[1:])


def _check_int(name, value, low=1):
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < low
    ):
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _check_args(steps, seeds, every, chunk):
    steps, every = _check_int("steps", steps), _check_int("every", every)
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
    chunk = _check_int("chunk", chunk)
    if chunk % every:
        raise ValueError(f"chunk={chunk} must be a multiple of every={every}")
    return steps, seed_ids, every, chunk


def _pick_devices(devices) -> list:
    local = jax.local_devices()
    if devices is None:
        chosen = local
    elif isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices={devices} must be in [1, {len(local)}]")
        chosen = local[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen or any(d not in local for d in chosen):
            raise ValueError(
                f"devices must be a non-empty list of this process's devices {local}"
            )
    if (
        len(chosen) > 1
        and chosen[0].platform == "cpu"
        and _runtime.lapack_deadlocks_on_several_cpu_devices()
    ):
        warnings.warn(
            f"jaxlib {'.'.join(map(str, _runtime.jaxlib_version()))} can deadlock in batched linear algebra on "
            "several CPU devices; running on one (install jaxlib < 0.9.1)",
            RuntimeWarning,
            stacklevel=4,
        )
        chosen = chosen[:1]
    return chosen


def _tree_bytes(tree) -> int:
    return sum(
        math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


class _RunShapes(NamedTuple):
    bytes: int  # one run's state plus one record
    metrics: tuple[str, ...]  # the names observe returns, in its own order


_RUN_SHAPES: dict[Any, _RunShapes] = {}


def _run_shapes(model, cfg, grid: bool) -> _RunShapes:
    """Sizes and metric names of one run, cached per model and Config shape
    (evaluating them traces ``init`` and ``observe``, compiling nothing).

    The order is read from the dict ``observe`` builds while traced: JAX sorts dict
    keys when it flattens them, so the compiled program's outputs come sorted.
    """
    one_cfg = jax.tree.map(lambda x: x[0], cfg) if grid else cfg
    leaves, treedef = jax.tree.flatten(one_cfg)
    key = (
        (model.init, model.observe),
        treedef,
        tuple((np.shape(x), jnp.result_type(x)) for x in leaves),
    )
    if key not in _RUN_SHAPES:
        names: list[str] = []

        def observe(state, c):
            out = model.observe(state, c)
            names[:] = list(out) if isinstance(out, Mapping) else []
            return out

        raw_key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # as start_one passes it
        state = jax.eval_shape(model.init, raw_key, one_cfg)
        record = jax.eval_shape(observe, state, one_cfg)
        size = max(1, _tree_bytes(state) + _tree_bytes(record))
        _RUN_SHAPES[key] = _RunShapes(size, tuple(names))
    return _RUN_SHAPES[key]


def _auto_block(model, cfg, grid: bool, runs: int, devices: int, platform: str) -> int:
    """Runs per block on a device.

    On a CPU it depends on the model's sizes only, never on the seed or device count
    or the run length: XLA compiles every batch width to its own code, whose last bits
    may differ, so a fixed width is what keeps a seed's numbers the same however many
    seeds run beside it. As many runs as keep a block's state and one record in cache.
    On an accelerator, all of a device's runs at once: the widest batch is fastest.
    """
    if platform != "cpu":
        return math.ceil(runs / devices)
    per_run = _run_shapes(model, cfg, grid).bytes
    return max(1, min(_CPU_MAX_BLOCK, _CPU_BLOCK_BYTES // per_run))


def _plan(model, cfg, grid, steps, seeds, every, key, chunk, devices, block_size):
    steps, seed_ids, every, chunk = _check_args(steps, seeds, every, chunk)
    for attr in ("init", "step", "observe"):
        if not callable(getattr(model, attr, None)):
            raise TypeError(f"model must define {attr}(...); got {model!r}")
    check_steps = getattr(model, "check_steps", None)
    if check_steps is not None:
        check_steps(cfg, steps)  # a model's capacity limits, before any compile
    grid_values: dict[str, np.ndarray] = {}
    if grid:
        cfg, grid_values = _grid_config(cfg, grid)
    lead = ((len(next(iter(grid_values.values()))),) if grid else ()) + (len(seed_ids),)
    runs = math.prod(lead)
    chosen = _pick_devices(devices)
    if block_size is None:
        platform = chosen[0].platform
        block = _auto_block(model, cfg, bool(grid), runs, len(chosen), platform)
    else:
        block = _check_int("block_size", block_size)
    # Whole blocks, as evenly over the devices as they go; the last is padded.
    blocks = math.ceil(runs / block)
    chosen = chosen[: min(len(chosen), blocks)]
    per_device = math.ceil(blocks / len(chosen))
    mesh = Mesh(np.array(chosen), (_RUNS,)) if len(chosen) > 1 else None
    return _Plan(
        model_name=getattr(model, "__name__", type(model).__qualname__),
        fns=_compiled(model),
        metric_names=_run_shapes(model, cfg, bool(grid)).metrics,
        cfg=cfg,
        grid_values=grid_values,
        seed_ids=seed_ids,
        steps=steps,
        every=every,
        key=key,
        chunk=chunk,
        lead=lead,
        runs=runs,
        blocks_per_device=per_device,
        layout=_Layout(block=block, mesh=mesh, cfg_per_run=bool(grid)),
    )


# --------------------------------------------------------------------------- place


def _pad_index(plan: _Plan) -> np.ndarray:
    """Run index of every padded slot: the real runs, then copies of run 0."""
    return np.concatenate(
        [np.arange(plan.runs), np.zeros(plan.padded - plan.runs, int)]
    )


def _put(plan: _Plan, tree, per_run: bool = True):
    mesh = plan.layout.mesh
    if mesh is None or not per_run:  # a shared Config goes in as it is: jit shares it
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(_RUNS)))


def _inputs(plan: _Plan):
    """``(runs, cfg)`` as the compiled programs take them: every padded slot's base
    key and seed words, and the Config (per slot on a sweep)."""
    # Host arrays throughout: an eager JAX op here would compile in every process.
    slots = _pad_index(plan)
    seed_pos = slots % len(plan.seed_ids)  # runs are grid-major: run = g * S + s
    seeds = _seed_words(plan.seed_ids[seed_pos])
    bases = np.broadcast_to(_base_key(plan.key), (len(seeds), 2))
    runs = _put(plan, (bases, seeds))
    if plan.layout.cfg_per_run:
        grid_pos = slots // len(plan.seed_ids)
        cfg = _put(plan, jax.tree.map(lambda x: np.asarray(x)[grid_pos], plan.cfg))
    else:
        cfg = _put(plan, plan.cfg, per_run=False)
    return runs, cfg


def _place(plan: _Plan, runs, cfg):
    """Initial states ``[padded, ...]`` and their records ``[*lead, 1, ...]``."""
    state, first = plan.fns.start(runs, cfg, plan.counts(0), plan.layout)
    return state, _first_records(plan, first)


def _first_records(plan: _Plan, first) -> dict[str, np.ndarray]:
    return {
        k: np.expand_dims(plan.leading(v), len(plan.lead)) for k, v in first.items()
    }


# --------------------------------------------------------------------------- resume


def _fingerprint(plan: _Plan) -> dict[str, Any]:
    return {
        "model": plan.model_name,
        "config": config_to_dict(plan.cfg),
        "grid": {k: v.tolist() for k, v in plan.grid_values.items()},
        "seeds": plan.seed_ids.tolist(),
        "steps": plan.steps,
        "every": plan.every,
        "key": plan.key,
        "chunk": plan.chunk,
    }


def _resume(plan: _Plan, ckpt_dir, state, first: dict[str, np.ndarray]):
    """``(state, records, done)`` from the newest checkpoint, or the fresh start.

    Checkpoints hold the real runs only (``[*lead, ...]``), so a run resumes on any
    number of devices and with any block size.
    """
    records = {k: [v] for k, v in first.items()}
    if ckpt_dir is None:
        return state, records, 0
    done = _checkpoint.latest(ckpt_dir)  # the fingerprint was checked by _run
    if done is None:
        return state, records, 0
    leaves, treedef = jax.tree.flatten(state)
    like_leaves = [
        jax.ShapeDtypeStruct(plan.lead + x.shape[1:], x.dtype) for x in leaves
    ]
    axis = len(plan.lead)
    like_records = {
        k: jax.ShapeDtypeStruct(
            v[0].shape[:axis] + (done + 1,) + v[0].shape[axis + 1 :], v[0].dtype
        )
        for k, v in records.items()
    }
    leaves, restored = _checkpoint.restore(ckpt_dir, done, like_leaves, like_records)
    slots = _pad_index(plan)
    leaves = [
        np.asarray(x).reshape((plan.runs,) + x.shape[axis:])[slots] for x in leaves
    ]
    state = _put(plan, jax.tree.unflatten(treedef, leaves))
    return state, {k: [v] for k, v in restored.items()}, done


# --------------------------------------------------------------------------- advance


def _progress_bar(plan: _Plan, done: int, progress):
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(
        total=plan.steps,
        initial=done * plan.every,
        desc=plan.model_name,
        unit="step",
        disable=None if progress is None else not progress,
        leave=False,
    )


def _advance(plan: _Plan, state, cfg, records, done, ckpt_dir, progress):
    """Runs the remaining chunks; appends ``[*lead, n, ...]`` records per chunk."""
    axis = len(plan.lead)
    chunk_records = plan.chunk // plan.every
    bar = _progress_bar(plan, done, progress)
    try:
        while done < plan.records:
            n = min(chunk_records, plan.records - done)
            state, out = plan.fns.advance(state, cfg, plan.counts(n), plan.layout, n)
            for k, v in out.items():
                records[k].append(plan.leading(v))
            done += n
            bar.update(n * plan.every)
            if ckpt_dir is not None:
                merged = {k: np.concatenate(v, axis=axis) for k, v in records.items()}
                records = {k: [v] for k, v in merged.items()}
                leaves = [plan.leading(x) for x in jax.tree.leaves(state)]
                _checkpoint.save(ckpt_dir, done, leaves, merged)
    finally:
        bar.close()
    return records


def _run_whole(plan: _Plan, runs, cfg, progress):
    """A fresh run of one chunk as one program: the records ``[*lead, n + 1, ...]``."""
    n = plan.records
    with _progress_bar(plan, 0, progress) as bar:
        _, first, out = plan.fns.whole(runs, cfg, plan.counts(n), plan.layout, n)
        bar.update(plan.steps)
    first = _first_records(plan, first)
    return {k: [v, plan.leading(out[k])] for k, v in first.items()}


# --------------------------------------------------------------------------- assemble


def _assemble(plan: _Plan, records) -> Trajectory:
    axis = len(plan.lead)
    order = [k for k in plan.metric_names if k in records]
    order += sorted(set(records) - set(order))
    metrics = {k: np.concatenate(records[k], axis=axis) for k in order}
    step_index = np.arange(plan.records + 1) * plan.every
    divergences = _find_divergences(
        metrics, step_index, plan.seed_ids, plan.grid_values
    )
    if divergences:
        shown = "; ".join(str(d) for d in divergences[:5])
        more = f" (and {len(divergences) - 5} more)" if len(divergences) > 5 else ""
        every = " (every run)" if len(divergences) == plan.runs else ""
        warnings.warn(
            f"{plan.model_name}: {len(divergences)} run(s) diverged{every}: "
            f"{shown}{more}. Their values are kept in the trajectory and left out of "
            "means and comparisons.",
            DivergenceWarning,
            stacklevel=4,
        )
    return Trajectory(
        model=plan.model_name,
        config=config_to_dict(plan.cfg),
        steps=step_index,
        seeds=plan.seed_ids,
        metrics=metrics,
        grid=plan.grid_values,
        divergences=tuple(divergences),
        cfg=plan.cfg,
    )


def _run(
    model, cfg, grid, steps, seeds, every, key, chunk, progress, ckpt_dir, devices,
    block_size,
) -> Trajectory:  # fmt: skip
    plan = _plan(model, cfg, grid, steps, seeds, every, key, chunk, devices, block_size)
    if ckpt_dir is not None:  # a mismatched checkpoint fails before anything compiles
        _checkpoint.prepare(ckpt_dir, _fingerprint(plan))
    runs, run_cfg = _inputs(plan)
    if ckpt_dir is None and plan.chunk >= plan.steps:
        return _assemble(plan, _run_whole(plan, runs, run_cfg, progress))
    state, first = _place(plan, runs, run_cfg)
    state, records, done = _resume(plan, ckpt_dir, state, first)
    records = _advance(plan, state, run_cfg, records, done, ckpt_dir, progress)
    return _assemble(plan, records)


def _find_divergences(metrics, step_index, seed_ids, grid_values) -> list[Divergence]:
    """One Divergence per run that went non-finite: the earliest such record, and
    the first metric (in ``metrics``' order, observe's own) non-finite there."""
    lead = 2 if grid_values else 1
    names = list(metrics)
    # [M, *lead, T]: metric m of the run is non-finite somewhere at record t.
    bad = np.stack(
        [
            np.logical_not(np.isfinite(v)).reshape(v.shape[: lead + 1] + (-1,)).any(-1)
            for v in metrics.values()
        ]
    )
    out = []
    for idx in zip(*np.nonzero(bad.any(axis=(0, -1))), strict=True):
        per_metric = bad[(slice(None),) + idx]  # [M, T]
        t = int(np.argmax(per_metric.any(axis=0)))
        name = names[int(np.argmax(per_metric[:, t]))]
        g = int(idx[0]) if grid_values else None
        out.append(
            Divergence(
                seed=int(seed_ids[idx[-1]]),
                step=int(step_index[t]),
                metric=name,
                grid_index=g,
                grid=None if g is None else grid_point(grid_values, g),
            )
        )
    return out
