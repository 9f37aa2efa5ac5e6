"""Reading ``POST /score``: the body (size-capped while it streams) and the request formats of
Azure's scoring scripts.

Three bodies, as Azure's endpoints take them (DESIGN.md "Scoring: wire formats"):

* ``{"input_data": {"columns": ["image"], "data": [ITEM, ...]}}`` (Azure's MLflow endpoint): the
  answer is a list, one object per ITEM. ``model_explainability`` and ``xai_parameters`` of the
  first item apply to every item that does not set them itself (``decode.first_row_defaults``).
* ``{"image": BASE64, "model_explainability": ..., "xai_parameters": {...}}`` (Azure's v1 scoring
  script): the answer is the one object.
* the image file itself with an ``image/*`` or ``application/octet-stream`` content type (also Azure's
  v1 script, and any body without a JSON content type that is not JSON): the one object, scores only.

Parsing is pure and runs on the decoder threads: each item's image is checked from its header alone
(the per-image and per-request pixel caps, whether the model can take its shape, the explanation
cap) and its ``xai_parameters`` are checked, so a refused request costs no decoding and a queued one
holds bytes only. ``/openapi.json`` describes exactly these bodies (``openapi.py``).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from ..data.images import DEFAULT_MAX_PIXELS
from ..errors import VisionMLError
from ..explain.params import DEFAULT_MAX_STEPS, parse_xai_parameters
from ..predict.decode import (DecodeError, ScoreItem, first_row_defaults, json_shown, json_type, parse_image_body,
                              parse_score_item, read_header)

if TYPE_CHECKING:
    from fastapi import Request


class RequestError(Exception):
    """A request the server refuses; ``index`` names the bad item of ``input_data.data``."""

    def __init__(self, status: int, message: str, index: int | None = None):
        super().__init__(message)
        self.status, self.message, self.index = status, message, index


@dataclass
class Job:
    """One request's images, header-checked but not decoded, waiting for the model."""

    images: list  # predict.decode.EncodedImage: compressed bytes and the size from the header
    names: list[str]
    xai: list  # per image: the checked explain.XaiParams, or None (no explanation asked)
    single: bool = False  # an {"image": ...} or raw-image body: answered with the object, not a list
    featurize: bool = False  # answered with feature vectors (POST /score?featurize=true)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    decoded: list | None = None  # the RGB images, only while its batch runs

    @property
    def pixels(self) -> int:
        return sum(image.pixels for image in self.images)

    @property
    def explains(self) -> bool:
        return any(x is not None for x in self.xai)


# Content types whose body is the image file itself (anything else is read as JSON first).
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream")
_JSON_SHAPES = ('the body must be {"input_data": {"columns": ["image"], "data": [BASE64_IMAGE, ...]}}, '
                '{"image": BASE64_IMAGE}, or the image file itself with an image/* content type')


def parse_request(body: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, content_type: str | None = None,
                  size_problem=None, max_request_pixels: int | None = None, max_explanations: int | None = None,
                  max_steps: int | None = DEFAULT_MAX_STEPS, featurize: bool = False) -> Job:
    """The body of ``POST /score`` as header-checked images, none decoded: ``RequestError(400)``
    naming the bad item (not base64, not an image, over ``max_pixels``, a shape the model cannot take
    per ``size_problem(width, height)``, bad ``xai_parameters``), ``RequestError(413)`` when the
    images' pixels add up to more than ``max_request_pixels`` or more than ``max_explanations`` items
    ask for an explanation (None: explanations are not made, so not counted: a detector's endpoint)."""
    items, single = _items(body, content_type)
    images, names, xai = [], [], []
    pixels = explanations = 0
    for index, item in enumerate(items):
        where = None if single else index
        try:
            params = parse_xai_parameters(item.xai_parameters, strict=True, max_steps=max_steps)
        except VisionMLError as exc:
            raise RequestError(400, str(exc), where) from None
        explain = item.model_explainability and max_explanations is not None
        if explain and featurize:
            raise RequestError(400, "featurize=true answers feature vectors only: send the items asking for "
                                    "model_explainability in a request without it", where)
        explanations += explain
        if explain and explanations > max_explanations:
            raise RequestError(413, f"item {index} is explanation number {explanations}: this server explains "
                                    f"at most {max_explanations} items per request (--max-explanations-per-"
                                    f"request); send the rest in further requests", where)
        try:
            image = read_header(item.image, max_pixels)
        except DecodeError as exc:
            raise RequestError(400, str(exc), where) from None
        problem = size_problem(image.width, image.height) if size_problem is not None else None
        if problem:
            raise RequestError(400, problem, where)
        pixels += image.pixels
        if max_request_pixels and pixels > max_request_pixels:
            raise RequestError(413, f"the images up to item {index} have {pixels:,} pixels, over this server's "
                                    f"limit of {max_request_pixels:,} decoded pixels per request "
                                    f"(--max-request-pixels); send fewer or smaller images per request", where)
        images.append(image)
        names.append(f"image_{index}")
        xai.append(params if explain else None)
    return Job(images=images, names=names, xai=xai, single=single, featurize=featurize)


def _items(body: bytes, content_type: str | None) -> tuple[list[ScoreItem], bool]:
    """The request's items and whether it is a one-image body, by content type and shape."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith(IMAGE_CONTENT_TYPES):
        return [ScoreItem(image=body)], True
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if kind and (kind == "application/json" or kind.endswith("+json")):
            raise RequestError(400, f"the body is not valid JSON ({exc})") from None
        if _looks_like_image(body):  # Azure's v1 script scores a body that is not JSON as the image
            return [ScoreItem(image=body)], True
        raise RequestError(400, f"the body is neither JSON nor an image: {_JSON_SHAPES}") from None
    if isinstance(payload, dict) and "input_data" in payload:
        return first_row_defaults(_data_items(payload["input_data"])), False
    if isinstance(payload, dict) and "image" in payload:
        try:
            return [parse_image_body(payload)], True
        except DecodeError as exc:
            raise RequestError(400, str(exc)) from None
    if isinstance(payload, dict):
        raise RequestError(400, f"'input_data' is missing: {_JSON_SHAPES}")
    raise RequestError(400, f"the body is a JSON {json_type(payload)}, not an object: {_JSON_SHAPES}")


def _looks_like_image(body: bytes) -> bool:
    try:
        read_header(body, None)
    except DecodeError:
        return False
    return True


def _data_items(input_data) -> list[ScoreItem]:
    if not isinstance(input_data, dict):
        raise RequestError(400, f"'input_data' must be an object, got {json_type(input_data)}: {_JSON_SHAPES}")
    if input_data.get("columns") != ["image"]:
        got = json_shown(input_data["columns"]) if "columns" in input_data else "nothing"
        raise RequestError(400, f"'columns' must be [\"image\"], got {got}: {_JSON_SHAPES}")
    data = input_data.get("data")
    if not isinstance(data, list):
        raise RequestError(400, f"'data' must be a list of base64 images, got {json_type(data)}")
    if not data:
        raise RequestError(400, "'data' is empty: send at least one image")
    items = []
    for index, entry in enumerate(data):
        try:
            items.append(parse_score_item(entry))
        except DecodeError as exc:
            raise RequestError(400, str(exc), index) from None
    return items


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``max_bytes``: from
    Content-Length before reading anything, else while streaming (chunked uploads)."""
    declared = request.headers.get("content-length")
    too_big = RequestError(413, f"the body is over the limit of {max_bytes / 2**20:g} MB; send fewer "
                                f"or smaller images per request (the server's --max-body-mb)")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
