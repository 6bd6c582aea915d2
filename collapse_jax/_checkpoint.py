"""Chunk checkpoints for resumable runs. The only module that touches orbax."""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import numpy as np

from collapse_jax._io import atomic_write

_RUN_FILE = "run.json"
_CHUNK = re.compile(r"^chunk_(\d{8})$")


class CheckpointMismatchError(ValueError):
    """The checkpoint directory belongs to a different run.

    ``differences`` maps each differing setting (a Config field by its name; ``seeds``,
    ``steps``, ``every``, ``grid lr``, ...) to ``(checkpoint's value, this run's)``.
    """

    def __init__(
        self, message: str, differences: dict[str, tuple[Any, Any]] | None = None
    ):
        super().__init__(message)
        self.differences = differences or {}

    def __reduce__(self):
        return type(self), (str(self), self.differences)


_MISSING = "<absent>"


def _flatten(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Config fields by their own names, grid axes as ``grid <field>``, the rest as
    they are."""
    out = {}
    for key, value in fingerprint.items():
        if key == "config" and isinstance(value, dict):
            # A field named like a run setting keeps a prefix: no two share a name.
            out.update(
                {f"config {k}" if k in fingerprint else k: v for k, v in value.items()}
            )
        elif key == "grid" and isinstance(value, dict):
            out.update({f"grid {k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 6:
        head = ", ".join(repr(v) for v in value[:5])
        return f"[{head}, ... ({len(value)} values)]"
    return repr(value) if value is not _MISSING else value


def differences(found: dict[str, Any], expected: dict[str, Any]) -> dict[str, tuple]:
    """Setting -> ``(found, expected)`` for every setting that differs."""
    a, b = _flatten(found), _flatten(expected)
    keys = list(b) + [k for k in a if k not in b]
    return {
        k: (a.get(k, _MISSING), b.get(k, _MISSING))
        for k in keys
        if a.get(k, _MISSING) != b.get(k, _MISSING)
    }


def _checkpointer():
    import orbax.checkpoint as ocp  # imported lazily: only resumable runs pay for it

    return ocp.StandardCheckpointer()


def prepare(directory: str, fingerprint: dict[str, Any]) -> None:
    """Creates ``directory`` for this run, or checks that it belongs to this run."""
    os.makedirs(directory, exist_ok=True)
    run_file = os.path.join(directory, _RUN_FILE)
    expected = json.loads(json.dumps(fingerprint))
    if os.path.exists(run_file):
        try:
            with open(run_file) as f:
                found = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointMismatchError(
                f"checkpoint {run_file} is unreadable ({err}); delete the directory "
                "to start afresh"
            ) from err
        diff = differences(found, expected)
        if diff:
            detail = "; ".join(
                f"{k}: {_short(old)} vs {_short(new)}" for k, (old, new) in diff.items()
            )
            raise CheckpointMismatchError(
                f"checkpoint directory {directory} was written by a different run "
                f"(checkpoint vs this run: {detail}); use another directory or "
                "delete it",
                diff,
            )
    else:
        atomic_write(run_file, json.dumps(expected, indent=1, sort_keys=True))


def latest(directory: str) -> int | None:
    """Number of records already done in the newest complete checkpoint, or None."""
    if not os.path.isdir(directory):
        return None
    done = [int(m.group(1)) for n in os.listdir(directory) if (m := _CHUNK.match(n))]
    return max(done) if done else None


def save(directory: str, done: int, leaves: list[Any], records: dict[str, np.ndarray]):
    """Saves state leaves and the records so far; older chunks are removed after."""
    path = os.path.join(os.path.abspath(directory), f"chunk_{done:08d}")
    tree = {
        "leaves": {f"{i:05d}": np.asarray(x) for i, x in enumerate(leaves)},
        "records": {k: np.asarray(v) for k, v in records.items()},
    }
    ckptr = _checkpointer()
    ckptr.save(path, tree)
    ckptr.wait_until_finished()  # orbax renames into place only when complete
    for name in os.listdir(directory):
        m = _CHUNK.match(name)
        if m and int(m.group(1)) < done:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def restore(directory: str, done: int, leaves_like: list[Any], records_like: dict):
    """Restores what :func:`save` wrote; raises ``ValueError`` if it is corrupt."""
    path = os.path.join(os.path.abspath(directory), f"chunk_{done:08d}")
    target = {
        "leaves": {f"{i:05d}": _abstract(x) for i, x in enumerate(leaves_like)},
        "records": {k: _abstract(v) for k, v in records_like.items()},
    }
    try:
        tree = _checkpointer().restore(path, target)
    except Exception as err:  # orbax raises many types for damaged files
        raise ValueError(
            f"checkpoint {path} could not be restored ({type(err).__name__}: {err}); "
            "delete it to restart from the previous chunk or from scratch"
        ) from err
    leaves = [tree["leaves"][f"{i:05d}"] for i in range(len(leaves_like))]
    return leaves, {k: np.asarray(v) for k, v in tree["records"].items()}


def _abstract(x):
    import jax

    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype)
