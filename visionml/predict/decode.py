"""The one decoder for scoring inputs: REST items, batch files and Python objects become RGB images.

Everything that scores (``Predictor.predict``, ``visionml serve``, ``visionml predict``, the
explainers) goes through here, so the same bytes give the same image and the same answer
everywhere. ``read_header`` checks an input from its header alone (Pillow's lazy open: size,
format, the per-image pixel limit); ``EncodedImage.decode`` then decodes the pixels with
``visionml.data.images.load_rgb`` (EXIF orientation, RGB), which the server does only when the
model's batch runs.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from ..data.images import DEFAULT_MAX_PIXELS, load_rgb
from ..config import STRTOBOOL_FALSE, STRTOBOOL_TRUE, FieldError, Param
from ..errors import VisionMLError

# Paths longer than this are never probed on disk: a long string is base64, not a file name.
_MAX_PATH_CHARS = 4096
_WHITESPACE = re.compile(rb"\s+")
_DATA_URI = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{1,4}$")


class DecodeError(VisionMLError):
    """One scoring input could not be turned into an image; ``index`` is its position in the request."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


@dataclass(slots=True)
class ScoreItem:
    """One entry of ``input_data.data`` (or an ``{"image": ...}`` body): the image bytes and what the
    caller asked for. ``given`` names the keys the item set itself (``first_row_defaults``)."""

    image: bytes
    model_explainability: bool = False
    xai_parameters: dict = field(default_factory=dict)
    given: frozenset = frozenset()


# Azure reads model_explainability with strtobool(str(value)) (common/utils.py), so "True", "false",
# "yes" and 1 work as well as JSON booleans: the config's strtobool kind, the one reader of Azure's flag
# words (xai_parameters use it too); FLAG_PATTERN is the same set for the OpenAPI schema.
_WORDS = STRTOBOOL_TRUE + STRTOBOOL_FALSE
_FLAG = Param("flag", "strtobool", False)  # made once: parse_flag runs on every scoring request
FLAG_PATTERN = "^(" + "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)
                               for word in _WORDS) + ")$"


def parse_flag(value, key: str) -> bool:
    """A boolean as Azure's scoring code reads one: a JSON boolean, the number 0 or 1, or one of strtobool's words
    (y, yes, t, true, on, 1 / n, no, f, false, off, 0) in any case. ``DecodeError`` otherwise."""
    try:
        return _FLAG.parse(value, strict=True)
    except FieldError:
        raise DecodeError(f"{key}: {json_shown(value)} is not valid. Valid values: true or false, as a JSON boolean, "
                          f"0 or 1, or one of the strings {', '.join(json_shown(w) for w in _WORDS)} "
                          f"(in any case)") from None


def json_shown(value, limit: int = 60) -> str:
    """``value`` as JSON writes it (``null``, ``"text"``, ``[1, 2]``), cut to ``limit`` characters: what a
    request error quotes, so that a JSON client never reads a Python repr."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=lambda v: f"<{type(v).__name__}>")
    except (TypeError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit - 4]}...{text[-1]}"


def json_type(value) -> str:
    """The JSON name of ``value``'s type (object, array, string, number, boolean, null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


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
    ``{"image_base64": ..., "model_explainability": ..., "xai_parameters": {...}}``. A one-element
    list (a pandas "split" row, as MLflow clients send) is unwrapped."""
    if isinstance(item, list) and len(item) == 1:
        item = item[0]
    if isinstance(item, str) and item.lstrip().startswith("{"):
        try:
            item = json.loads(item)
        except json.JSONDecodeError as exc:
            raise DecodeError(f"the item looks like JSON but is not valid JSON ({exc})") from exc
    if isinstance(item, dict):
        return _item_from_dict(item, "image_base64")
    if isinstance(item, str):
        return ScoreItem(image=b64decode(item))
    if isinstance(item, (bytes, bytearray)):  # a binary DataFrame cell (Azure's MLflow model takes them)
        return ScoreItem(image=bytes(item))
    raise DecodeError(f"an item must be a base64 string or a JSON object with image_base64, "
                      f"not {json_type(item)}")


def parse_image_body(body: dict) -> ScoreItem:
    """The body of Azure's v1 scoring script: ``{"image": BASE64, "model_explainability": ...,
    "xai_parameters": {...}}`` (common/model_export_utils.py, run_inference_helper)."""
    return _item_from_dict(body, "image")


def _item_from_dict(obj: dict, image_key: str) -> ScoreItem:
    if not isinstance(obj.get(image_key), str):
        raise DecodeError(f"the item's JSON needs an '{image_key}' string (the image, base64-encoded)"
                          + (f", got {json_type(obj[image_key])}" if image_key in obj else ""))
    given = frozenset(k for k in ("model_explainability", "xai_parameters") if k in obj)
    explain = parse_flag(obj["model_explainability"], "model_explainability") if "model_explainability" in obj \
        else False
    params = obj.get("xai_parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise DecodeError(f"'xai_parameters' must be a JSON object, got {json_type(params)}")
    return ScoreItem(image=b64decode(obj[image_key]), model_explainability=explain, xai_parameters=params,
                     given=given)


def first_row_defaults(items: list[ScoreItem]) -> list[ScoreItem]:
    """Azure's MLflow model reads ``model_explainability`` and ``xai_parameters`` from the first row
    and applies them to every row (common/mlflow/mlflow_model_wrapper.py). visionml does the same for
    rows that do not set them, and lets a row that sets one of them have its own: an Azure client's
    request gets Azure's answer, and a request mixing rows is answered as each row asks."""
    if not items:
        return items
    first = items[0]
    out = [first]
    for item in items[1:]:
        explain = item.model_explainability if "model_explainability" in item.given else first.model_explainability
        params = item.xai_parameters if "xai_parameters" in item.given else first.xai_parameters
        out.append(ScoreItem(item.image, explain, params, item.given))
    return out


