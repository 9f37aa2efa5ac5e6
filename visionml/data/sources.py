"""The JSONL files behind a data argument: a JSONL file, an MLTable file, or a folder holding one.

MLTable ``paths:`` entries (``file:``, ``folder:``, ``pattern:``) follow the rule ``image_url``
follows: relative paths stay inside the MLTable's folder, ``azureml://`` paths go through the
datastore map, an absolute path is the author's own choice.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import VisionMLError
from .resolve import is_url, resolve_image_url


def data_files(path, datastores: dict[str, str] | None = None) -> list[str]:
    """The JSONL files behind ``path`` (a JSONL file, an MLTable file or a folder holding ``MLTable``)."""
    p = Path(path)
    if p.is_dir():
        table = p / "MLTable"
        if not table.is_file():
            raise VisionMLError(f"{p}: a folder given as data must hold an MLTable file; none found")
        return _mltable_files(table, datastores or {})
    if not p.is_file():
        raise VisionMLError(f"{p}: no such file")
    if p.name == "MLTable" or p.suffix.lower() in (".yaml", ".yml", ".mltable"):
        return _mltable_files(p, datastores or {})
    return [str(p)]


def _mltable_files(table: Path, datastores: dict[str, str]) -> list[str]:
    import yaml

    try:
        spec = yaml.safe_load(table.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise VisionMLError(f"{table}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                            "save the MLTable file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise VisionMLError(f"{table}: not valid YAML ({exc})") from None
    entries = spec.get("paths") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise VisionMLError(f"{table}: an MLTable needs 'paths:' with at least one '- file: x.jsonl' entry")
    folder = os.path.abspath(table.parent)
    files: list[str] = []
    for i, entry in enumerate(entries):
        files.extend(_mltable_entry(entry, folder, datastores, f"{table}: paths[{i}]"))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise VisionMLError(f"{table}: listed file(s) not found: {', '.join(missing)}")
    return files


def _mltable_entry(entry, folder: str, datastores: dict[str, str], where: str) -> list[str]:
    """The JSONL files one ``paths:`` entry names. Relative paths and patterns stay inside the
    MLTable's folder by the rule ``image_url`` follows (lexically: no ``..`` out of it; a symlink
    inside it is followed, as its owner placed it); an absolute one is the author's own choice."""
    if not isinstance(entry, dict) or len(entry) != 1:
        raise VisionMLError(f"{where}: expected one of 'file:', 'folder:' or 'pattern:'")
    (kind, value), = entry.items()
    if kind not in ("file", "folder", "pattern") or not isinstance(value, str) or not value.strip():
        raise VisionMLError(f"{where}: expected one of 'file:', 'folder:' or 'pattern:' with a path")
    if kind == "pattern":
        return _mltable_pattern(value, folder, where)
    try:
        local = resolve_image_url(value, folder, datastores, root_name=_MLTABLE_ROOT)
    except ValueError as exc:
        raise VisionMLError(f"{where}: {exc}") from None
    if is_url(local):
        raise VisionMLError(f"{where}: http(s) data files are not supported; download {value} first")
    local = os.path.normpath(local)
    if kind == "folder":
        if not os.path.isdir(local):
            raise VisionMLError(f"{where}: folder {value!r} not found ({local})")
        found = sorted(str(p) for p in Path(local).glob("*.jsonl"))
        if not found:
            raise VisionMLError(f"{where}: folder {value!r} holds no .jsonl file ({local})")
        return found
    return [local]


_MLTABLE_ROOT = "the MLTable's folder"


def _mltable_pattern(pattern: str, folder: str, where: str) -> list[str]:
    parts = Path(pattern).parts
    if os.path.isabs(pattern):
        root, relative = parts[0], str(Path(*parts[1:])) if len(parts) > 1 else ""
    elif ".." in parts:
        raise VisionMLError(f"{where}: pattern {pattern!r} escapes {_MLTABLE_ROOT} ({folder}); '..' may "
                            "not leave it: use an absolute pattern to read files elsewhere")
    else:
        root, relative = folder, pattern
    try:
        found = sorted(str(p) for p in Path(root).glob(relative) if p.is_file()) if relative else []
    except ValueError as exc:  # a pattern pathlib refuses, such as "**x"
        raise VisionMLError(f"{where}: pattern {pattern!r} is not a valid glob pattern ({exc})") from None
    if not found:
        raise VisionMLError(f"{where}: pattern {pattern!r} matches no file in {root}")
    return found
