"""Writing files so that a crash, Ctrl-C or SIGTERM never leaves half a file under the final name:
write to a temporary file in the same folder, then rename it over the target in one step.

The one place for it: ``atomic_path`` / ``write_bytes_atomic`` (a file), ``write_json`` (the JSON
writer), ``staging_folder`` with ``replace_folder`` or ``publish_folder``, or ``atomic_folder``
(a folder). A failed write (disk full, read-only folder, the target is a folder) becomes a
``VisionMLError`` that names the file and says what to do, and the temporary file or folder is
removed. Temporary files and folders are created with the user's umask (0644 and 0755 under the
usual umask 022), as ``open()`` and ``mkdir`` would create them (not mkstemp's 0600 or mkdtemp's
0700), so a model folder can be read by another user or a container with another UID.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import shutil
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


def json_bytes(obj) -> bytes:
    """``obj`` as the JSON visionml writes: indented, one trailing newline, numpy numbers and arrays
    and paths as plain values. NaN and infinity are refused (``ValueError`` naming the key): strict
    JSON readers reject them, and nothing visionml writes should hold one."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False, default=_plain)
    except ValueError:
        found = _first_non_finite(obj, "")
        if found is None:
            raise
        where, value = found
        raise ValueError(f"{where or 'the value'} is {value}, which JSON cannot hold") from None
    return (text + "\n").encode("utf-8")


def write_json(target, obj, *, fsync: bool = False) -> Path:
    """Write ``obj`` to ``target`` atomically, as ``json_bytes`` encodes it."""
    try:
        data = json_bytes(obj)
    except ValueError as exc:
        raise ValueError(f"cannot write {target}: {exc}") from None
    return write_bytes_atomic(target, data, fsync=fsync)


def _plain(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _first_non_finite(obj, where: str):
    """``(key path, value)`` of the first NaN or infinity in ``obj`` (``per_label.cat.recall``,
    ``scores[2]``), or None."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, dict):
        children = ((f"{where}.{key}" if where else str(key), value) for key, value in obj.items())
    elif isinstance(obj, (list, tuple)):
        children = ((f"{where}[{index}]", value) for index, value in enumerate(obj))
    else:
        return (where, obj) if isinstance(obj, float) and not math.isfinite(obj) else None
    return next((found for key, value in children if (found := _first_non_finite(value, key))), None)


@contextmanager
def staging_folder(target):
    """A fresh, empty folder beside ``target`` (on its file system, so moving out of it is a rename)
    for building a folder's contents; removed afterwards whatever happens. Finish inside the block
    with ``replace_folder`` or ``publish_folder``. An OSError about a file in it (disk full,
    permissions) is reported under the name that file would have in ``target``."""
    target = Path(target)
    _make_parent(target)
    tmp = _create_temp(target, folder=True)
    try:
        yield tmp
    except OSError as exc:
        # A copy's error names its source as filename and what it wrote as filename2 (shutil).
        names = [Path(n) for n in (exc.filename2, exc.filename) if n is not None]
        staged = next((n for n in names if n == tmp or tmp in n.parents), None)
        if staged is not None or not names:
            raise write_error(target / staged.relative_to(tmp) if staged else target, exc) from None
        raise
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(staged: Path, target) -> None:
    """Put the folder ``staged`` in place of ``target`` (a folder, file or link, or nothing) by
    renames: ``target`` moves aside, ``staged`` takes its name, then the old one is deleted. A
    reader sees the old folder or the new one, never a mixture. Raises OSError as the renames do
    (another process swapped a folder in at the same moment, say)."""
    target = Path(target)
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old.tmp")
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        if old is not None and not os.path.lexists(target):
            os.replace(old, target)  # put the previous one back
        elif old is not None:
            _remove(old)  # another process's folder took the name: the previous one is stale
        raise
    if old is not None:
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def publish_folder(staged: Path, target, last=()) -> None:
    """Move each entry of ``staged`` into ``target`` (created with the user's usual permissions) by
    one rename each, replacing entries of the same name and leaving other files there alone. The
    names in ``last`` (manifests) move last, so whoever finds one finds the files it describes."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise VisionMLError(f"cannot write {target}: it exists and is not a folder; pass a folder path")
    target.mkdir(exist_ok=True)
    last = set(last)
    for entry in sorted(staged.iterdir(), key=lambda e: (e.name in last, e.name)):
        if entry.is_dir() and not entry.is_symlink():
            replace_folder(entry, target / entry.name)
        else:
            os.replace(entry, target / entry.name)


@contextmanager
def atomic_folder(target):
    """Yield an empty staging folder beside ``target``; when the block succeeds it replaces
    ``target`` whole (``replace_folder``), on any error it is removed and ``target`` is left as it was."""
    with staging_folder(target) as tmp:
        yield tmp
        replace_folder(tmp, target)


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


def _create_temp(target: Path, folder: bool = False) -> Path:
    """An empty new file (or ``folder``) beside ``target``, created with mode 0666 (0777) minus the
    umask (mkstemp and mkdtemp would make it 0600 or 0700 whatever the umask, and the rename keeps
    that mode)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(target, exc) from None
    raise VisionMLError(f"cannot write {target}: no free temporary name beside it")  # pragma: no cover
