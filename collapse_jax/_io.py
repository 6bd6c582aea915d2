"""Atomic file writes: the one place the package writes a file's bytes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["atomic_write"]


def _umask() -> int:
    try:  # Linux reports it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere reading it means setting it: put it back
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]
) -> None:
    """Writes a whole file or nothing: a crash never leaves a partial ``path``.

    The bytes go to a temporary file beside ``path``, are fsynced, and the file is
    renamed over ``path``. Its mode is what ``open`` would give a new file,
    ``0o666 & ~umask`` (``mkstemp`` alone makes it 0600).

    Args:
      path: the file to write; its directory is created if missing.
      data: bytes, text (written as UTF-8), or a callback that writes to the open
        binary file (e.g. ``lambda f: fig.savefig(f, format="png")``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
