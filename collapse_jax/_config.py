"""Former home of the Config validation helpers, now public in ``collapse_jax.config``;
this import path keeps working."""

from collapse_jax.config import (  # noqa: F401
    ClassSizes,
    ConfigError,
    check_choice,
    check_dtype,
    check_int,
    check_per_class,
    check_range,
    config_to_dict,
    to_jsonable,
)
