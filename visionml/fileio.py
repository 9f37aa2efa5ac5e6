"""Writing files so that a crash or Ctrl-C never leaves half a file under the final name: write
to a temporary file in the same folder, then rename it over the target in one step."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target):
    """Yield a temporary path beside ``target`` to write; on success it replaces ``target`` in one
    rename, on any error it is removed and ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(target, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically; ``fsync`` also waits until it is on disk."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    return Path(target)
