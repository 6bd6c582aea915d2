"""Validation helpers shared by every model's ``Config``.

Hyperparameters that are pytree leaves may hold a grid (an array) or a tracer (inside
``jit``/``vmap``); only concrete values can be checked, so tracers pass through.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np


def _concrete(value: Any) -> np.ndarray | None:
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def check_range(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raises ``ValueError`` naming ``name`` unless every entry of ``value`` lies in range."""
    arr = _concrete(value)
    if arr is None:
        return
    ok = ~np.isnan(arr)
    ok &= (arr > low) if low_open else (arr >= low)
    ok &= (arr < high) if high_open else (arr <= high)
    if not np.all(ok):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(
            f"{name}={value!r} is out of range: allowed {left}{low}, {high}{right}"
        )


def check_int(name: str, value: Any, low: int = 0, high: float = math.inf) -> None:
    """Raises ``ValueError`` unless ``value`` is a Python int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name}={value!r} must be an integer in [{low}, {high}]")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range: allowed [{low}, {high}]")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {choices}")


def check_dtype(name: str, value: str) -> None:
    """Accepts 'float32' always and 'float64' only when ``jax_enable_x64`` is on."""
    check_choice(name, value, ("float32", "float64"))
    if value == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{name}='float64' needs 64-bit JAX: call "
            "jax.config.update('jax_enable_x64', True) before building the config"
        )


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready record of a config dataclass (arrays become lists)."""
    out = {}
    for field in dataclasses.fields(cfg):
        out[field.name] = to_jsonable(getattr(cfg, field.name))
    return out


def to_jsonable(value: Any) -> Any:
    """Converts arrays, tuples and numpy scalars into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool | str | type(None)):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    arr = np.asarray(value)
    if arr.ndim == 0:
        x = arr.item()
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        return x
    return [to_jsonable(v) for v in arr.tolist()]


class ClassSizes:
    """Class-size properties of a Config with ``num_classes`` and ``per_class``
    (one int, or one count per class, as ``check_per_class`` returns it)."""

    @property
    def counts(self) -> tuple[int, ...]:
        """Samples per class, ``K`` ints."""
        if isinstance(self.per_class, tuple):
            return self.per_class
        return (self.per_class,) * self.num_classes

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    @property
    def labels(self) -> np.ndarray:
        """``[N]`` class of each sample, sorted by class."""
        return np.repeat(np.arange(self.num_classes), self.counts)


def check_per_class(name: str, value: Any, num_classes: int) -> int | tuple[int, ...]:
    """Validates samples per class (one int, or one count per class); returns it
    normalised (a tuple of ints when per class)."""
    if isinstance(value, tuple | list):
        if len(value) != num_classes:
            raise ValueError(
                f"{name} has {len(value)} counts; allowed: one per class "
                f"(num_classes={num_classes}) or a single int"
            )
        for k, n in enumerate(value):
            check_int(f"{name}[{k}]", n, 1)
        return tuple(int(n) for n in value)
    check_int(name, value, 1)
    return value
