"""Command line: ``collapse-jax list | run | sweep | show | reproduce``.

Models and experiments are found by name among the built-in ones, in the entry-point
groups ``collapse_jax.models`` and ``collapse_jax.experiments`` of installed packages,
or, for a dotted name such as ``mypkg.models.foo``, by importing that module; the
theory of a model ``a.models.b`` is ``a.theory.b`` unless ``--theory`` names another.

Exit codes: 0 done, 1 the simulation disagrees with its theory or every seed
diverged (or an experiment failed), 2 a usage error (one line on stderr), 130
interrupted.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import importlib
import inspect
import io
import json
import math
import os
import pkgutil
import shlex
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import warnings
from importlib import metadata
from types import ModuleType
from typing import Any

import numpy as np

MODEL_GROUP = "collapse_jax.models"
EXPERIMENT_GROUP = "collapse_jax.experiments"
_PROG = "collapse-jax"
_CHUNKS = 20  # default chunks of a run: the bar moves and a checkpoint is never far


class CLIError(Exception):
    """A usage error: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- finding


def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def _import(path: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name and (path == err.name or path.startswith(err.name + ".")):
            raise CLIError(f"{what} {path!r}: no module named {err.name!r}") from err
        raise  # the module exists but one of its own imports is missing


def _load_model(name: str) -> ModuleType:
    """A built-in model, an entry point of ``collapse_jax.models``, or a module path."""
    from collapse_jax import models

    if name in models.available():
        module = models.get(name)
    elif name in (plugins := _entry_points(MODEL_GROUP)):
        module = plugins[name].load()
    elif "." in name:
        module = _import(name, "model")
    else:
        choices = models.available() + sorted(plugins)
        raise CLIError(
            f"unknown model {name!r}: choose one of {', '.join(choices)}, or give an "
            "importable module path such as mypkg.models.foo"
        )
    missing = [
        a for a in ("Config", "init", "step", "observe") if not hasattr(module, a)
    ]
    if missing:
        raise CLIError(f"model {name!r} ({module.__name__}) lacks {', '.join(missing)}")
    return module


def _short_name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def _theory_path(model_path: str) -> str:
    """``collapse_jax.models.ufm`` -> ``collapse_jax.theory.ufm``; any ``a.models.b``
    likewise."""
    parts = model_path.split(".")
    if "models" not in parts:
        raise CLIError(
            f"cannot guess the theory module of {model_path} (no 'models' in its path): "
            "pass --theory MODULE"
        )
    i = len(parts) - 1 - parts[::-1].index("models")
    return ".".join(parts[:i] + ["theory"] + parts[i + 1 :])


def _load_theory(model: ModuleType, override: str | None) -> ModuleType:
    path = override or _theory_path(model.__name__)
    module = _import(path, "theory")
    if not callable(getattr(module, "predict", None)):
        raise CLIError(f"theory {path} has no predict(cfg, t)")
    return module


def _experiment_modules(source: str | None) -> dict[str, ModuleType | None]:
    """name -> module for ``--from`` a package (or one module); built-in experiments
    map to None (``report.run_experiment`` runs them by name), entry points to their
    module."""
    if source is None:
        from collapse_jax import report

        found: dict[str, ModuleType | None] = dict.fromkeys(report.available())
        for name, ep in sorted(_entry_points(EXPERIMENT_GROUP).items()):
            found.setdefault(name, ep.load())
        return found
    package = _import(source, "experiments")
    if _is_experiment(package):
        return {_short_name(package): package}
    found = {}
    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{source}.{info.name}")
        if _is_experiment(module):
            found[info.name] = module
    if not found:
        raise CLIError(f"--from {source}: no modules with TITLE, run and plot")
    return found


def _is_experiment(module: ModuleType) -> bool:
    return all(hasattr(module, a) for a in ("TITLE", "run", "plot"))


# --------------------------------------------------------------------------- configs


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string such as mse or adam
    return tuple(value) if isinstance(value, list) else value


def _split_pair(pair: str, flag: str) -> tuple[str, str]:
    if "=" not in pair:
        raise CLIError(f"{flag} expects KEY=VALUE, got {pair!r}")
    key, value = pair.split("=", 1)
    return key.strip(), value.strip()


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _is_leaf(field: dataclasses.Field) -> bool:
    """A pytree leaf of the Config: a value that a sweep can vmap over."""
    return field.metadata.get("pytree_node", True)


def _build_config(model: ModuleType, pairs: list[str]):
    fields = _fields(model.Config)
    settings = {}
    for pair in pairs:
        key, text = _split_pair(pair, "--set")
        if key not in fields:
            raise CLIError(
                f"--set {key}: {model.__name__}.Config has no field {key!r}; "
                f"choose from {', '.join(fields)}"
            )
        value = _parse_value(text)
        if _is_leaf(fields[key]) and isinstance(value, str):
            raise CLIError(f"--set {key}={text}: {key} takes a number")
        settings[key] = value
    return _make_config(model, settings, "invalid config")


def _make_config(model: ModuleType, kwargs: dict, failure: str):
    """``model.Config(**kwargs)`` with x64 on for a float64 config; a bad value is a
    one-line CLIError prefixed by ``failure``."""
    if kwargs.get("dtype") == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        return model.Config(**kwargs)
    except (TypeError, ValueError) as err:
        raise CLIError(f"{failure}: {err}") from err


def _parse_grid(model: ModuleType, cfg, pairs: list[str]) -> dict[str, list[float]]:
    fields = _fields(model.Config)
    grid = {}
    for pair in pairs:
        key, text = _split_pair(pair, "--grid")
        if key not in fields:
            raise CLIError(
                f"--grid {key}: {model.__name__}.Config has no field {key!r}; "
                f"choose from {', '.join(n for n, f in fields.items() if _is_leaf(f))}"
            )
        if not _is_leaf(fields[key]):
            raise CLIError(
                f"--grid {key}: a static field (it sets shapes or code paths) cannot "
                "be swept; run once per value with --set"
            )
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError as err:
            raise CLIError(f"--grid {pair}: values must be numbers, a,b,c") from err
        if not values:
            raise CLIError(f"--grid {pair}: give at least one value")
        for v in values:  # out-of-range values fail here, before anything compiles
            try:
                cfg.replace(**{key: v})
            except (TypeError, ValueError) as err:
                raise CLIError(f"invalid config: {err}") from err
        grid[key] = values
    return grid


def _config_text(record: dict[str, Any], width: int) -> str:
    items = [f"{k}={json.dumps(v)}" for k, v in record.items()]
    return textwrap.fill(
        " ".join(items),
        width,
        initial_indent="config: ",
        subsequent_indent="  ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def _field_checks(model: ModuleType) -> dict[str, str]:
    """field -> allowed values, recorded from the validation helpers (the ``check_*``
    functions of ``collapse_jax.config``) that ``Config()`` calls with its defaults.

    Only the checks the default config reaches are seen; fields without one get none.
    """
    recorded: dict[str, str] = {}
    originals = {
        n: f
        for n, f in vars(model).items()
        if n.startswith("check_") and callable(f) and not isinstance(f, type)
    }

    def recorder(name, fn):
        signature = inspect.signature(fn)

        def wrapped(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                described = _describe_check(name, bound.arguments)
                if described:
                    recorded.setdefault(str(args[0]), described)
            except (TypeError, IndexError):
                pass
            return fn(*args, **kwargs)

        return wrapped

    try:
        for n, f in originals.items():
            setattr(model, n, recorder(n, f))
        model.Config()
    except Exception:  # a Config without usable defaults: show defaults and types only
        pass
    finally:
        for n, f in originals.items():
            setattr(model, n, f)
    return recorded


def _describe_check(helper: str, a: dict[str, Any]) -> str | None:
    if "choices" in a:
        return " | ".join(str(c) for c in a["choices"])
    if helper == "check_dtype":
        return "float32 | float64 (float64 needs x64)"
    if helper == "check_per_class":
        return "int >= 1, or one int >= 1 per class"
    if "low" in a and "high" in a:
        left = "(" if a.get("low_open") else "["
        right = ")" if a.get("high_open") or a["high"] == math.inf else "]"
        if a["low"] == -math.inf:
            left = "("
        kind = "int " if helper == "check_int" else ""
        return f"{kind}{left}{a['low']:g}, {a['high']:g}{right}"
    return None


def _fields_table(model: ModuleType) -> str:
    checks = _field_checks(model)
    rows = [("field", "type", "default", "kind", "allowed")]
    for f in dataclasses.fields(model.Config):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        kind = "sweepable" if _is_leaf(f) else "static"
        type_name = (
            f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        )
        rows.append((f.name, type_name, default, kind, checks.get(f.name, "")))
    return _table(rows)


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


# --------------------------------------------------------------------------- files


def _writable_dir(path: str, flag: str) -> None:
    """Creates ``path`` and checks that a file can be written in it (before a run, so
    a bad ``--out`` never costs a simulation)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CLIError(f"cannot write to {flag} {path}: {err.strerror or err}") from err


def _writable_file(path: str, flag: str, force: bool = True) -> None:
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a directory; give a file name")
    if os.path.exists(path) and not force:
        raise CLIError(
            f"{path} exists: pass --force to overwrite it or choose another --out"
        )
    _writable_dir(os.path.dirname(os.path.abspath(path)), flag)


def _check_outputs(args, result_path: str | None) -> None:
    if result_path is not None:
        _writable_dir(args.out, "--out")
        _writable_file(result_path, "--out", force=args.force)
    for flag in ("plot", "csv"):
        if getattr(args, flag, None):
            _writable_file(getattr(args, flag), f"--{flag}")
    if getattr(args, "checkpoint", None):
        _writable_dir(args.checkpoint, "--checkpoint")


# --------------------------------------------------------------------------- runs


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _default_every(steps: int) -> int:
    """The largest divisor of ``steps`` up to ``steps // 100``: about 100 records."""
    return max(d for d in _divisors(steps) if d <= max(1, steps // 100))


def _default_chunk(steps: int, every: int) -> int:
    """About ``_CHUNKS`` chunks of equal length (a divisor of the record count, so the
    chunks share one compiled program) when one is near; else equal but the last."""
    records = steps // every
    target = max(1, round(records / _CHUNKS))
    best = min(_divisors(records), key=lambda d: abs(math.log(d / target)))
    return (best if target / 2 <= best <= 2 * target else target) * every


def _run_sizes(args) -> tuple[int, int | None]:
    """``(every, chunk)`` checked against ``steps``; chunk None: the engine's."""
    steps = args.steps
    every = _default_every(steps) if args.every is None else args.every
    if steps % every:
        shown = _divisors(steps)
        shown = ", ".join(map(str, shown)) if len(shown) <= 12 else "a divisor"
        raise CLIError(f"--every {every} does not divide --steps {steps}: use {shown}")
    chunk = args.chunk
    if chunk is None and (args.checkpoint or sys.stderr.isatty()):
        # chunks are what a checkpoint and the bar advance by; without either, the
        # engine's default (one chunk up to 20,000 steps) shares compiled programs
        # with plain simulate calls
        chunk = _default_chunk(steps, every)
    if chunk is not None and chunk % every:
        raise CLIError(f"--chunk {chunk} must be a multiple of --every {every}")
    return every, chunk


def _simulate(model, cfg, grid, args, every, chunk):
    import collapse_jax as cj
    from collapse_jax._checkpoint import CheckpointMismatchError

    kwargs = dict(
        seeds=args.seeds,
        steps=args.steps,
        every=every,
        key=args.key,
        chunk=chunk,
        progress=None,  # a bar on a terminal only (not in logs or notebooks)
        checkpoint_dir=args.checkpoint,
    )
    with warnings.catch_warnings():
        # divergences are listed in the summary, one line each
        warnings.simplefilter("ignore", cj.DivergenceWarning)
        try:
            if grid:
                return cj.sweep(model, cfg, grid, **kwargs)
            return cj.simulate(model, cfg, **kwargs)
        except CheckpointMismatchError as err:
            raise CLIError(str(err)) from err
        except ValueError as err:  # the engine's checks, a damaged checkpoint
            raise CLIError(f"{type(err).__name__}: {err}") from err


def _point_labels(tr) -> list[str]:
    """``lr=0.1, lambda_w=0.001`` for every grid point; ``[""]`` without a grid."""
    if not tr.grid:
        return [""]
    size = len(next(iter(tr.grid.values())))
    return [", ".join(f"{k}={v[g]:g}" for k, v in tr.grid.items()) for g in range(size)]


def _point(tr, x: np.ndarray, g: int) -> np.ndarray:
    return x[g] if tr.grid else x


def _finite_counts(tr) -> np.ndarray:
    """``[G]`` (or ``[1]``) seeds whose every metric stayed finite."""
    return np.atleast_1d(np.sum(tr.finite, axis=-1))


def _fmt_entries(mean: np.ndarray, se: np.ndarray, n_finite: int) -> tuple[str, str]:
    if mean.ndim == 0:
        se_text = f"{float(se):.3g}" if n_finite > 1 else "n/a"
        return f"{float(mean):.6g}", se_text
    flat = mean.reshape(-1)
    head = ", ".join(f"{v:.4g}" for v in flat[:4]) + (", ..." if flat.size > 4 else "")
    shape = "x".join(map(str, mean.shape))
    return f"[{shape}] [{head}]", f"|mean| {np.linalg.norm(flat):.4g}"


def _summary(tr, names: list[str]) -> list[str]:
    lines = []
    counts = _finite_counts(tr)
    for g, label in enumerate(_point_labels(tr)):
        n = int(counts[g])
        if label:
            lines.append(f"grid point {g + 1}/{len(counts)}: {label}")
        if n == 0:
            lines.append(f"  all {len(tr.seeds)} seeds diverged: no finite result")
            continue
        if n < len(tr.seeds):
            lines.append(f"  finite seeds: {n} of {len(tr.seeds)}")
        rows = [("metric", "final mean", "± SE")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for name in names:
                mean = _point(tr, tr.mean(name), g)[-1]
                se = _point(tr, tr.se(name), g)[-1]
                rows.append((name, *_fmt_entries(np.asarray(mean), np.asarray(se), n)))
        lines.append(_table(rows))
    shown = 5
    for d in tr.divergences[:shown]:
        lines.append(f"diverged: {_divergence_text(tr, d)}")
    if len(tr.divergences) > shown:
        lines.append(f"diverged: {len(tr.divergences) - shown} more runs")
    return lines


def _divergence_text(tr, d) -> str:
    grid_index = getattr(d, "grid_index", None)
    if grid_index is None or not tr.grid:
        return str(d)
    text = f"seed {d.seed}: {d.metric} non-finite at step {d.step}"
    return f"{_point_labels(tr)[grid_index]}, {text}"


def _metric_names(tr, wanted: str | None) -> list[str]:
    if not wanted:
        return list(tr.metrics)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in tr.metrics]
    if unknown:
        raise CLIError(
            f"--metrics: {', '.join(unknown)} not recorded; choose from "
            f"{', '.join(tr.metrics)}"
        )
    return names


def _all_diverged(tr) -> bool:
    return not np.any(tr.finite)


# --------------------------------------------------------------------------- theory


def _point_configs(cfg, tr) -> list:
    """One plain Config per grid point (the swept values put back as floats)."""
    labels = _point_labels(tr)
    if not tr.grid:
        return [cfg]
    return [
        cfg.replace(**{k: float(v[g]) for k, v in tr.grid.items()})
        for g in range(len(labels))
    ]


def _predict(theory: ModuleType, configs: list, tr) -> tuple[dict, dict]:
    """Predictions stacked over grid points, and per metric "trajectory" or "final".

    A metric is time-resolved when its prediction's length follows the length of the
    step indices asked for; otherwise it is a limit, compared at the last record.
    """
    steps = np.asarray(tr.steps)
    try:
        points = [theory.predict(c, steps) for c in configs]
        shorter = theory.predict(configs[0], steps[:-1])
    except (TypeError, ValueError, NotImplementedError) as err:
        raise CLIError(f"{theory.__name__}.predict: {err}") from err
    prediction, modes = {}, {}
    for name, value in points[0].items():
        if name not in tr.metrics:
            continue
        stacked = np.stack([np.asarray(p[name], dtype=np.float64) for p in points])
        if np.all(np.isnan(stacked)):
            continue  # the theory says nothing about this metric for this config
        moves = np.shape(shorter[name]) != np.shape(value)
        modes[name] = "trajectory" if moves else "final"
        prediction[name] = stacked if tr.grid else stacked[0]
    if not prediction:
        raise CLIError(
            f"{theory.__name__}.predict names none of the recorded metrics "
            f"({', '.join(tr.metrics)})"
        )
    return prediction, modes


def _agreement(tr, prediction, modes, args):
    import collapse_jax as cj
    from collapse_jax.compare import Agreement

    merged = {}
    for at in ("trajectory", "final"):
        part = {k: v for k, v in prediction.items() if modes[k] == at}
        if part:
            a = cj.compare(tr, part, z=args.z, atol=args.atol, rtol=args.rtol, at=at)
            merged.update(a.metrics)
    return Agreement(merged)


def _failing_points(tr, agreement) -> list[str]:
    """``lr=0.2: nc1 (err/tol 3.1)`` for every grid point where a metric fails."""
    lines = []
    counts = _finite_counts(tr)
    for g, label in enumerate(_point_labels(tr)):
        if counts[g] == 0:
            lines.append(f"disagrees at {label or 'the run'}: no seed stayed finite")
            continue
        bad = []
        for m in agreement.metrics.values():
            err, tol = np.abs(_point(tr, m.error, g)), _point(tr, m.tolerance, g)
            if not np.all(err <= tol):
                with np.errstate(divide="ignore", invalid="ignore"):
                    worst = np.max(np.where(err == 0, 0.0, err / tol))
                bad.append(f"{m.metric} (err/tol {worst:.2f})")
        if bad:
            lines.append(f"disagrees at {label or 'the run'}: {', '.join(bad)}")
    return lines


def _theory_report(model, tr, cfg, args):
    """Prints the agreement; returns ``(passed, prediction, modes)``."""
    theory = _load_theory(model, getattr(args, "theory", None))
    prediction, modes = _predict(theory, _point_configs(cfg, tr), tr)
    agreement = _agreement(tr, prediction, modes, args)
    print(
        f"agreement with {theory.__name__} (z={args.z:g}, atol={args.atol:g}, "
        f"rtol={args.rtol:g}):"
    )
    print(textwrap.indent(agreement.table(), "  "))
    for line in _failing_points(tr, agreement):
        print(line)
    verdict = "agrees with theory" if agreement.passed else "DISAGREES with theory"
    print(f"{_short_name(model)}: {verdict}")
    return agreement.passed, prediction, modes


# --------------------------------------------------------------------------- figures


def _components(x: np.ndarray, time_axis: int, limit: int = 6):
    """``[T, C]`` of at most ``limit`` components of a ``[T, ...]`` metric (or
    ``[C]`` of a limit) and their index labels."""
    x = np.moveaxis(np.asarray(x, dtype=float), time_axis, 0) if time_axis >= 0 else x
    shape = x.shape[1:] if time_axis >= 0 else x.shape
    flat = x.reshape((x.shape[0], -1) if time_axis >= 0 else (-1,))
    labels = [str(list(i)) if shape else "" for i in np.ndindex(*shape)] or [""]
    return flat[..., :limit], labels[:limit]


def _plot(tr, names, prediction, modes, path, logy: bool = False) -> None:
    from collapse_jax import plotting

    names = names if prediction is None else [n for n in names if n in prediction]
    if not names:
        print(f"--plot: no scalar metric to draw; {path} not written", file=sys.stderr)
        return
    cols = min(3, len(names))
    fig, axes = plotting.figure(ncols=cols, nrows=math.ceil(len(names) / cols))
    steps = np.asarray(tr.steps, dtype=float)
    labels = _point_labels(tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for ax, name in zip(axes.flat, names, strict=False):
            if logy:
                ax.set_yscale("log")  # before drawing: the band adapts to it
            for g, label in enumerate(labels):
                mean, idx = _components(_point(tr, tr.mean(name), g), 0)
                se, _ = _components(_point(tr, tr.se(name), g), 0)
                theory = None
                if prediction is not None:
                    t_axis = 0 if modes[name] == "trajectory" else -1
                    theory_label = "theory" if t_axis == 0 else "theory (limit)"
                    theory, _ = _components(_point(tr, prediction[name], g), t_axis)
                for c, index in enumerate(idx):
                    text = " ".join(s for s in (label, index) if s) or "simulation"
                    color = plotting.simulation_band(
                        ax, steps, mean[:, c], np.nan_to_num(se[:, c]), label=text
                    )
                    if len(labels) * len(idx) == 1:
                        color = "k"  # one curve: the theory in black stands out
                    if theory is None:
                        continue
                    y = theory[:, c] if theory.ndim == 2 else np.full(2, theory[c])
                    x = steps if theory.ndim == 2 else steps[[0, -1]]
                    is_first = g == 0 and c == 0
                    plotting.theory_line(
                        ax, x, y, color=color, label=theory_label if is_first else None
                    )
            ax.set_xlabel("step")
            ax.set_ylabel(name)
            handles = ax.get_legend_handles_labels()[0]
            if len(handles) <= 12:
                plotting.legend(ax)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    short = tr.model.rsplit(".", 1)[-1]
    fig.suptitle(f"{short}: mean ± 2 SE over {len(tr.seeds)} seeds", fontsize=10)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plotting.close(fig)
    print(f"figure written to {path}")


def _write_csv(tr, path: str) -> None:
    """Long format: one row per (grid point, seed, step, metric component)."""
    from collapse_jax.trajectory import atomic_write_text

    grid_names = list(tr.grid)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*grid_names, "seed", "step", "metric", "value"])
    size = len(next(iter(tr.grid.values()))) if tr.grid else 1
    for g in range(size):
        point = [repr(float(tr.grid[k][g])) for k in grid_names]
        for name, values in tr.metrics.items():
            values = _point(tr, np.asarray(values), g)  # [S, T, ...]
            shape = values.shape[2:]
            for s, seed in enumerate(tr.seeds):
                for t, step in enumerate(tr.steps):
                    for index in np.ndindex(*shape):
                        label = name + (str(list(index)) if shape else "")
                        value = values[(s, t, *index)]
                        writer.writerow(
                            [*point, int(seed), int(step), label, repr(float(value))]
                        )
    atomic_write_text(path, buffer.getvalue())
    print(f"table written to {path}")


# --------------------------------------------------------------------------- commands


def _width() -> int:
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def _cmd_list(args) -> int:
    from collapse_jax import models

    if args.model:
        model = _load_model(args.model)
        doc = (model.__doc__ or "").strip().splitlines()
        print(f"{model.__name__}: {doc[0] if doc else ''}")
        print(
            f"{model.__name__}.Config fields (static: sets shapes or code paths; "
            "sweepable: --grid can vary it):"
        )
        print(_fields_table(model))
        return 0
    width = _width()
    rows = []
    for name in models.available():
        doc = (models.get(name).__doc__ or "").strip().splitlines()
        rows.append((name, doc[0] if doc else ""))
    for name, ep in sorted(_entry_points(MODEL_GROUP).items()):
        rows.append((name, f"(from {ep.value})"))
    _print_wrapped("models:", rows, width)
    rows = []
    for name, module in _experiment_modules(None).items():
        if module is None:
            from collapse_jax import report

            module = report.get(name)
        rows.append((name, " ".join(str(module.TITLE).split())))
    _print_wrapped("experiments:", rows, width)
    return 0


def _print_wrapped(heading: str, rows: list[tuple[str, str]], width: int) -> None:
    print(heading)
    pad = max(len(n) for n, _ in rows) + 4 if rows else 4
    for name, text in rows:
        lead = f"  {name.ljust(pad - 2)}"
        print(
            textwrap.fill(
                text,
                width,
                initial_indent=lead,
                subsequent_indent=" " * pad,
                break_on_hyphens=False,
                break_long_words=False,
            )
            if text
            else lead.rstrip()
        )


def _cmd_run(args) -> int:
    return _simulate_command(args, sweeping=False)


def _cmd_sweep(args) -> int:
    return _simulate_command(args, sweeping=True)


def _simulate_command(args, sweeping: bool) -> int:
    from collapse_jax import config_to_dict

    model = _load_model(args.model)
    cfg = _build_config(model, args.set or [])
    grid = _parse_grid(model, cfg, args.grid or []) if sweeping else {}
    every, chunk = _run_sizes(args)
    stem = _short_name(model) + ("_sweep" if sweeping else "")
    path = os.path.join(args.out, f"{stem}.npz")
    _check_outputs(args, path)
    theory = _load_theory(model, args.theory) if args.compare else None

    print(f"model: {model.__name__}")
    print(_config_text(config_to_dict(cfg), _width()))
    if grid:
        points = math.prod(len(v) for v in grid.values())
        shown = "; ".join(f"{k} in {v}" for k, v in grid.items())
        print(f"grid: {shown} ({points} points)")
    chunks = "" if chunk is None else f", chunks of {chunk} steps"
    print(
        f"{args.seeds} seeds x {args.steps} steps, recorded every {every}{chunks}",
        flush=True,
    )
    start = time.perf_counter()
    tr = _simulate(model, cfg, grid, args, every, chunk)
    seconds = time.perf_counter() - start
    tr.save(path)
    print(f"simulated in {seconds:.2f} s")
    names = _metric_names(tr, args.metrics)
    print("\n".join(_summary(tr, names)))
    print(f"trajectory written to {path}")
    return _finish(model, tr, cfg, args, names, theory is not None)


def _finish(model, tr, cfg, args, names, compare: bool) -> int:
    """Theory comparison and figure shared by run, sweep and show; the exit code."""
    if _all_diverged(tr):
        print(
            f"error: every seed diverged ({len(tr.divergences)} runs); no finite "
            "result to summarise or compare",
            file=sys.stderr,
        )
        return 1
    passed, prediction, modes = True, None, None
    if compare:
        passed, prediction, modes = _theory_report(model, tr, cfg, args)
    if getattr(args, "plot", None):
        shown = [n for n in names if np.ndim(tr.final(n)) == (2 if tr.grid else 1)]
        shown = shown if prediction is None else names
        _plot(tr, shown, prediction, modes, args.plot, args.logy)
    return 0 if passed else 1


def _cmd_show(args) -> int:
    from collapse_jax.trajectory import Trajectory

    if not os.path.isfile(args.file):
        raise CLIError(f"{args.file}: no such file")
    _check_outputs(args, None)
    try:
        tr = Trajectory.load(args.file)
    except (OSError, ValueError, KeyError) as err:
        raise CLIError(f"{args.file}: not a readable trajectory ({err})") from err
    record = {k: v for k, v in tr.config.items() if k not in tr.grid}
    steps = np.asarray(tr.steps)
    every = int(steps[1] - steps[0]) if len(steps) > 1 else 0
    seeds = np.asarray(tr.seeds)
    print(f"file: {args.file}")
    print(f"model: {tr.model}")
    print(_config_text(record, _width()))
    for k, v in tr.grid.items():
        values = list(dict.fromkeys(np.asarray(v).tolist()))  # the product's axis
        print(f"grid: {k} in [{', '.join(f'{x:g}' for x in values)}]")
    print(
        f"seeds: {len(seeds)} (ids {seeds.min()}..{seeds.max()}); steps: "
        f"{int(steps[-1])}, recorded every {every} ({len(steps)} records)"
    )
    names = _metric_names(tr, args.metrics)
    print("\n".join(_summary(tr, names)))
    if args.csv:
        _write_csv(tr, args.csv)
    model = cfg = None
    if args.compare:
        model = _load_model(tr.model)
        cfg = _saved_config(model, tr)
    return _finish(model, tr, cfg, args, names, args.compare)


def _saved_config(model, tr):
    """The Config of a saved run (for a sweep: its first grid point's)."""
    fields = _fields(model.Config)
    kwargs = {}
    for k, v in tr.config.items():
        if k not in fields:
            continue
        if isinstance(v, list):  # a swept leaf holds every grid point's value
            v = v[0] if _is_leaf(fields[k]) else tuple(v)
        kwargs[k] = v
    return _make_config(model, kwargs, f"cannot rebuild the config of {tr.model}")


def _cmd_reproduce(args) -> int:
    from collapse_jax import report

    available = _experiment_modules(args.source)
    names = args.names or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        where = f"in {args.source}" if args.source else "(see collapse-jax list)"
        raise CLIError(
            f"unknown experiment(s) {', '.join(unknown)} {where}: choose from "
            f"{', '.join(available)}"
        )
    _writable_dir(args.out, "--out")
    records, failures = [], []
    total = time.perf_counter()
    for name in names:
        print(f"[{name}] running ({'quick' if args.quick else 'full'})...", flush=True)
        try:
            module = available[name]
            if module is None:
                record = report.run_experiment(name, args.out, quick=args.quick)
            else:
                record = _run_experiment_module(name, module, args.out, args.quick)
        except Exception:  # one broken experiment must not hide the others
            failures.append(name)
            print(f"[{name}] ERROR\n{traceback.format_exc()}", file=sys.stderr)
            continue
        records.append(record)
        verdict = "agrees with theory" if record["passed"] else "DISAGREES with theory"
        print(f"[{name}] {verdict} ({record['seconds']:.1f} s)", flush=True)
        if not record["passed"]:
            failures.append(name)
    index = report.write_index(args.out, records)
    print(
        f"{len(records) - sum(not r['passed'] for r in records)}/{len(names)} "
        f"experiments agree; {time.perf_counter() - total:.0f} s; gallery: {index}"
    )
    return 1 if failures else 0


def _run_experiment_module(name: str, module: ModuleType, out: str, quick: bool):
    """``report.run_experiment`` for an experiment module outside the package."""
    from collapse_jax import report

    start = time.perf_counter()
    result = module.run(quick=quick)
    seconds = time.perf_counter() - start
    try:
        notes = report.theory_notes(module)
    except ValueError:  # names models this package does not ship: no notes to link
        notes = []
    fig = module.plot(result)
    return report.save_result(
        out, name, result, fig, title=module.TITLE, quick=quick, seconds=seconds,
        notes_paths=notes,
    )  # fmt: skip


# --------------------------------------------------------------------------- parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _add_simulation_options(p: argparse.ArgumentParser, sweeping: bool) -> None:
    p.add_argument("model", help="built-in model, plugin name or module path")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config field, e.g. --set lambda_w=1e-3 --set per_class=(5,3)",
    )
    if sweeping:
        p.add_argument(
            "--grid",
            action="append",
            required=True,
            metavar="KEY=V1,V2,...",
            help="sweepable field and its values; several --grid make a product grid",
        )
    p.add_argument("--seeds", type=_positive, default=8, help="seeds (default 8)")
    p.add_argument("--steps", type=_positive, default=1000, help="steps (default 1000)")
    p.add_argument(
        "--every",
        type=_positive,
        default=None,
        help="record every this many steps (default: the largest divisor of --steps "
        "up to steps/100)",
    )
    p.add_argument(
        "--chunk",
        type=_positive,
        default=None,
        help=f"steps per compiled chunk: the progress bar and checkpoints advance per "
        f"chunk (default with --checkpoint or on a terminal: about {_CHUNKS} chunks); "
        "never changes the numbers",
    )
    p.add_argument("--key", type=int, default=0, help="base PRNG seed")
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        default=None,
        help="checkpoint each chunk in DIR; rerunning the same command resumes",
    )
    p.add_argument("--out", default="results", help="directory for MODEL.npz")
    p.add_argument("--force", action="store_true", help="overwrite an existing result")
    _add_report_options(p)


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compare",
        action="store_true",
        help="compare with the model's theory (predict); exit 1 on disagreement",
    )
    p.add_argument("--theory", metavar="MODULE", help="theory module (default: mirror)")
    p.add_argument("--z", type=float, default=4.0, help="tolerance in SEs (default 4)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance floor")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance floor")
    p.add_argument("--metrics", metavar="A,B", help="summarise and plot only these")
    p.add_argument(
        "--plot", metavar="FILE.png", help="simulation (mean ± 2 SE) and theory figure"
    )
    p.add_argument("--logy", action="store_true", help="log y axes in --plot")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser(model_help: dict[str, str]) -> argparse.ArgumentParser:
    from collapse_jax import __version__

    parser = _Parser(
        prog=_PROG,
        description="Toy models of collapse, simulated in JAX and checked against "
        "theory.",
    )
    import jax

    parser.add_argument(
        "--version",
        action="version",
        version=f"{_PROG} {__version__} (jax {jax.__version__})",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show tracebacks of usage errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="models and experiments; a model's config fields")
    lst.add_argument("model", nargs="?", help="show this model's Config fields")
    lst.set_defaults(func=_cmd_list)

    raw = argparse.RawDescriptionHelpFormatter
    for name, sweeping, text in (
        ("run", False, "simulate one model over seeds and save its trajectory"),
        ("sweep", True, "simulate a model over a product grid of float fields"),
    ):
        p = sub.add_parser(
            name, help=text, epilog=model_help.get(name), formatter_class=raw
        )
        _add_simulation_options(p, sweeping)
        p.set_defaults(func=_cmd_sweep if sweeping else _cmd_run)

    show = sub.add_parser("show", help="summarise a saved trajectory (.npz)")
    show.add_argument("file")
    show.add_argument("--csv", metavar="FILE.csv", help="export in long format")
    _add_report_options(show)
    show.set_defaults(func=_cmd_show)

    rep = sub.add_parser("reproduce", help="run experiments and write the gallery")
    rep.add_argument("names", nargs="*", help="experiments (default: all)")
    rep.add_argument(
        "--from",
        dest="source",
        metavar="PACKAGE",
        help="experiments from this package (modules with TITLE, run and plot)",
    )
    rep.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: every experiment in a few minutes on a CPU",
    )
    rep.add_argument("--out", default="out")
    rep.set_defaults(func=_cmd_reproduce)
    return parser


