"""Analytical predictions, one module per toy model (the same name as in ``models/``).

Each module exposes ``predict(cfg, t=None) -> dict[str, Array]``:

- ``t``: step indices ``[T]`` (concrete) -> time-resolved predictions ``[T, *shape]``
  for the metrics the theory follows in time; a metric the theory knows only in the
  limit keeps its shape without ``T``.
- ``t=None`` (the default) -> the limit ``t -> infinity`` (the global minimiser, the
  fixed point, the absorbed state), each metric without the ``T`` axis, compared by
  ``cj.compare`` at the last record. Metrics whose limit the theory does not give
  are left out; a module whose theory has no limit returns ``{}`` (its docstring
  says so).
- Predictions cover only some metrics of the model's ``observe``, and NaN entries
  mean "no prediction here"; a config outside the theory's premises raises
  ``ValueError`` naming the field.

``predict`` must be traceable in the Config's float fields: sweeps evaluate it with
``jax.vmap(lambda c: predict(c, t))(grid_cfg)`` on the ``expand_grid`` Config, so
it uses ``jnp`` on those fields, branches only on static fields (sizes, choices),
and reads ``t`` as a concrete array. One exception: ``softmax_collapse`` predicts
from the rounding of the working dtype at the configured gap (it walks representable
floats), so it needs a concrete Config; sweep it by calling ``predict`` per grid point
(``cj.expand_grid``). A theory module may import its model's
``Config`` but never its dynamics (``init``, ``step``, ``loss``).
"""
