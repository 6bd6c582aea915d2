"""Toy models. Each module exports ``Config``, ``State``, ``init``, ``step``, ``observe``."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available() -> list[str]:
    """Names of the built-in toy models (modules of this package)."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    )


def get(name: str) -> ModuleType:
    """The model module called ``name``; ``ValueError`` lists the choices otherwise."""
    if name not in available():
        raise ValueError(f"model={name!r} is unknown: choose one of {available()}")
    return importlib.import_module(f"{__name__}.{name}")
