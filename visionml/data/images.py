"""Opening images: one decoder for training, scoring and explaining (EXIF orientation applied, RGB)."""

from __future__ import annotations

import io
import os

from PIL import Image, ImageOps

# Pillow's own default (~89.5 MP): above it an image is refused before decoding (decompression bombs).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def load_rgb(src, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``src`` (a path, raw bytes, a binary file object or a PIL image) to an RGB image with
    its EXIF orientation applied. Raises ``ValueError`` naming the problem for anything that is not
    a readable image or is larger than ``max_pixels`` (checked from the header, before decoding)."""
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as fp:
            img = _decode(fp, max_pixels)
    else:
        fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src
        img = _decode(fp, max_pixels)
    img = ImageOps.exif_transpose(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def _decode(fp, max_pixels: int | None) -> Image.Image:
    try:
        img = Image.open(fp)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ValueError(f"image is {img.width}x{img.height} = {img.width * img.height} pixels, "
                             f"over the limit of {max_pixels}")
        img.load()
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"not a readable image ({exc})") from exc
    return img
