"""Chunk checkpoints for resumable runs. The only module that touches orbax."""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import numpy as np

from collapse_jax.trajectory import atomic_write_text

_RUN_FILE = "run.json"
_CHUNK = re.compile(r"^chunk_(\d{8})$")


class CheckpointMismatchError(ValueError):
    """The checkpoint directory belongs to a different run."""


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
        differing = sorted(
            k for k in set(expected) | set(found) if expected.get(k) != found.get(k)
        )
        if differing:
            detail = "; ".join(
                f"{k}: checkpoint has {found.get(k)!r}, this run has {expected.get(k)!r}"
                for k in differing
            )
            raise CheckpointMismatchError(
                f"checkpoint directory {directory} was written by a different run "
                f"({detail}); use another directory or delete it"
            )
    else:
        atomic_write_text(run_file, json.dumps(expected, indent=1, sort_keys=True))


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
