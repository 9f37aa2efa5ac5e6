"""Reading ``POST /score``: the body (size-capped while it streams) and the Azure request format.

Parsing is pure and runs on the decoder threads: each item's image is checked from its header alone
(the per-image and per-request pixel caps, whether the model can take its shape, the explanation
cap) and kept compressed, so a refused request costs no decoding and a queued one holds bytes only.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from ..data.images import DEFAULT_MAX_PIXELS
from ..predict.decode import DecodeError, parse_score_item, read_header

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
    xai: list
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    decoded: list | None = None  # the RGB images, only while its batch runs

    @property
    def pixels(self) -> int:
        return sum(image.pixels for image in self.images)

    @property
    def explains(self) -> bool:
        return any(x is not None for x in self.xai)


def parse_request(body: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, size_problem=None,
                  max_request_pixels: int | None = None, max_explanations: int | None = None) -> Job:
    """The body of ``POST /score`` as header-checked images, none decoded: ``RequestError(400)``
    naming the bad item (not base64, not an image, over ``max_pixels``, or a shape the model
    cannot take per ``size_problem(width, height)``), ``RequestError(413)`` when the images'
    pixels add up to more than ``max_request_pixels`` or more than ``max_explanations`` items ask
    for an explanation."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc})") from None
    data = _data_list(payload)
    images, names, xai = [], [], []
    pixels = explanations = 0
    for index, entry in enumerate(data):
        try:
            item = parse_score_item(entry)
            explanations += bool(item.model_explainability)
            if max_explanations is not None and explanations > max_explanations:
                raise RequestError(413, f"item {index} is explanation number {explanations}: this server explains "
                                        f"at most {max_explanations} items per request (--max-explanations-per-"
                                        f"request); send the rest in further requests", index)
            image = read_header(item.image, max_pixels)
        except DecodeError as exc:
            raise RequestError(400, str(exc), index) from None
        problem = size_problem(image.width, image.height) if size_problem is not None else None
        if problem:
            raise RequestError(400, problem, index)
        pixels += image.pixels
        if max_request_pixels and pixels > max_request_pixels:
            raise RequestError(413, f"the images up to item {index} have {pixels:,} pixels, over this server's "
                                    f"limit of {max_request_pixels:,} decoded pixels per request "
                                    f"(--max-request-pixels); send fewer or smaller images per request", index)
        images.append(image)
        names.append(f"image_{index}")
        xai.append(item.xai_parameters if item.model_explainability else None)
    return Job(images=images, names=names, xai=xai)


_SHAPE = 'the body must be {"input_data": {"columns": ["image"], "data": [BASE64_IMAGE, ...]}}'


def _data_list(payload) -> list:
    if not isinstance(payload, dict) or "input_data" not in payload:
        raise RequestError(400, f"'input_data' is missing: {_SHAPE}")
    input_data = payload["input_data"]
    if not isinstance(input_data, dict):
        raise RequestError(400, f"'input_data' must be an object: {_SHAPE}")
    if input_data.get("columns") != ["image"]:
        raise RequestError(400, f"'columns' must be [\"image\"], got {input_data.get('columns')!r}: {_SHAPE}")
    data = input_data.get("data")
    if not isinstance(data, list):
        raise RequestError(400, f"'data' must be a list of base64 images, got {type(data).__name__}")
    if not data:
        raise RequestError(400, "'data' is empty: send at least one image")
    return data


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


# The OpenAPI description of the body and of every error answer (served at /openapi.json).
REQUEST_SCHEMA = {
    "type": "object",
    "required": ["input_data"],
    "properties": {"input_data": {
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": ["image"]}},
            "data": {"type": "array", "minItems": 1, "items": {"type": "string", "description":
                     "a base64 image, or a JSON string {image_base64, model_explainability, xai_parameters}"}},
        },
    }},
}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"},
                                                 "index": {"type": ["integer", "null"]}}}
