"""What explanation files hold and are named (``visionml.fileio`` writes them atomically)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as a float32 ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return buffer.getvalue()


def named_for_class(path, label: str) -> Path:
    """``viz.png`` -> ``viz.milk_bottle.png``: one file per multi-label class, the name made safe."""
    path = Path(path)
    safe = re.sub(r"[^\w.-]+", "_", label).strip("._") or "class"
    return path.with_name(f"{path.stem}.{safe}{path.suffix}")