def _model_help(argv: list[str]) -> dict[str, str]:
    """For ``run MODEL --help``: the model's Config fields as the help's epilog."""
    if len(argv) < 3 or argv[0] not in ("run", "sweep"):
        return {}
    if not ({"-h", "--help"} & set(argv)) or argv[1].startswith("-"):
        return {}
    try:
        model = _load_model(argv[1])
    except CLIError:
        return {}
    return {argv[0]: f"{model.__name__}.Config fields:\n{_fields_table(model)}"}


def _interrupted(args, argv: list[str]) -> str:
    checkpoint = getattr(args, "checkpoint", None)
    if not checkpoint:
        return "interrupted; nothing was saved (--checkpoint DIR makes a run resumable)"
    from collapse_jax import _checkpoint

    command = shlex.join([_PROG, *argv])
    done = _checkpoint.latest(checkpoint)
    if done is None:
        return (
            f"interrupted before the first checkpoint in {checkpoint} was complete; "
            f"the same command starts again: {command}"
        )
    every = _run_sizes(args)[0]
    return (
        f"interrupted; steps 0-{done * every} of {args.steps} are checkpointed in "
        f"{checkpoint}: rerun the same command to resume: {command}"
    )


def _exit_on_interrupt(args, argv: list[str]) -> None:
    """Ctrl-C prints how to resume and exits 130 from the signal handler itself.

    A KeyboardInterrupt raised while Python runs a finaliser or a callback (of JAX,
    orbax or the progress bar) is printed as ignored and the run goes on; exiting in
    the handler cannot be swallowed. A checkpoint being committed in orbax's threads
    is abandoned; the previous complete checkpoint is intact and is what a rerun
    resumes from.
    """

    def handler(signum, frame):
        print(f"\n{_PROG}: {_interrupted(args, argv)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def _quiet_stdout() -> None:
    """After a closed pipe: send what Python still flushes at exit to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def main(argv: list[str] | None = None) -> int:
    from collapse_jax import _runtime

    command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    _runtime.enable_compilation_cache()
    parser = _parser(_model_help(argv))
    args = None
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help, --version or a usage error
            return done.code if isinstance(done.code, int) else 0
        if command_line:
            _exit_on_interrupt(args, argv)
        code = args.func(args)
        sys.stdout.flush()
        return code
    except CLIError as err:
        if args is not None and args.traceback:
            raise
        sys.stdout.flush()
        print(f"{_PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # in-process callers (a command line exits in
        # _exit_on_interrupt's handler, or here if Ctrl-C came before it was set)
        print(f"\n{_PROG}: {_interrupted(args, argv)}", file=sys.stderr, flush=True)
        if command_line:
            sys.stdout.flush()
            os._exit(130)
        return 130
    except BrokenPipeError:  # e.g. `collapse-jax list | head -2`
        _quiet_stdout()
        return 0


if __name__ == "__main__":
    sys.exit(main())
