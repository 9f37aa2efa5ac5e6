"""Writing an export: everything goes into a hidden staging folder beside OUT, and only a
complete, checked export is moved into place, so an interrupted export never leaves a half
model where a server would pick it up."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import VisionMLError
from ..fileio import write_error


@contextlib.contextmanager
def staging_folder(out_dir: Path):
    """A fresh temporary folder on the same file system as ``out_dir`` (so the final move is a
    rename); removed afterwards whatever happens."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VisionMLError(f"-o {out_dir}: exists and is not a folder; pass a folder path")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    except OSError as exc:
        raise write_error(out_dir, exc) from None
    try:
        yield tmp
    except OSError as exc:
        # A file being staged or moved into place (disk full, permissions): name it as it would be
        # in OUT, not by the temporary folder that is about to be removed.
        staged = Path(exc.filename) if exc.filename is not None else None
        if staged is None or staged == tmp or tmp in staged.parents:
            raise write_error(out_dir / staged.relative_to(tmp) if staged else out_dir, exc) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, out_dir: Path) -> None:
    """Move the staged files into ``out_dir`` (created with the user's usual permissions), each by
    an atomic rename, leaving other files there alone. The manifests (``visionml.json``, MLflow's
    ``MLmodel``) move last, so whoever finds one finds the files it describes."""
    out_dir.mkdir(exist_ok=True)
    last = {"visionml.json", "MLmodel"}
    for entry in sorted(tmp.iterdir(), key=lambda e: (e.name in last, e.name)):
        target = out_dir / entry.name
        if entry.is_dir():
            if target.exists():
                shutil.rmtree(target)
            os.rename(entry, target)
        else:
            os.replace(entry, target)
