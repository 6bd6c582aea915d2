"""Layer probe for flax linen networks: the features entering or leaving every layer.

``apply_with_features`` runs ``module.apply`` once under ``flax.linen.intercept_methods``
and records, for every submodule of the chosen layer types (``nn.Dense`` and
``nn.Conv`` by default), the array passed to its ``__call__`` (``side="input"``) or the
array it returns (``side="output"``), flattened to ``[N, features]``. Layers are keyed by
their module path (``"Dense_0"``, ``"block/conv"``), in call order; a module called twice
gets ``"name#1"`` for its second call. The features entering the last Dense layer are the
penultimate features the network classifies, so the NC metrics
(``collapse_jax.metrics``) apply layer by layer. Pure: usable inside ``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

__all__ = ["apply_with_features", "layer_features"]

SIDES = ("input", "output")


def apply_with_features(
    module: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    side: str = "input",
    layers: Sequence[type[nn.Module]] = (nn.Dense, nn.Conv),
    method: str | Callable | None = None,
    **apply_kwargs: Any,
) -> tuple[Any, dict[str, jax.Array]]:
    """``module.apply(variables, x)`` and the features at every probed layer.

    Args:
      module: a flax linen module whose first positional argument is a batch ``x``.
      variables: its variables (``{"params": ...}``).
      x: ``[N, ...]`` a batch; every recorded array keeps ``N`` as its leading axis.
      side: ``"input"`` (features entering each layer) or ``"output"`` (leaving it).
      layers: module types to record.
      method, apply_kwargs: passed on to ``module.apply``.

    Returns:
      ``(output, features)``, ``features[name]`` of shape ``[N, prod(rest)]``.
    """
    if side not in SIDES:
        raise ValueError(f"side={side!r} is not allowed: choose one of {SIDES}")
    layers = tuple(layers)
    records: dict[str, jax.Array] = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module_ = context.module
        if context.method_name == "__call__" and isinstance(module_, layers):
            value = args[0] if side == "input" else out
            name = "/".join(module_.path) or type(module_).__name__
            base, calls = name, 1
            while name in records:
                name, calls = f"{base}#{calls}", calls + 1
            records[name] = value.reshape(value.shape[0], -1)
        return out

    with nn.intercept_methods(interceptor):
        out = module.apply(variables, x, method=method, **apply_kwargs)
    return out, records


def layer_features(
    module: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    side: str = "input",
    layers: Sequence[type[nn.Module]] = (nn.Dense, nn.Conv),
    **apply_kwargs: Any,
) -> dict[str, jax.Array]:
    """The features of ``apply_with_features`` alone: name -> ``[N, features]``."""
    _, features = apply_with_features(
        module, variables, x, side=side, layers=layers, **apply_kwargs
    )
    return features
