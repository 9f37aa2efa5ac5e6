"""The one decoder for scoring inputs: REST items, batch files and Python objects become RGB images.

Everything that scores (``Predictor.predict``, ``visionml serve``, ``visionml predict``, the
explainers) goes through here, so the same bytes give the same image and the same answer
everywhere. Pixels are decoded by ``visionml.data.images.load_rgb`` (EXIF orientation, RGB,
decompression-bomb limit).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field

from PIL import Image

from .data.images import DEFAULT_MAX_PIXELS, load_rgb
from .errors import VisionMLError

# Paths longer than this are never probed on disk: a long string is base64, not a file name.
_MAX_PATH_CHARS = 4096
_WHITESPACE = re.compile(rb"\s+")
_DATA_URI = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


class DecodeError(VisionMLError):
    """One scoring input could not be turned into an image; ``index`` is its position in the request."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


@dataclass(slots=True)
class ScoreItem:
    """One entry of ``input_data.data``: the image bytes and what the caller asked for."""

    image: bytes
    model_explainability: bool = False
    xai_parameters: dict = field(default_factory=dict)


def b64decode(text: str | bytes) -> bytes:
    """Decode base64 with or without the line breaks ``base64.encodebytes`` inserts (and an optional
    ``data:image/...;base64,`` prefix). Anything else than the base64 alphabet is an error, so that a
    file name or random text is not silently decoded to garbage."""
    if isinstance(text, str):
        text = _DATA_URI.sub("", text, count=1)
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise DecodeError("not base64: the string has non-ASCII characters") from exc
    else:
        raw = bytes(text)
    raw = _WHITESPACE.sub(b"", raw)
    if not raw:
        raise DecodeError("not base64: the string is empty")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"not base64 ({exc}); send the image bytes encoded with base64.b64encode "
                          f"or base64.encodebytes") from exc


def parse_score_item(item) -> ScoreItem:
    """One ``data`` entry as Azure sends it: a base64 string, or a JSON string (or object)
    ``{"image_base64": ..., "model_explainability": bool, "xai_parameters": {...}}``. A one-element
    list (a pandas "split" row, as MLflow clients send) is unwrapped."""
    if isinstance(item, list) and len(item) == 1:
        item = item[0]
    if isinstance(item, str) and item.lstrip().startswith("{"):
        try:
            item = json.loads(item)
        except json.JSONDecodeError as exc:
            raise DecodeError(f"the item looks like JSON but is not valid JSON ({exc})") from exc
    if isinstance(item, dict):
        return _item_from_dict(item)
    if isinstance(item, str):
        return ScoreItem(image=b64decode(item))
    raise DecodeError(f"an item must be a base64 string or a JSON object with image_base64, "
                      f"not {type(item).__name__}")


def _item_from_dict(obj: dict) -> ScoreItem:
    if "image_base64" not in obj or not isinstance(obj["image_base64"], str):
        raise DecodeError("the item's JSON needs an 'image_base64' string")
    explain = obj.get("model_explainability", False)
    if not isinstance(explain, bool):
        raise DecodeError("'model_explainability' must be true or false")
    params = obj.get("xai_parameters") or {}
    if not isinstance(params, dict):
        raise DecodeError("'xai_parameters' must be a JSON object")
    return ScoreItem(image=b64decode(obj["image_base64"]), model_explainability=explain,
                     xai_parameters=params)


def decode_image(src, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any scoring input as an RGB PIL image: a PIL image, raw bytes, a path (str or PathLike) or a
    base64 string. Raises ``DecodeError`` saying what was wrong."""
    if isinstance(src, str) and _is_existing_file(src):
        src = os.fspath(src)
    elif isinstance(src, str):
        src = b64decode(src)
    elif isinstance(src, os.PathLike) and not os.path.isfile(src):
        raise DecodeError(f"{os.fspath(src)}: no such file")
    try:
        return load_rgb(src, max_pixels=max_pixels)
    except ValueError as exc:
        where = f"{src}: " if isinstance(src, (str, os.PathLike)) else ""
        raise DecodeError(f"{where}{exc}") from exc
    except OSError as exc:
        raise DecodeError(f"{src}: cannot read ({exc.strerror or exc})") from exc


def _is_existing_file(text: str) -> bool:
    return len(text) <= _MAX_PATH_CHARS and os.path.isfile(text)


def filename_of(src, index: int) -> str:
    """The ``filename`` field for an input: the path it came from, else a stable per-request name."""
    if isinstance(src, os.PathLike) or (isinstance(src, str) and _is_existing_file(src)):
        return os.fspath(src)
    name = getattr(src, "filename", None)  # PIL images opened from a file remember it
    return name if isinstance(name, str) and name else f"image_{index}"
