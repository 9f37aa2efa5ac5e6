"""A JSONL line's ``label`` -> the record's class name(s) or objects, as Azure's code reads it
(``lines.to_record`` calls ``label_into``; problems go to ``errors`` as described there).

An invalid box, or a polygon left without a usable segment, drops that object; a polygon segment
of fewer than 5 values or with a coordinate outside [0, 1] drops that segment; a malformed object
(no label, no coordinates, coordinates that are not numbers, an odd polygon count) or a label of
the wrong shape drops the line. isCrowd is read as Azure reads it. Integer class names are names
(``str(label)``).

The all-float, in-range box with a string label is checked in one expression: the hot path for
files of millions of lines; anything else goes the slow way for a precise message. ``shown`` and
``kind_of`` quote values in every message about a line.
"""

from __future__ import annotations

from operator import itemgetter
from sys import intern

from ..tasks import BOXES, CLASS, CLASSES, EMPTY, POLYGONS
from .problems import IMAGE, KEPT, OBJECT, SEGMENT
from .records import ImageRecord, ObjectLabel

SLACK = 1e-6
"""Coordinates may overshoot [0, 1] by this much (float round-off in exporters); they are then clipped."""
INTEGER = "integer label"
"""Not a problem: the marker a line leaves in ``errors`` when it names a class by an integer, so
that the reader checks the file holds one type of class name (Azure refuses a mix)."""

_LO, _HI = -SLACK, 1.0 + SLACK
_NUMBER = (int, float)  # exact types: bool is not a coordinate
_BOX_KEYS = ("topX", "topY", "bottomX", "bottomY")
_corners = itemgetter(*_BOX_KEYS)
_CROWD = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}
"""The strings Azure reads as crowd (``object_annotation.py``: ``v in {"true", "True", "1", 1}``),
and the ones that plainly mean "not crowd"."""


def label_into(label, record: ImageRecord, task, errors: list):
    """Fill the record from ``label`` according to its shape; return the shape (a task name or 'empty')."""
    if type(label) is str:
        if not label:
            errors.append(("label", "empty class name", IMAGE, "empty class name"))
        record.label = intern(label)
        return CLASS
    if type(label) is int:  # Azure takes integer class names (a boolean is not one)
        record.label = _integer_name(label, "label", errors)
        return CLASS
    if type(label) is not list:
        errors.append(("label", f"expected {_expected(task)}, got {kind_of(label)}", IMAGE, "label of the wrong shape"))
        return None
    if not label:
        return EMPTY
    first = type(label[0])
    if first is str or first is int:
        return _multilabel(label, record, errors)
    if first is dict:
        if any(type(o) is dict and "polygon" in o for o in label):
            record.objects = _polygon_objects(label, errors)
            return POLYGONS
        record.objects = _box_objects(label, errors)
        return BOXES
    errors.append(("label", f"expected {_expected(task)}, got a list of {_kinds(label[0])}", IMAGE,
                   "label of the wrong shape"))
    return None


def _expected(task) -> str:
    if task:
        return task.expected_label()
    return "a class name, a list of class names or a list of objects"


def _integer_name(value: int, field: str, errors: list) -> str:
    errors.append((field, "", INTEGER, ""))
    return intern(str(value))


def _multilabel(label: list, record: ImageRecord, errors: list) -> str:
    if all(type(name) is str and name for name in label):
        record.label = list(dict.fromkeys(map(intern, label)))  # a class named twice is still one class
        return CLASSES
    names = []
    for i, name in enumerate(label):
        if type(name) is str and name:
            names.append(intern(name))
        elif type(name) is int:
            names.append(_integer_name(name, f"label[{i}]", errors))
        else:
            errors.append((f"label[{i}]", (f"expected a non-empty class name (a string or an integer), got "
                                          f"{kind_of(name)}"), IMAGE, "class name not a string or integer"))
    record.label = list(dict.fromkeys(names))
    return CLASSES


