"""Reading Azure AutoML-for-Images JSONL (and MLTable) into ``ImageRecord``s, as Azure's code reads it.

Every line is checked on its own and every problem is collected as ``FILE:LINE: field: reason``
with what training does about it (``problems``: drop the image, the object or the polygon
segment, keep a value read leniently, or stop), so one run of ``visionml validate`` lists
everything to fix and training keeps exactly what Azure keeps. The loop over lines is the hot
path for files of millions of lines: orjson, the garbage collector paused while records pile up
(most of the cost otherwise), plain strings instead of ``Path`` objects, and each line validated
by the shape its label has (``lines``), so the task can be inferred afterwards without parsing twice.
"""

from __future__ import annotations

import gc
import os
import warnings as _warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter

import orjson

from ..errors import DataError, UsageError, VisionMLError
from ..tasks import EMPTY as EMPTY_SHAPE
from ..tasks import SHAPE_WORDS, get_task, task_for_shape
from .duplicates import merge_duplicates
from .images import DEFAULT_MAX_PIXELS, check_image, local_path
from .lines import INTEGER, class_names_in, shown, to_record
from .problems import (BOM, FATAL, IMAGE, OBJECT, WARNING, Problem, line_text, raw_lines_for, sort_problems,
                       write_invalid_lines)
from .records import ImageRecord
from .sources import data_files

__all__ = ["EMPTY_SHAPE", "LoadedData", "Problem", "data_files", "load_dataset", "read_dataset", "read_lines",
           "sort_problems", "write_invalid_lines"]