class EncodedImage:
    """An image whose header has been read and checked but whose pixels are not decoded yet:
    ``width``, ``height`` and ``format`` come from Pillow's lazy open, ``decode()`` gives the RGB
    image. The server keeps these (the compressed bytes) until the model's batch runs, so a
    request's pixels can be counted and refused before any of them is decoded."""

    __slots__ = ("source", "width", "height", "format")

    def __init__(self, source, width: int, height: int, fmt: str):
        self.source = source  # bytes, a path (str) or an already decoded PIL image
        self.width, self.height, self.format = width, height, fmt

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def decode(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
        """The RGB image (EXIF orientation applied); ``DecodeError`` if the pixels do not decode."""
        try:
            return load_rgb(self.source, max_pixels=max_pixels)
        except ValueError as exc:
            raise DecodeError(f"{self._where()}{_plain(exc)}") from exc
        except OSError as exc:
            raise DecodeError(f"{self._where()}cannot read ({exc.strerror or _plain(exc)})") from exc

    def _where(self) -> str:
        return f"{self.source}: " if isinstance(self.source, str) else ""


def read_header(src, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> EncodedImage:
    """Any scoring input (a PIL image, raw bytes, a binary file, a path as str or PathLike, or a
    base64 string) as an ``EncodedImage``, its size checked against ``max_pixels`` from the
    header. Raises ``DecodeError`` saying what was wrong."""
    if isinstance(src, Image.Image):
        return EncodedImage(src, src.width, src.height, src.format or "image")
    if isinstance(src, str) and _is_existing_file(src):
        return _header(src, os.fspath(src), max_pixels)
    if isinstance(src, str):
        try:
            data = b64decode(src)
        except DecodeError:
            if _looks_like_path(src):
                raise DecodeError(f"no such file: {src}") from None
            raise
        return _header(data, data, max_pixels)
    if isinstance(src, os.PathLike):
        if not os.path.isfile(src):
            raise DecodeError(f"no such file: {os.fspath(src)}")
        return _header(os.fspath(src), os.fspath(src), max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif hasattr(src, "read"):
        data = src.read()
    else:
        raise DecodeError(f"cannot score a {type(src).__name__}: pass a path, bytes, a base64 string or a PIL image")
    return _header(data, data, max_pixels)


def decode_image(src, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any scoring input as an RGB PIL image (see ``read_header``). Raises ``DecodeError`` saying
    what was wrong."""
    return read_header(src, max_pixels).decode(max_pixels)


def _header(source, data_or_path, max_pixels) -> EncodedImage:
    where = f"{source}: " if isinstance(source, str) else ""
    try:
        with Image.open(io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path) as img:
            width, height, fmt = img.width, img.height, img.format or "image"
    except UnidentifiedImageError:
        raise DecodeError(f"{where}not a readable image (cannot identify image file)") from None
    except OSError as exc:
        if exc.errno is not None:  # the file itself: permission denied, a folder, ...
            raise DecodeError(f"{where}cannot read ({exc.strerror or _plain(exc)})") from None
        raise DecodeError(f"{where}not a readable image ({_plain(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a malformed header can raise almost anything inside a plugin
        raise DecodeError(f"{where}not a readable image ({type(exc).__name__}: {_plain(exc)})") from None
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(f"{where}image is {width}x{height} = {width * height:,} pixels, "
                          f"over the limit of {max_pixels:,}")
    return EncodedImage(source, width, height, fmt)


def _plain(exc: BaseException) -> str:
    """An exception's message without the ``<_io.BytesIO object at 0x...>`` reprs Pillow puts in."""
    return _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__


def _looks_like_path(text: str) -> bool:
    """A string that is not base64 but reads like a file name: it has a folder separator or ends
    in an extension (a dot is never base64)."""
    return len(text) <= _MAX_PATH_CHARS and ("/" in text or os.sep in text or bool(_EXTENSION.search(text)))


def _is_existing_file(text: str) -> bool:
    return len(text) <= _MAX_PATH_CHARS and os.path.isfile(text)


def filename_of(src, index: int) -> str:
    """The ``filename`` field for an input: the path it came from, else a stable per-request name."""
    if isinstance(src, os.PathLike) or (isinstance(src, str) and _is_existing_file(src)):
        return os.fspath(src)
    name = getattr(src, "filename", None)  # PIL images opened from a file remember it
    return name if isinstance(name, str) and name else f"image_{index}"
