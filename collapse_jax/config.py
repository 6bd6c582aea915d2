"""Validation helpers for a model's ``Config``, for the library's models and your own.

Call them from the Config's ``__post_init__``; each raises :class:`ConfigError` (a
``ValueError``) whose message names the field, the value and what is allowed, and
whose attributes carry the same for programs (``err.field``, ``err.value``,
``err.allowed``)::

    @struct.dataclass
    class Config:
        dim: int = struct.field(pytree_node=False, default=8)
        loss: str = struct.field(pytree_node=False, default="mse")
        dtype: str = struct.field(pytree_node=False, default="float32")
        lr: float = 0.1  # a pytree leaf: sweeps vmap over it

        def __post_init__(self):
            check_int("dim", self.dim, 1)
            check_choice("loss", self.loss, ("mse", "ce"))
            check_dtype("dtype", self.dtype)
            check_range("lr", self.lr, 0.0, low_open=True)

A float hyperparameter that is a pytree leaf is a real number; inside ``jit`` or
``vmap`` it is a tracer, and JAX rebuilds the Config with abstract placeholders, so
those pass unchecked. An array is taken as a batch of values (the leading grid axis of
``expand_grid`` and ``sweep``), checked entry by entry. Text, ``None``, booleans,
complex numbers and Python lists are refused: a list of values is a sweep
(``cj.sweep(model, cfg, grid={"lr": [...]})``), not a Config.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

__all__ = [
    "ClassSizes",
    "ConfigError",
    "check_choice",
    "check_dtype",
    "check_int",
    "check_per_class",
    "check_range",
    "config_to_dict",
    "to_jsonable",
]


class ConfigError(ValueError):
    """A Config field holds a value it does not allow.

    Attributes:
      field: the field's name (with an index for one entry of a tuple, ``"lam[1]"``).
      value: the value given.
      allowed: what the field allows, in words (``"real numbers in (0.0, inf)"``).
    """

    def __init__(self, field: str, value: Any, allowed: str, message: str):
        super().__init__(message)
        self.field = field
        self.value = value
        self.allowed = allowed

    def __reduce__(self):
        return type(self), (self.field, self.value, self.allowed, str(self))


def _interval(low, high, low_open, high_open) -> str:
    left = "(" if low_open or low == -math.inf else "["
    right = ")" if high_open or high == math.inf else "]"
    return f"{left}{low}, {high}{right}"


def _abstract(value: Any) -> bool:
    """True for what JAX puts in a Config while it transforms one: tracers, shape
    placeholders (``ShapeDtypeStruct``, avals) and bare sentinel objects."""
    if isinstance(value, jax.core.Tracer) or type(value) is object:
        return True
    concrete = isinstance(value, np.ndarray | np.generic | jax.Array)
    return not concrete and hasattr(value, "shape") and hasattr(value, "dtype")


def _real_array(
    name: str, value: Any, shape: tuple[int, ...] | None, allowed: str
) -> np.ndarray | None:
    """``value`` as a float array, or None if it is abstract; ConfigError if it is
    not a real number (or a batch of them) of the allowed shape."""
    if _abstract(value):
        return None

    def refuse(why: str):
        raise ConfigError(
            name, value, allowed, f"{name}={value!r} {why}: allowed {allowed}"
        )

    if isinstance(value, bool | np.bool_):
        refuse("is a boolean, not a number")
    if isinstance(value, str | bytes):
        refuse("is text, not a number")
    if value is None:
        refuse("is None, not a number")
    if isinstance(value, numbers.Real):
        arr = np.asarray(float(value))
    elif isinstance(value, numbers.Number):
        refuse("is not a real number")
    elif isinstance(value, np.ndarray | jax.Array):
        if value.dtype.kind not in "fiu":
            refuse(f"has dtype {value.dtype}, not a real number type")
        arr = np.asarray(value, dtype=np.float64)
        # Leading axes are a batch of values (a grid); the rest is one value's shape.
        if shape is not None and arr.shape[arr.ndim - len(shape) :] != shape:
            refuse(f"has shape {arr.shape}; one value has shape {shape}")
    elif isinstance(value, list | tuple) and shape != ():
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            refuse("is not a sequence of real numbers")
        if any(isinstance(v, bool | str | bytes) or v is None for v in np.ravel(value)):
            refuse("is not a sequence of real numbers")
        if shape is not None and arr.shape != shape:
            refuse(f"has shape {arr.shape}, not {shape}")
    elif isinstance(value, list | tuple):
        refuse(
            "is a sequence, not one number (to run several values, sweep them: "
            f"cj.sweep(model, cfg, grid={{{name!r}: [...]}}))"
        )
    else:
        refuse(f"is a {type(value).__name__}, not a number")
    return arr


def check_range(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    shape: tuple[int, ...] | None = (),
) -> None:
    """Checks a real hyperparameter: a finite real number in the range.

    Args:
      name: the field's name, used in the message.
      value: a Python or NumPy real, or an array whose leading axes are a batch of
        values (a sweep's grid axis); tracers and JAX placeholders pass unchecked.
      low, high: the bounds, closed unless ``low_open`` / ``high_open``. Values are
        finite even when a bound is infinite.
      shape: the shape of one value: ``()`` (default) for a scalar; a tuple for a
        field that documents a vector (then a list or tuple of that shape is
        accepted too); None for any shape.

    Raises:
      ConfigError: naming ``name``, the value and the allowed range.
    """
    kind = "real numbers" if shape == () else f"real arrays of shape {shape}"
    allowed = f"{kind} in {_interval(low, high, low_open, high_open)}"
    arr = _real_array(name, value, shape, allowed)
    if arr is None:
        return
    ok = np.isfinite(arr)
    ok &= (arr > low) if low_open else (arr >= low)
    ok &= (arr < high) if high_open else (arr <= high)
    if not np.all(ok):
        raise ConfigError(
            name, value, allowed, f"{name}={value!r} is out of range: allowed {allowed}"
        )


def check_int(name: str, value: Any, low: int = 0, high: float = math.inf) -> None:
    """Checks that ``value`` is a Python or NumPy int in ``[low, high]``.

    Raises:
      ConfigError: naming ``name``, the value and the allowed range.
    """
    allowed = f"integers in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(
            name,
            value,
            allowed,
            f"{name}={value!r} must be an integer in [{low}, {high}]",
        )
    if not low <= value <= high:
        raise ConfigError(
            name, value, allowed, f"{name}={value!r} is out of range: allowed {allowed}"
        )


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Checks that ``value`` is one of ``choices`` (compared with ``==``).

    Raises:
      ConfigError: naming ``name``, the value and the choices.
    """
    choices = tuple(choices)
    try:
        ok = value in choices
    except (TypeError, ValueError):  # an array compares elementwise
        ok = False
    if not ok:
        raise ConfigError(
            name,
            value,
            f"one of {choices}",
            f"{name}={value!r} is not allowed: choose one of {choices}",
        )


def check_dtype(name: str, value: str) -> None:
    """Accepts ``'float32'`` always and ``'float64'`` only with ``jax_enable_x64`` on.

    Raises:
      ConfigError: naming ``name``; for float64 without x64, saying how to enable it.
    """
    check_choice(name, value, ("float32", "float64"))
    if value == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError(
            name,
            value,
            "'float32', or 'float64' with jax_enable_x64",
            f"{name}='float64' needs 64-bit JAX: call "
            "jax.config.update('jax_enable_x64', True) before building the config "
            "(or set JAX_ENABLE_X64=1)",
        )


def check_per_class(name: str, value: Any, num_classes: int) -> int | tuple[int, ...]:
    """Validates samples per class: one int, or one int per class.

    Returns:
      ``value`` normalised: an int, or a tuple of ``num_classes`` ints.
    """
    if isinstance(value, tuple | list):
        if len(value) != num_classes:
            allowed = f"one count per class (num_classes={num_classes}) or a single int"
            raise ConfigError(
                name,
                value,
                allowed,
                f"{name} has {len(value)} counts; allowed: {allowed}",
            )
        for k, n in enumerate(value):
            check_int(f"{name}[{k}]", n, 1)
        return tuple(int(n) for n in value)
    check_int(name, value, 1)
    return value


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


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready record of a config dataclass (arrays become lists)."""
    return {f.name: to_jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def to_jsonable(value: Any) -> Any:
    """Converts arrays, tuples and NumPy scalars into plain JSON values (non-finite
    floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``)."""
    if isinstance(value, Mapping):
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
