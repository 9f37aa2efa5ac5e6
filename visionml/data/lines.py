"""One parsed JSONL line -> an ``ImageRecord``, and what is wrong with it, as Azure's code reads it.

Each problem is appended to ``errors`` as ``(field, reason, outcome, kind)`` (see ``problems``):
the outcome is what Azure's own reader does with it (``reference/azure-parity.md``, docs/data.md).
This module reads the line, ``image_url`` and ``image_details`` (never needed: what is wrong with
it is a warning); ``labels`` reads the ``label`` and its objects.

A plain relative ``image_url`` and a whole-number size are read without the general path: the hot
path for files of millions of lines; anything else goes the slow way for a precise message.
"""

from __future__ import annotations

from .images import IMAGE_FORMATS
from .labels import INTEGER, class_names_in, kind_of, label_into, shown
from .problems import IMAGE, WARNING
from .records import ImageRecord
from .resolve import join_under, resolve_image_url

# INTEGER, class_names_in and shown are imported from here by the reader and the reports.
__all__ = ["INTEGER", "MAX_SIDE", "class_names_in", "kind_of", "shown", "to_record"]

MAX_SIDE = 2**31 - 1
"""The largest ``image_details`` width or height read: PNG's own limit, far above any image under
the pixel limit; a bigger number is a typo or a hostile line."""
_IGNORED = "; ignored (the size is read from the image itself, as Azure does)"


def to_record(obj, source: str, lineno: int, base: str, datastores, task, errors: list):
    """(record, label shape) for a parsed line; appends ``(field, reason, outcome, kind)`` to ``errors``."""
    if type(obj) is not dict:
        errors.append(("line", f"expected a JSON object, got {kind_of(obj)}", IMAGE, "line not a JSON object"))
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
        errors.append(("image_details", f"expected an object {{format, width, height}}, got {kind_of(details)}"
                       + _IGNORED, WARNING, "image_details ignored"))
    if "label" not in obj:
        errors.append(("label", "missing (required)", IMAGE, "label missing"))
        return None, None
    record = ImageRecord(source, lineno, url, path, None, [], width, height, fmt)
    shape = label_into(obj["label"], record, task, errors)
    return record, shape


def _image_path(url, base: str, datastores, errors: list):
    if url is None:
        errors.append(("image_url", "missing (required)", IMAGE, "image_url missing or invalid"))
        return None
    if type(url) is not str or not url:
        errors.append(("image_url", f"expected a non-empty string, got {kind_of(url)}", IMAGE,
                       "image_url missing or invalid"))
        return None
    try:
        if url[0] != "/" and ":" not in url:
            return join_under(base, url, "the JSONL file's folder")
        return resolve_image_url(url, base, datastores)
    except ValueError as exc:
        errors.append(("image_url", str(exc), IMAGE, "image_url missing or invalid"))
        return None


# Memos for the spellings that repeat on every line ("640px", "jpg"): a dict look-up instead of parsing.
_PIXELS: dict[str, int] = {}
_FORMATS = {f: f for f in IMAGE_FORMATS} | {f.upper(): f for f in IMAGE_FORMATS}


def _format(fmt, errors: list) -> str | None:
    low = fmt.lower().lstrip(".") if type(fmt) is str else None
    if low in IMAGE_FORMATS:
        return low
    errors.append(("image_details.format", f"unknown format {shown(fmt)} (known: {', '.join(sorted(IMAGE_FORMATS))})"
                   + _IGNORED, WARNING, "image_details ignored"))
    return None


def _pixels(value, name: str, errors: list) -> int | None:
    """``400``, ``"400"`` or ``"400px"`` -> 400; None when absent or unreadable (a warning)."""
    if value is None:
        return None
    number = None
    if type(value) is str:  # Azure writes "400px"
        text = value.removesuffix("px")
        if text.isascii() and text.isdigit():  # isdigit alone takes "²" and other scripts' digits
            # int() of thousands of digits is slow (and refused above 4300): bound the length first
            number = int(text) if len(text.lstrip("0")) <= 12 else MAX_SIDE + 1
    elif type(value) is float and value.is_integer():
        number = int(value) if value <= MAX_SIDE else MAX_SIDE + 1
    elif type(value) is int:
        number = value
    if number is None or number <= 0:
        errors.append((f"image_details.{name}", f"cannot read {shown(value)} as a positive pixel count "
                                                "(write 400 or \"400px\")" + _IGNORED, WARNING, "image_details ignored"))
        return None
    if number > MAX_SIDE:
        errors.append((f"image_details.{name}", f"{shown(value)} is over the largest image side "
                                                f"({MAX_SIDE:,} pixels)" + _IGNORED, WARNING, "image_details ignored"))
        return None
    if type(value) is str and len(_PIXELS) < 65536:
        _PIXELS[value] = number
    return number