@dataclass
class LoadedData:
    records: list[ImageRecord]
    """What training gets: one record per image (duplicate ``image_url`` lines merged as Azure does)."""
    task: str | None
    """Canonical task name; None only when no line had a usable label."""
    labels: list[str]
    """The class names of the records, in Azure's order (sorted; as numbers when the file names
    classes by integers)."""
    problems: list[Problem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """The JSONL files read, in order."""
    task_inferred: bool = False
    class_counts: dict[str, int] = field(default_factory=dict)
    """Objects per class (detection, segmentation) or images per class (classification)."""
    warnings: list[Problem] = field(default_factory=list)
    """Nothing lost, but worth knowing: ``image_details`` ignored or differing, duplicates merged."""
    kept_lines: int = 0
    """Lines that train (a line merged into another image's still counts)."""
    integer_labels: bool = False
    """Whether the classes are named by integers (``labels`` then sort as numbers, as Azure's do)."""


def read_dataset(path, task: str | None = None, *, datastores: dict[str, str] | None = None,
                 skip_invalid: bool = False, check_images: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, model_settings: dict | None = None,
                 advice: str = "fix them") -> LoadedData:
    """Read a JSONL file, an MLTable file or an MLTable folder.

    Strict (default): raises ``DataError`` listing every problem (``advice`` says what to do).
    ``skip_invalid=True`` (training's ``ignore_data_errors``): returns what Azure's reader keeps
    (the problems say what was dropped); raises ``DataError`` on a ``fatal`` problem or when no
    line is left. ``model_settings`` (hyperparameters: ``min_size``/``max_size`` or
    ``validation_resize_size``, the task's defaults for those missing) also makes an image the
    model cannot take a problem; None leaves sizes unjudged. Only with ``check_images``: sizes
    are read from the files.
    """
    loaded = load_dataset(path, task, datastores=datastores, check_images=check_images,
                          max_pixels=max_pixels, model_settings=model_settings)
    if loaded.problems and not skip_invalid:
        raise DataError(loaded.problems, summary=_error_head(loaded, f"invalid; {advice}"))
    fatal = [p for p in loaded.problems if p.training == FATAL]
    if fatal:
        raise DataError(fatal, summary=_error_head(loaded, "Azure refuses these too, whatever ignore_data_errors says"))
    if not loaded.records:
        raise DataError(loaded.problems, summary=_error_head(loaded, "no valid line left"))
    return loaded


def _error_head(loaded: LoadedData, what: str) -> str:
    lines = len({(p.source, p.line) for p in loaded.problems})
    return f"{len(loaded.problems)} problem(s) on {lines} line(s) of {', '.join(loaded.sources)} ({what})"


def load_dataset(path, task: str | None = None, *, datastores: dict[str, str] | None = None,
                 check_images: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 model_settings: dict | None = None) -> LoadedData:
    """Like ``read_dataset`` but never raises for bad lines: returns what training keeps and all
    problems (what ``visionml validate`` reports). Raises for a missing file or an unknown task,
    and ``UsageError`` when the task cannot be inferred (every label is an empty list)."""
    wanted = get_task(task) if task else None
    sources = data_files(path, datastores or {})
    records, shapes, problems, warnings, types = [], [], [], [], []

    def keep(record: ImageRecord, shape: str) -> None:
        records.append(record)
        shapes.append(shape)

    for source in sources:
        types.append(read_lines(source, wanted, datastores or {}, keep, problems, warnings))
    final_task, inferred = choose_task(wanted, Counter(shapes), sources)
    if final_task is not None:
        records = _apply_task(final_task, inferred, records, shapes, problems)
    if check_images and records:
        fits = size_rule(final_task, model_settings, max_pixels) if model_settings is not None else None
        records = _check_images(records, max_pixels, problems, warnings, fits)
    kept_lines = len(records)
    if final_task is not None:
        records, overruled = merge_duplicates(final_task, records, problems, warnings)
        kept_lines -= overruled
    sort_problems(problems, sources)
    sort_problems(warnings, sources)
    # The task counts its own classes (a registered task may name them from the record otherwise).
    counts = final_task.class_counts(records) if final_task is not None else class_counts(records)
    integer = "int" in types and set(types) <= {"int", None}
    return LoadedData(records=records, task=final_task.name if final_task else None,
                      labels=label_order(counts, integer), problems=problems, sources=list(sources),
                      task_inferred=inferred, class_counts=dict(counts), warnings=warnings,
                      kept_lines=kept_lines, integer_labels=integer)


def label_order(names, integer: bool) -> list[str]:
    """Class names in Azure's order: sorted, as numbers when the data names classes by integers."""
    names = list(names)
    if integer and all(name.lstrip("-").isdigit() and name.isascii() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def class_counts(records: list[ImageRecord]) -> Counter:
    """Objects per class (detection, segmentation) or images per class (classification), for
    records of no known task; ``Task.class_counts`` counts a known task's.
    map/chain keep the walk over millions of objects in C."""
    counts = Counter(map(attrgetter("label"), chain.from_iterable(map(attrgetter("objects"), records))))
    labels = [label for label in map(attrgetter("label"), records) if label]
    counts.update(label for label in labels if type(label) is str)
    counts.update(chain.from_iterable(label for label in labels if type(label) is not str))
    return counts


# ---------------------------------------------------------------------------------------------
# Lines


def read_lines(source: str, task, datastores: dict[str, str], sink, problems: list,
               warnings: list | None = None) -> str | None:
    """Check every line of one JSONL file: ``sink(record, shape)`` for each line that trains
    (``shape`` is the task its label is shaped for, or ``"empty"`` for ``[]``), with the objects
    Azure drops already left out; the problems go to ``problems``, the warnings to ``warnings``.
    The task's fit is settled afterwards (``choose_task``). Returns the type of the file's class
    names: ``"int"``, ``"str"`` or None (no class named); a file naming both gets a fatal problem."""
    base = os.path.join(os.path.dirname(os.path.abspath(source)), "")  # with the trailing slash
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    warnings = [] if warnings is None else warnings
    errors: list = []  # (field, reason, outcome, kind) of the current line; one list reused for all lines
    integer_lines: list[int] = []
    sunk = 0
    try:
        with paused_gc(), open(source, "rb") as fp:
            for lineno, line in enumerate(fp, 1):
                if lineno == 1 and line.startswith(BOM):
                    line = line[3:]
                try:
                    obj = loads(line)
                except decode_error as exc:
                    if line.strip():
                        problems.append(Problem(source, lineno, "line", _json_reason(exc, line), line_text(line), IMAGE,
                                                "invalid JSON"))
                    continue
                record, shape = to_record(obj, source, lineno, base, datastores, task, errors)
                if errors:
                    if _settle(record, errors, source, lineno, line, problems, warnings, integer_lines):
                        sink(record, shape)
                        sunk += 1
                    errors.clear()
                else:
                    sink(record, shape)
                    sunk += 1
    except OSError as exc:
        raise VisionMLError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if integer_lines:
        return _label_type(source, problems)
    return "str" if sunk else None


def _settle(record, errors: list, source: str, lineno: int, line: bytes, problems: list, warnings: list,
            integer_lines: list) -> bool:
    """File the problems of one line; whether the line trains (what is left of it)."""
    issues = [e for e in errors if e[2] is not INTEGER]
    if len(issues) < len(errors):
        integer_lines.append(lineno)
    outcomes = {e[2] for e in issues}
    dropped = record is None or IMAGE in outcomes
    if not dropped and OBJECT in outcomes and not record.objects:
        issues.append(("label", ("none of its objects is usable, so the image is left out (Azure skips an image "
                                "whose objects are all invalid)"), IMAGE, "no usable object left"))
        dropped = True
    if issues:
        raw = line_text(line)
        for field_, reason, outcome, kind in issues:
            (warnings if outcome == WARNING else problems).append(
                Problem(source, lineno, field_, reason, None if outcome == WARNING else raw, outcome, kind))
    return not dropped


def _label_type(source: str, problems: list) -> str | None:
    """``"int"`` or ``"str"``: how ``source`` names its classes (the type of its first class name,
    over the lines that train). A file that also names classes the other way gets one fatal
    problem: Azure refuses it ("More than one type found for the class field")."""
    dropped = {p.line for p in problems if p.source == source and p.training == IMAGE}
    first = other = None  # (type, line, name)
    counts: Counter = Counter()
    with open(source, "rb") as fp:
        for lineno, line in enumerate(fp, 1):
            if lineno in dropped:
                continue
            try:
                obj = orjson.loads(line[3:] if lineno == 1 and line.startswith(BOM) else line)
            except orjson.JSONDecodeError:
                continue
            names = class_names_in(obj.get("label")) if type(obj) is dict else []
            counts.update({type(name) for name in names})
            for name in names:
                if first is None:
                    first = (type(name), lineno, name)
                elif other is None and type(name) is not first[0]:
                    other = (type(name), lineno, name)
    if first is None:
        return None
    if other is not None:
        word = {int: "integers", str: "strings"}
        problems.append(Problem(
            source, other[1], "label", f"names a class by {word[other[0]][:-1]} {shown(other[2])}, but line {first[1]} "
            f"names one by {word[first[0]][:-1]} {shown(first[2])}: Azure refuses a file whose class names are of "
            f"two types ({counts[int]} line(s) use integers, {counts[str]} strings); write them all one way",
            raw_lines_for([(source, other[1])]).get((source, other[1])), FATAL, "class names of two types"))
    return "int" if first[0] is int else "str"


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
    raw = raw_lines_for(refs)
    how = "was inferred from most lines; pass --task to choose" if inferred else "was given"
    return [Problem(source, line, "label", f"expected {task.expected_label()} (task {task.name} {how}), "
                                           f"got {SHAPE_WORDS[shape]}", raw.get((source, line)), IMAGE,
                    "label does not fit the task")
            for source, line, shape in refs]


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


def _check_images(records: list[ImageRecord], max_pixels, problems: list, warnings: list,
                  fits=None) -> list[ImageRecord]:
    """Open every distinct image (header and end marker only); drop records whose image fails,
    or whose size the model cannot take (``fits``, from ``size_rule``). A size in
    ``image_details`` that differs from the image's own is a warning (the image's is used)."""
    unique = list(dict.fromkeys(r.path for r in records))

    def check(location: str):
        try:
            result = check_image(local_path(location), max_pixels)
        except ValueError as exc:
            reason = str(exc)
            return reason, ("image file not found" if reason.startswith("file not found") else
                            "image over the pixel limit" if "over the limit" in reason else "image unreadable")
        problem = fits(result[0], result[1]) if fits is not None else None
        return (f"{problem}: {location}", "image size the model cannot take") if problem else result

    # Threads overlap file-system and network latency (network mounts, http images).
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: we report the limit ourselves
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            results = dict(zip(unique, pool.map(check, unique)))
    kept, failed = [], []
    for r in records:
        result = results[r.path]
        if type(result[0]) is str:
            failed.append((r, result))
            continue
        width, height, r.format = result
        if (r.width is not None and r.width != width) or (r.height is not None and r.height != height):
            declared = f"{r.width if r.width is not None else '?'}x{r.height if r.height is not None else '?'}"
            warnings.append(Problem(r.source, r.line, "image_details", f"says {declared}, the image is "
                                    f"{width}x{height}; the image's own size is used, as Azure does", None, WARNING,
                                    "image_details differs from the image"))
        r.width, r.height = width, height
        kept.append(r)
    if failed:
        raw = raw_lines_for([(r.source, r.line) for r, _ in failed])
        problems.extend(Problem(r.source, r.line, "image_url", reason, raw.get((r.source, r.line)), IMAGE, kind)
                        for r, (reason, kind) in failed)
    return kept
