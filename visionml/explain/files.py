"""Writing explanation files atomically: a temporary file in the target folder, then a rename,
so an interrupted run never leaves a half-written PNG or .npy under the final name."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from ..fileio import write_bytes_atomic


def write_atomic(path, data: bytes) -> Path:
    return write_bytes_atomic(path, data)


def write_npy_atomic(path, array: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return write_atomic(path, buffer.getvalue())


def named_for_class(path, label: str) -> Path:
    """``viz.png`` -> ``viz.milk_bottle.png``: one file per multi-label class, the name made safe."""
    path = Path(path)
    safe = re.sub(r"[^\w.-]+", "_", label).strip("._") or "class"
    return path.with_name(f"{path.stem}.{safe}{path.suffix}")
