"""Reading and validating Azure AutoML-for-Images JSONL (and MLTable) into ``ImageRecord``s.

Every line is checked on its own and every problem is collected as ``FILE:LINE: field: reason``,
so one run of ``visionml validate`` lists everything to fix. The loop over lines is the hot path
for files of millions of lines: orjson, the garbage collector paused while records pile up (most
of the cost otherwise), plain strings instead of ``Path`` objects, and each line validated by the
shape its label has, so the task can be inferred afterwards without parsing twice.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from sys import intern

import orjson

from ..errors import DataError, UsageError, VisionMLError
from ..tasks import BOXES, CLASS, CLASSES, EMPTY, POLYGONS, SHAPE_WORDS, get_task, task_for_shape
from .images import DEFAULT_MAX_PIXELS, IMAGE_FORMATS, check_image, local_path
from .records import ImageRecord, ObjectLabel
from .resolve import is_url, join_under, resolve_image_url

SLACK = 1e-6
"""Coordinates may overshoot [0, 1] by this much (float round-off in exporters); they are then clipped."""
MAX_SIDE = 2**31 - 1
"""The largest ``image_details`` width or height accepted: PNG's own limit, far above any image
under the pixel limit; a bigger number is a typo or a hostile line."""

_LO, _HI = -SLACK, 1.0 + SLACK
_NUMBER = (int, float)  # exact types: bool is not a coordinate
_BOX_KEYS = ("topX", "topY", "bottomX", "bottomY")
_corners = itemgetter(*_BOX_KEYS)
EMPTY_SHAPE = EMPTY
"""The shape of a ``[]`` label: it fits every list-shaped task."""


@dataclass(slots=True)
class Problem:
    """One thing wrong with one line (``line`` is 1-based, blank lines counted)."""

    source: str
    line: int
    field: str
    reason: str
    raw: str | None = None
    """The line as it was in the file (for ``invalid_lines.jsonl``)."""

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.reason}"

    def to_json(self) -> dict:
        return {"source": self.source, "line": self.line, "field": self.field, "reason": self.reason}


@dataclass
class LoadedData:
    records: list[ImageRecord]
    task: str | None
    """Canonical task name; None only when no line had a usable label."""
    labels: list[str]
    """Sorted class names of the valid records."""
    problems: list[Problem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """The JSONL files read, in order."""
    task_inferred: bool = False
    class_counts: dict[str, int] = field(default_factory=dict)
    """Objects per class (detection, segmentation) or images per class (classification)."""


def read_dataset(path, task: str | None = None, *, datastores: dict[str, str] | None = None,
                 skip_invalid: bool = False, check_images: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, model_settings: dict | None = None) -> LoadedData:
    """Read a JSONL file, an MLTable file or an MLTable folder.

    Strict (default): raises ``DataError`` listing every problem. ``skip_invalid=True``: returns
    the valid records and the problems of the rest; raises ``DataError`` if no line is valid.
    ``model_settings`` (hyperparameters: ``min_size``/``max_size`` or ``validation_resize_size``,
    the task's defaults for those missing) also makes an image the model cannot take a problem;
    None leaves sizes unjudged. Only with ``check_images``: sizes are read from the files.
    """
    loaded = load_dataset(path, task, datastores=datastores, check_images=check_images,
                          max_pixels=max_pixels, model_settings=model_settings)
    if loaded.problems and not skip_invalid:
        raise DataError(loaded.problems, summary=_error_head(loaded, "invalid; fix them or use --skip-invalid"))
    if not loaded.records:
        raise DataError(loaded.problems, summary=_error_head(loaded, "no valid line left"))
    return loaded


def _error_head(loaded: LoadedData, what: str) -> str:
    lines = len({(p.source, p.line) for p in loaded.problems})
    return f"{len(loaded.problems)} problem(s) on {lines} line(s) of {', '.join(loaded.sources)} ({what})"


def load_dataset(path, task: str | None = None, *, datastores: dict[str, str] | None = None,
                 check_images: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 model_settings: dict | None = None) -> LoadedData:
    """Like ``read_dataset`` but never raises for bad lines: returns the valid records and all
    problems (what ``visionml validate`` reports). Raises for a missing file or an unknown task,
    and ``UsageError`` when the task cannot be inferred (every label is an empty list)."""
    wanted = get_task(task) if task else None
    sources = data_files(path, datastores or {})
    records, shapes, problems = [], [], []

    def keep(record: ImageRecord, shape: str) -> None:
        records.append(record)
        shapes.append(shape)

    for source in sources:
        read_lines(source, wanted, datastores or {}, keep, problems)
    final_task, inferred = choose_task(wanted, Counter(shapes), sources)
    if final_task is not None:
        records = _apply_task(final_task, inferred, records, shapes, problems)
    if check_images and records:
        fits = size_rule(final_task, model_settings, max_pixels) if model_settings is not None else None
        records = _check_images(records, max_pixels, problems, fits)
    sort_problems(problems, sources)
    counts = get_task(final_task).class_counts(records) if final_task is not None else Counter()
    return LoadedData(records=records, task=final_task.name if final_task else None, labels=sorted(counts),
                      problems=problems,
                      sources=list(sources), task_inferred=inferred, class_counts=dict(counts))


def sort_problems(problems: list[Problem], sources: list[str]) -> None:
    """In file order, then line order (a line's own problems keep their order)."""
    order = {source: i for i, source in enumerate(sources)}
    problems.sort(key=lambda p: (order.get(p.source, 0), p.line))


# ---------------------------------------------------------------------------------------------
# Files: JSONL or MLTable


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


# ---------------------------------------------------------------------------------------------
# Lines


def read_lines(source: str, task: str | None, datastores: dict[str, str], sink, problems: list) -> None:
    """Check every line of one JSONL file: ``sink(record, shape)`` for each line without problems
    (``shape`` is the task its label is shaped for, or ``"empty"`` for ``[]``); the problems of the
    others are appended to ``problems``. The task's fit is settled afterwards (``choose_task``)."""
    base = os.path.join(os.path.dirname(os.path.abspath(source)), "")  # with the trailing slash
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    errors: list = []  # (field, reason) of the current line; one list reused for all lines
    try:
        with paused_gc(), open(source, "rb") as fp:
            for lineno, line in enumerate(fp, 1):
                if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                try:
                    obj = loads(line)
                except decode_error as exc:
                    if line.strip():
                        problems.append(Problem(source, lineno, "line", _json_reason(exc, line), _text(line)))
                    continue
                record, shape = _to_record(obj, source, lineno, base, datastores, task, errors)
                if errors:
                    raw = _text(line)
                    problems.extend(Problem(source, lineno, f, r, raw) for f, r in errors)
                    errors.clear()
                else:
                    sink(record, shape)
    except OSError as exc:
        raise VisionMLError(f"{source}: cannot read ({exc.strerror or exc})") from None


@contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while building many objects that stay alive.

    Records hold no reference cycles, so nothing leaks; without the pause, Python runs repeated
    full collections over the growing list, which cost more than parsing the JSON itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _json_reason(exc, line: bytes) -> str:
    """Why ``line`` is not JSON, with the column on that line. The parser's own "line L column C"
    is not used: it counts the line's own end as a second line ("line 2 column 1" for a line cut
    short), and it reports bytes that are not UTF-8 as "surrogates not allowed" at column 1."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as bad:
        column = len(line[:bad.start].decode("utf-8", errors="replace")) + 1
        return f"not UTF-8 (byte 0x{line[bad.start]:02x} at column {column}); save the file as UTF-8"
    text = text.rstrip("\r\n")
    pos, message = getattr(exc, "pos", None), getattr(exc, "msg", None) or str(exc)
    if pos is None:
        return f"invalid JSON ({message})"
    if pos >= len(text):
        return f"invalid JSON ({message} at column {len(text) + 1}, the end of the line)"
    return f"invalid JSON ({message} at column {pos + 1})"


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def _to_record(obj, source: str, lineno: int, base: str, datastores, task, errors: list):
    """(record, label shape) for a parsed line; appends (field, reason) pairs to ``errors``."""
    if type(obj) is not dict:
        errors.append(("line", f"expected a JSON object, got {_kind(obj)}"))
        return None, None
    url = obj.get("image_url")
    if (type(url) is str and url and url[0] != "/" and ":" not in url and "./" not in url
            and "//" not in url and ".." not in url):
        path = base + url  # a plain relative path: the common case, kept off the general resolver
    else:
        path = _image_path(url, base, datastores, errors)
    width = height = fmt = None
    details = obj.get("image_details")
    if type(details) is dict:
        width, height, fmt = details.get("width"), details.get("height"), details.get("format")
        if type(width) is not int or not 0 < width <= MAX_SIDE:
            width = _PIXELS.get(width) if type(width) is str else None
            if width is None:
                width = _pixels(details.get("width"), "width", errors)
        if type(height) is not int or not 0 < height <= MAX_SIDE:
            height = _PIXELS.get(height) if type(height) is str else None
            if height is None:
                height = _pixels(details.get("height"), "height", errors)
        if fmt is not None:
            fmt = (_FORMATS.get(fmt) if type(fmt) is str else None) or _format(fmt, errors)
    elif details is not None:
        errors.append(("image_details", f"expected an object {{format, width, height}}, got {_kind(details)}"))
    if "label" not in obj:
        errors.append(("label", "missing (required)"))
        return None, None
    record = ImageRecord(source, lineno, url, path, None, [], width, height, fmt)
    shape = _label_into(obj["label"], record, task, errors)
    return record, shape


def _image_path(url, base: str, datastores, errors: list):
    if url is None:
        errors.append(("image_url", "missing (required)"))
        return None
    if type(url) is not str or not url:
        errors.append(("image_url", f"expected a non-empty string, got {_kind(url)}"))
        return None
    if url[0] != "/" and ":" not in url:
        try:
            return join_under(base, url, "the JSONL file's folder")
        except ValueError as exc:
            errors.append(("image_url", str(exc)))
            return None
    try:
        return resolve_image_url(url, base, datastores)
    except ValueError as exc:
        errors.append(("image_url", str(exc)))
        return None


# Memos for the spellings that repeat on every line ("640px", "jpg"): a dict look-up instead of parsing.
_PIXELS: dict[str, int] = {}
_FORMATS = {f: f for f in IMAGE_FORMATS} | {f.upper(): f for f in IMAGE_FORMATS}


def _format(fmt, errors: list) -> str | None:
    low = fmt.lower().lstrip(".") if type(fmt) is str else None
    if low in IMAGE_FORMATS:
        return low
    errors.append(("image_details.format", f"unknown format {fmt!r}; expected one of {', '.join(sorted(IMAGE_FORMATS))}"))
    return None


def _pixels(value, name: str, errors: list) -> int | None:
    """``400``, ``"400"`` or ``"400px"`` -> 400; None when absent."""
    if value is None:
        return None
    number = None
    if type(value) is str:  # Azure writes "400px"
        text = value[:-2] if value.endswith("px") else value
        if text.isascii() and text.isdigit():  # isdigit alone takes "²" and other scripts' digits
            # int() of thousands of digits is slow (and refused above 4300): bound the length first
            number = int(text) if len(text.lstrip("0")) <= 12 else MAX_SIDE + 1
    elif type(value) is float and value.is_integer():
        number = int(value) if value <= MAX_SIDE else MAX_SIDE + 1
    elif type(value) is int:
        number = value
    if number is None or number <= 0:
        errors.append((f"image_details.{name}", f"cannot read {_shown(value)} as a positive pixel count "
                                                "(write 400 or \"400px\")"))
        return None
    if number > MAX_SIDE:
        errors.append((f"image_details.{name}", f"{_shown(value)} is over the largest image side "
                                                f"accepted ({MAX_SIDE:,} pixels); write the image's real {name}"))
        return None
    if type(value) is str and len(_PIXELS) < 65536:
        _PIXELS[value] = number
    return number


def _shown(value) -> str:
    """A value as a message quotes it, cut to a readable length (a hostile line can hold megabytes)."""
    text = f"{value:g}" if type(value) is float else repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"


def _label_into(label, record: ImageRecord, task, errors: list):
    """Fill the record from ``label`` according to its shape; return the shape (a task name or 'empty')."""
    if type(label) is str:
        if not label:
            errors.append(("label", "empty class name"))
        record.label = intern(label)
        return CLASS
    if type(label) is not list:
        errors.append(("label", f"expected {_expected(task)}, got {_kind(label)}"))
        return None
    if not label:
        return EMPTY_SHAPE
    first = type(label[0])
    if first is str:
        return _multilabel(label, record, errors)
    if first is dict:
        if any(type(o) is dict and "polygon" in o for o in label):
            record.objects = _polygon_objects(label, errors)
            return POLYGONS
        record.objects = _box_objects(label, errors)
        return BOXES
    errors.append(("label", f"expected {_expected(task)}, got a list of {_kinds(label[0])}"))
    return None


def _expected(task) -> str:
    if task:
        return task.expected_label()
    return "a string, a list of strings or a list of objects"


def _multilabel(label: list, record: ImageRecord, errors: list) -> str:
    bad = [(i, name) for i, name in enumerate(label) if type(name) is not str or not name]
    for i, name in bad:
        errors.append((f"label[{i}]", f"expected a non-empty class name string, got {_kind(name)}"))
    if not bad:
        record.label = list(dict.fromkeys(map(intern, label)))  # a class named twice is still one class
    return CLASSES


def _box_objects(items: list, errors: list) -> list[ObjectLabel]:
    """Detection objects. The all-float, in-range case is checked in one expression (the hot path
    for big files); anything else goes through ``_box_slow`` for a precise message."""
    out = []
    for i, item in enumerate(items):
        try:
            box = _corners(item)
            x0, y0, x1, y1 = box
        except (KeyError, TypeError):  # a missing key, or not an object: _box_slow says which
            x0 = None
        if not (type(x0) is float and type(y0) is float and type(x1) is float and type(y1) is float
                and 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            box = _box_slow(item, i, errors)
            if box is None:
                continue
        name, crowd = item.get("label"), item.get("isCrowd", 0)
        if type(name) is not str or not name or crowd not in (0, 1):
            name, crowd = _name_and_crowd(item, i, errors)
        else:
            name = intern(name)  # one string per class instead of one per object: less memory, less to free
        out.append(ObjectLabel(name, box, crowd == 1))
    return out


def _polygon_objects(items: list, errors: list) -> list[ObjectLabel]:
    out = []
    for i, item in enumerate(items):
        if type(item) is not dict:
            errors.append((f"label[{i}]", f"expected an object, got {_kind(item)}"))
            continue
        obj = _polygon_object(item, i, errors)
        name, crowd = _name_and_crowd(item, i, errors)
        if obj is not None:
            obj.label, obj.is_crowd = (intern(name) if type(name) is str else name), crowd
            out.append(obj)
    return out


def _name_and_crowd(item: dict, i: int, errors: list) -> tuple[str, bool]:
    name = item.get("label")
    if type(name) is not str or not name:
        errors.append((f"label[{i}].label", "missing (required)" if name is None else
                       f"expected a non-empty class name string, got {_kind(name)}"))
    crowd = item.get("isCrowd", 0)
    if crowd is None:
        crowd = 0
    elif crowd not in (0, 1):  # JSON values equal to 0 or 1 are exactly 0, 1, 0.0, 1.0, false, true
        errors.append((f"label[{i}].isCrowd", f"expected 0, 1, true or false, got {crowd!r}"))
        crowd = 0
    return name, crowd == 1


def _box_slow(item, i: int, errors: list) -> tuple | None:
    if type(item) is not dict:
        errors.append((f"label[{i}]", f"expected an object, got {_kind(item)}"))
        return None
    coords = []
    for key in _BOX_KEYS:
        v = item.get(key)
        if type(v) is float or type(v) is int:
            if v < _LO or v > _HI:
                errors.append((f"label[{i}].{key}", f"{v} is outside [0, 1] (coordinates are fractions "
                                                    "of the image width/height)"))
                return None
            coords.append(0.0 if v < 0.0 else 1.0 if v > 1.0 else float(v))
        else:
            errors.append((f"label[{i}].{key}", "missing (required)" if v is None
                           else f"expected a number in [0, 1], got {_kind(v)} {v!r}"))
            return None
    x0, y0, x1, y1 = coords
    if x1 <= x0 or y1 <= y0:
        errors.append((f"label[{i}]", _degenerate(x0, y0, x1, y1)))
        return None
    return x0, y0, x1, y1


def _degenerate(x0, y0, x1, y1) -> str:
    if x1 < x0 or y1 < y0:
        return (f"inverted box: bottomX/bottomY ({x1}, {y1}) must be greater than topX/topY ({x0}, {y0})")
    return f"zero-area box ({x0}, {y0}, {x1}, {y1}): the corners must differ in both x and y"


def _polygon_object(item: dict, i: int, errors: list) -> ObjectLabel | None:
    poly = item.get("polygon")
    where = f"label[{i}].polygon"
    if type(poly) is not list or not poly:
        errors.append((where, "expected a non-empty list of segments [[x1, y1, x2, y2, ...], ...], "
                              f"got {_kind(poly)}"))
        return None
    if all(type(v) in _NUMBER for v in poly):
        errors.append((where, "is a flat list of numbers; wrap it in another list: [[x1, y1, ...]]"))
        return None
    segments, xs, ys = [], [], []
    area = 0.0
    for j, seg in enumerate(poly):
        seg = _segment(seg, f"{where}[{j}]", errors)
        if seg is None:
            return None
        segments.append(seg)
        sx, sy = seg[0::2], seg[1::2]
        xs.extend(sx)
        ys.extend(sy)
        area += abs(_shoelace(sx, sy))
    if area < 1e-12:  # a line or a point: it would rasterise to an empty mask
        errors.append((where, "encloses no area (all its points lie on one line)"))
        return None
    return ObjectLabel("", (min(xs), min(ys), max(xs), max(ys)), False, segments)


def _shoelace(xs: list[float], ys: list[float]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for x0, y0, x1, y1 in zip(xs, ys, xs[1:] + xs[:1], ys[1:] + ys[:1]))


def _segment(seg, where: str, errors: list) -> list[float] | None:
    if type(seg) is not list:
        errors.append((where, f"expected a list of numbers x1, y1, x2, y2, ..., got {_kind(seg)}"))
        return None
    if any(type(v) not in _NUMBER for v in seg):
        errors.append((where, "expected numbers only"))
        return None
    if len(seg) % 2:
        errors.append((where, f"has an odd number of values ({len(seg)}); x and y must come in pairs"))
        return None
    if len(seg) < 6:
        errors.append((where, f"has {len(seg) // 2} point(s); a polygon needs at least 3"))
        return None
    low, high = min(seg), max(seg)
    if low < _LO or high > _HI:
        bad = low if low < _LO else high
        errors.append((where, f"value {bad} is outside [0, 1] (coordinates are fractions of the image size)"))
        return None
    if low < 0.0 or high > 1.0:
        return [0.0 if v < 0.0 else 1.0 if v > 1.0 else float(v) for v in seg]
    return [float(v) for v in seg]


def _kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _kinds(value) -> str:
    """The plural of ``_kind``, for "a list of ..."."""
    names = {dict: "objects", list: "lists", str: "strings", bool: "booleans", int: "numbers",
             float: "numbers", type(None): "nulls"}
    return names.get(type(value), f"{type(value).__name__} values")


# ---------------------------------------------------------------------------------------------
# Task


def choose_task(task, shape_counts: Counter, sources: list):
    """(task, inferred): the given task, else the one inferred from the most common label shape.
    ``UsageError`` when every label is an empty list; (None, True) when no line was usable at all."""
    if task is not None:
        return get_task(task), False
    counts = Counter({shape: n for shape, n in shape_counts.items() if shape != EMPTY_SHAPE and n})
    if counts:
        return task_for_shape(counts.most_common(1)[0][0]), True
    if shape_counts.get(EMPTY_SHAPE):
        raise UsageError(f"cannot infer the task of {', '.join(sources)}: every label is an empty "
                         "list; pass --task (e.g. --task image_object_detection)")
    return None, True


def fitting_shapes(task) -> frozenset[str]:
    """Label shapes a line may have for ``task`` (``Task.label_shapes``)."""
    return get_task(task).label_shapes


def _apply_task(task, inferred: bool, records: list, shapes: list, problems: list) -> list[ImageRecord]:
    """The records whose label fits ``task``; the others become problems."""
    task = get_task(task)
    for record, shape in zip(records, shapes):
        if shape == EMPTY_SHAPE:
            task.empty_label(record)
    fits = fitting_shapes(task)
    if set(shapes) <= fits:
        return records
    problems.extend(mismatch_problems(task, inferred, [(r.source, r.line, s) for r, s in zip(records, shapes)
                                                       if s not in fits]))
    return [r for r, s in zip(records, shapes) if s in fits]


def mismatch_problems(task, inferred: bool, refs: list[tuple[str, int, str]]) -> list[Problem]:
    """One problem per ``(source, line, shape)`` whose label does not fit ``task``."""
    task = get_task(task)
    raw = _raw_lines_for(refs)
    how = "was inferred from most lines; pass --task to choose" if inferred else "was given"
    return [Problem(source, line, "label", f"expected {task.expected_label()} (task {task.name} {how}), "
                                           f"got {SHAPE_WORDS[shape]}", raw.get((source, line)))
            for source, line, shape in refs]


def _raw_lines_for(refs) -> dict[tuple[str, int], str]:
    """The raw text of a few ``(source, line, ...)`` lines, read again from their files (valid lines
    are not kept in memory)."""
    wanted: dict[str, set[int]] = {}
    for source, line, *_ in refs:
        wanted.setdefault(source, set()).add(line)
    out = {}
    for source, numbers in wanted.items():
        with open(source, "rb") as fp:
            for lineno, line in enumerate(fp, 1):
                if lineno in numbers:
                    out[(source, lineno)] = _text(line[3:] if lineno == 1 and line.startswith(b"\xef\xbb\xbf")
                                                  else line)
    return out


# ---------------------------------------------------------------------------------------------
# Images


def size_rule(task, settings, max_pixels: int | None):
    """``(width, height) -> reason or None``: whether the model of ``task`` with ``settings``
    (hyperparameters or inference settings; the task's defaults for missing keys) can take an image
    of that size, through the model's data config (``DataConfig.size_problem``)."""
    from ..config import Hyperparameters, resolve_hyperparameters
    from .dataconfig import resolve_data_config

    if task is None:
        return None
    hp = settings if isinstance(settings, Hyperparameters) else resolve_hyperparameters(
        task, {k: v for k, v in dict(settings).items() if v is not None})
    config = resolve_data_config(hp["model_name"], hp)
    return lambda width, height: config.size_problem(width, height, max_pixels)


def _check_images(records: list[ImageRecord], max_pixels, problems: list, fits=None) -> list[ImageRecord]:
    """Open every distinct image (header and end marker only); drop records whose image fails,
    or whose size the model cannot take (``fits``, from ``size_rule``)."""
    unique = list(dict.fromkeys(r.path for r in records))

    def check(location: str):
        try:
            result = check_image(local_path(location), max_pixels)
        except ValueError as exc:
            return str(exc)
        problem = fits(result[0], result[1]) if fits is not None else None
        return f"{problem}: {location}" if problem else result

    # Threads overlap file-system and network latency (network mounts, http images).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: we report the limit ourselves
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            results = dict(zip(unique, pool.map(check, unique, chunksize=64)))
    kept, failed = [], []
    for r in records:
        result = results[r.path]
        if isinstance(result, str):
            failed.append((r, result))
        else:
            r.width, r.height, r.format = result
            kept.append(r)
    if failed:
        raw = _raw_lines_for([(r.source, r.line) for r, _ in failed])
        problems.extend(Problem(r.source, r.line, "image_url", reason, raw.get((r.source, r.line)))
                        for r, reason in failed)
    return kept


# ---------------------------------------------------------------------------------------------
# Output


def write_invalid_lines(problems: list[Problem], path) -> int:
    """Write one JSON line per invalid input line: ``{"line", "source", "errors", "raw"}``.
    Returns the number of lines written."""
    grouped: dict[tuple[str, int], list[Problem]] = {}
    for p in problems:
        grouped.setdefault((p.source, p.line), []).append(p)
    with open(path, "wb") as out:
        for (source, line), group in grouped.items():
            raw = next((p.raw for p in group if p.raw is not None), None)
            entry = {"line": line, "source": source, "errors": [f"{p.field}: {p.reason}" for p in group],
                     "raw": raw}
            out.write(orjson.dumps(entry) + b"\n")
    return len(grouped)