def _box_objects(items: list, errors: list) -> list[ObjectLabel]:
    """Detection objects: an invalid box drops its object (Azure's ``valid``), a malformed one the line."""
    out = []
    for i, item in enumerate(items):
        try:
            box = _corners(item)
            x0, y0, x1, y1 = box
        except (KeyError, TypeError):  # a missing key, or not an object: the slow way says which
            x0 = None
        if not (type(x0) is float and type(y0) is float and type(x1) is float and type(y1) is float
                and 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            if type(item) is not dict:
                errors.append((f"label[{i}]", f"expected an object, got {kind_of(item)}", IMAGE,
                               "object not a JSON object"))
                continue
            box = _box_slow(item, i, errors)
        name, crowd = item.get("label"), item.get("isCrowd", 0)
        if type(name) is not str or not name or crowd not in (0, 1):
            name, crowd, keep = _name_and_crowd(item, i, errors)
            if not keep:
                continue
        else:
            name = intern(name)  # one string per class instead of one per object: less memory, less to free
        if box is not None:
            out.append(ObjectLabel(name, box, crowd == 1))
    return out


def _box_slow(item: dict, i: int, errors: list) -> tuple | None:
    """The box of an object the fast check refused, or None (its problem appended)."""
    coords = []
    for key in _BOX_KEYS:
        v = item.get(key)
        where = f"label[{i}].{key}"
        if type(v) is str:  # Azure reads coordinates with float(): "0.5" is 0.5
            number = _float(v)
            if number is None:
                errors.append((where, f"expected a number in [0, 1], got the string {shown(v)}", IMAGE,
                               "box coordinate not a number"))
                return None
            errors.append((where, (f"the string {shown(v)} is read as the number {number:g}, as Azure reads it; "
                                  "write a JSON number"), KEPT, "coordinate written as a string"))
            v = number
        elif type(v) is not float and type(v) is not int:
            errors.append((where, "missing (required)" if v is None else
                           f"expected a number in [0, 1], got {kind_of(v)} {shown(v)}", IMAGE,
                           "box coordinate missing or not a number"))
            return None
        coords.append(v)
    for key, v in zip(_BOX_KEYS, coords):
        if not _LO <= v <= _HI:  # NaN fails too
            errors.append((f"label[{i}].{key}", (f"{v:g} is outside [0, 1] (coordinates are fractions of the image "
                                                "width/height); the object is left out"), OBJECT,
                           "box coordinate outside [0, 1]"))
            return None
    x0, y0, x1, y1 = (0.0 if v < 0.0 else 1.0 if v > 1.0 else float(v) for v in coords)
    if x1 <= x0 or y1 <= y0:
        errors.append((f"label[{i}]", _degenerate(x0, y0, x1, y1) + "; the object is left out", OBJECT,
                       "inverted or empty box"))
        return None
    return x0, y0, x1, y1


def _float(text: str) -> float | None:
    try:
        return float(text) if len(text) <= 64 else None
    except ValueError:
        return None


def _degenerate(x0, y0, x1, y1) -> str:
    if x1 < x0 or y1 < y0:
        return (f"inverted box: bottomX/bottomY ({x1:g}, {y1:g}) must be greater than topX/topY ({x0:g}, {y0:g})")
    return f"zero-area box ({x0:g}, {y0:g}, {x1:g}, {y1:g}): the corners must differ in both x and y"


def _name_and_crowd(item: dict, i: int, errors: list) -> tuple[str | None, bool, bool]:
    """(class name, is crowd, whether the object stays). A missing or mistyped name drops the line
    (Azure raises on it); an empty one drops the object."""
    name = item.get("label")
    keep = True
    if type(name) is str and name:
        name = intern(name)
    elif type(name) is int:
        name = _integer_name(name, f"label[{i}].label", errors)
    elif type(name) is str:
        errors.append((f"label[{i}].label", "empty class name; the object is left out", OBJECT, "empty class name"))
        keep = False
    else:
        errors.append((f"label[{i}].label", "missing (required)" if name is None else
                       f"expected a class name (a string or an integer), got {kind_of(name)}", IMAGE,
                       "class name missing or not a string or integer"))
        keep = False
    return name, _crowd(item.get("isCrowd"), i, errors), keep


def _crowd(value, i: int, errors: list) -> bool:
    """isCrowd as Azure reads it: 1, true, "1", "true" and "True" are crowd, anything else is not."""
    if value is None:
        return False
    if value in (0, 1):  # exactly 0, 1, 0.0, 1.0, false, true
        return value == 1
    if type(value) is str and value in _CROWD:
        return _CROWD[value]
    errors.append((f"label[{i}].isCrowd", (f"{shown(value)} is read as 0 (not crowd), as Azure reads it: only 1, "
                                          "true, \"1\", \"true\" and \"True\" mean crowd"), KEPT, "isCrowd read as 0"))
    return False


def _polygon_objects(items: list, errors: list) -> list[ObjectLabel]:
    out = []
    for i, item in enumerate(items):
        if type(item) is not dict:
            errors.append((f"label[{i}]", f"expected an object, got {kind_of(item)}", IMAGE, "object not a JSON object"))
            continue
        obj = _polygon_object(item, i, errors)
        name, crowd, keep = _name_and_crowd(item, i, errors)
        if obj is not None and keep:
            obj.label, obj.is_crowd = name, crowd
            out.append(obj)
    return out


def _polygon_object(item: dict, i: int, errors: list) -> ObjectLabel | None:
    poly = item.get("polygon")
    where = f"label[{i}].polygon"
    if type(poly) is not list or not poly:
        if poly is None and "polygon" not in item and not all(key in item for key in _BOX_KEYS):
            errors.append((where, "missing (required): an object needs a polygon", IMAGE, "object without a polygon or box"))
        elif poly is None or type(poly) is list:
            errors.append((where, "no polygon (instance segmentation needs one); the object is left out", OBJECT,
                           "object without a polygon"))
        else:
            errors.append((where, ("expected a non-empty list of segments [[x1, y1, x2, y2, ...], ...], "
                                  f"got {kind_of(poly)}"), IMAGE, "polygon malformed"))
        return None
    if all(type(v) in _NUMBER for v in poly):
        errors.append((where, "is a flat list of numbers; wrap it in another list: [[x1, y1, ...]]", IMAGE,
                       "polygon malformed"))
        return None
    segments, malformed = [], False
    for j, seg in enumerate(poly):
        seg = _segment(seg, f"{where}[{j}]", errors)
        if seg is False:
            malformed = True
        elif seg is not None:
            segments.append(seg)
    if malformed:
        return None
    if not segments:
        errors.append((where, "no usable segment left; the object is left out", OBJECT, "polygon with no usable segment"))
        return None
    xs = [x for seg in segments for x in seg[0::2]]
    ys = [y for seg in segments for y in seg[1::2]]
    if sum(abs(_shoelace(seg[0::2], seg[1::2])) for seg in segments) < 1e-12:  # a line or a point: an empty mask
        errors.append((where, "encloses no area (all its points lie on one line); the object is left out", OBJECT,
                       "polygon with no area"))
        return None
    return ObjectLabel("", (min(xs), min(ys), max(xs), max(ys)), False, segments)


def _shoelace(xs: list[float], ys: list[float]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for x0, y0, x1, y1 in zip(xs, ys, xs[1:] + xs[:1], ys[1:] + ys[:1]))


def _segment(seg, where: str, errors: list):
    """The segment's values (clipped), None when Azure drops the segment, False when it drops the line."""
    if type(seg) is not list:
        errors.append((where, f"expected a list of numbers x1, y1, x2, y2, ..., got {kind_of(seg)}", IMAGE,
                       "polygon malformed"))
        return False
    if any(type(v) not in _NUMBER for v in seg):
        errors.append((where, "expected numbers only", IMAGE, "polygon malformed"))
        return False
    if len(seg) % 2:
        errors.append((where, f"has an odd number of values ({len(seg)}); x and y must come in pairs", IMAGE,
                       "polygon segment with an odd count"))
        return False
    if len(seg) < 5:
        errors.append((where, (f"has {len(seg) // 2} point(s); a polygon needs at least 3 (Azure drops a segment "
                              "of fewer than 5 values): the segment is left out"), SEGMENT,
                       "polygon segment under 3 points"))
        return None
    low, high = min(seg), max(seg)
    if low < _LO or high > _HI:
        bad = low if low < _LO else high
        errors.append((where, (f"value {bad:g} is outside [0, 1] (coordinates are fractions of the image size); "
                              "the segment is left out"), SEGMENT, "polygon segment outside [0, 1]"))
        return None
    if low < 0.0 or high > 1.0:
        return [0.0 if v < 0.0 else 1.0 if v > 1.0 else float(v) for v in seg]
    return [float(v) for v in seg]


def class_names_in(label) -> list:
    """The class names (str or int, as written) in a JSONL ``label``, however malformed."""
    if type(label) in (str, int):
        return [label]
    if type(label) is not list:
        return []
    found = [o.get("label") if type(o) is dict else o for o in label]
    return [name for name in found if type(name) in (str, int)]


def kind_of(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _kinds(value) -> str:
    """The plural of ``kind_of``, for "a list of ..."."""
    names = {dict: "objects", list: "lists", str: "strings", bool: "booleans", int: "numbers",
             float: "numbers", type(None): "nulls"}
    return names.get(type(value), f"{type(value).__name__} values")


def shown(value) -> str:
    """A value as a message quotes it, cut to a readable length (a hostile line can hold megabytes)."""
    text = f"{value:g}" if type(value) is float else repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"
