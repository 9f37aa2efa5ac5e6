"""Writing files so that a crash, Ctrl-C or SIGTERM never leaves half a file under the final name:
write to a temporary file in the same folder, then rename it over the target in one step.

A failed write (disk full, read-only folder, the target is a folder) becomes a ``VisionMLError``
that names the file and says what to do, and the temporary file is removed. Temporary files are
created with the user's umask (0644 under the usual umask 022), as ``open()`` would create them,
so a model folder can be read by another user or a container with another UID.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

from .errors import VisionMLError

_HINTS = {
    errno.ENOSPC: "free some space on that disk or write somewhere else",
    errno.EDQUOT: "your disk quota is used up: free some space or write somewhere else",
    errno.EFBIG: "the file is too large for that file system: write somewhere else",
    errno.EROFS: "that file system is read-only: choose another folder",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EISDIR: "it is a folder: pass a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "choose a shorter name",
}


def write_error(target, exc: OSError) -> VisionMLError:
    """``cannot write TARGET: No space left on device; free some space ...`` for ``exc``, raised
    while writing ``target``."""
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno)
    return VisionMLError(f"cannot write {target}: {reason}" + (f"; {hint}" if hint else ""))


# Only writing fails this way, so the message can say "cannot write" even when the caller did not.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError that no module reported itself: the file (when known), the reason
    and, for errors only writing causes, what to do."""
    hint = _HINTS.get(exc.errno) if exc.errno in _WRITE_ERRNOS else None
    if exc.errno in _WRITE_ERRNOS and exc.filename is not None:
        return str(write_error(exc.filename2 or exc.filename, exc))
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc}" + (f"; {hint}" if hint else "")


@contextmanager
def atomic_path(target):
    """Yield a temporary path beside ``target`` to write; on success it replaces ``target`` in one
    rename, on any error (or interruption) it is removed and ``target`` is left as it was.

    A target that is a device or a pipe (``/dev/stdout``, a FIFO) is yielded itself: renaming a
    file over it would replace the device instead of writing to it."""
    target = Path(target)
    if target.is_dir():
        raise VisionMLError(f"cannot write {target}: it is a folder; pass a file path")
    if _is_special(target):
        with _reporting(target, target):
            yield target
        return
    _make_parent(target)
    tmp = _create_temp(target)
    try:
        with _reporting(target, tmp):
            yield tmp
            os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(target, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically; ``fsync`` also waits until it is on disk."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync and not _is_special(tmp):
                handle.flush()
                os.fsync(handle.fileno())
    return Path(target)


def free_bytes(path) -> int:
    """Bytes an unprivileged user may still write on the file system that holds ``path`` (or would
    hold it: the nearest folder above that exists)."""
    info = os.statvfs(_nearest_existing(Path(path)))
    return info.f_bavail * info.f_frsize


def check_output_file(path, option: str = "--output", example: str = "out") -> None:
    """Refuse, before any work, an output file that cannot be written: an existing folder, a path
    under a file, a folder without write permission. ``example`` names a file for the message."""
    path = Path(path)
    if path.is_dir():
        raise VisionMLError(f"{option} {path}: is a folder; pass a file path such as {path / example}")
    if not _is_special(path):
        _check_folder_writable(path.parent, path, option)


def check_output_folder(path, option: str = "--output") -> None:
    """Refuse, before any work, an output folder that cannot be made or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VisionMLError(f"{option} {path}: exists and is not a folder; pass a folder path")
    _check_folder_writable(path, path, option)


def _check_folder_writable(folder: Path, target: Path, option: str) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise VisionMLError(f"{option} {target}: cannot write there: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VisionMLError(f"{option} {target}: cannot write there: no write permission in {existing}; "
                            f"choose a folder you can write to")


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _is_special(path: Path) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(target, exc) from None


@contextmanager
def _reporting(target: Path, tmp: Path):
    """Turn an OSError of writing ``tmp`` (or renaming it to ``target``) into a VisionMLError
    naming ``target``. Errors about other files (a source being read) pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.filename in (None, str(tmp), str(target)) or exc.filename2 == str(target):
            raise write_error(target, exc) from None
        raise


def _create_temp(target: Path) -> Path:
    """An empty new file beside ``target``, created with mode 0666 minus the umask (mkstemp would
    make it 0600 whatever the umask, and the rename keeps that mode)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(target, exc) from None
    raise VisionMLError(f"cannot write {target}: no free temporary name beside it")  # pragma: no cover
