"""Opening images: one decoder for training, scoring and explaining (EXIF orientation applied, RGB)."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default (~89.5 MP): above it an image is refused before decoding (decompression bombs).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
IMAGE_FORMATS = frozenset({"jpg", "jpeg", "jpe", "jfif", "png", "bmp", "tif", "tiff", "gif", "webp"})
"""Azure's list of ``image_details.format`` values, plus GIF and WebP which Pillow reads as well."""
IMAGE_EXTENSIONS = frozenset(f".{fmt}" for fmt in IMAGE_FORMATS)
"""The same list as file name endings: what ``predict`` looks for in a folder."""


def load_rgb(src, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``src`` (a path, raw bytes, a binary file object or a PIL image) to an RGB image with
    its EXIF orientation applied. Raises ``ValueError`` naming the problem for anything that is not
    a readable image or is larger than ``max_pixels`` (checked from the header, before decoding)."""
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, (str, os.PathLike)):
        with open_image_file(src) as fp:
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


def local_path(path_or_url) -> Path:
    """A local file for a record's ``path``: http(s) URLs are fetched into the cache first
    (see ``visionml.data.resolve.fetch``); raises ``ValueError`` if the download fails."""
    from .resolve import fetch, is_url

    location = os.fspath(path_or_url)
    return fetch(location) if is_url(location) else Path(location)


def check_image(path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """``(width, height, format)`` of the image file at ``path``, from its header, after a cheap
    completeness check (no pixel decoding). Raises ``ValueError`` naming the problem: missing
    or unreadable file, not a regular file, not an image, truncated, or more than ``max_pixels``
    pixels (refused from the header, so a decompression bomb costs nothing)."""
    with open_image_file(path) as fp:
        try:
            size = os.fstat(fp.fileno()).st_size
            if size == 0:
                raise ValueError(f"empty file: {path}")
            head = fp.read(32)
            fp.seek(max(0, size - _TAIL))
            tail = fp.read(_TAIL)
            fp.seek(0)
        except OSError as exc:  # EIO from a failing disk or mount, mostly
            raise ValueError(f"{_os_reason(exc)}: {path}") from None
        width, height, fmt, tiles = _read_header(fp, path)
    if max_pixels and width * height > max_pixels:
        raise ValueError(_over_limit(width, height, max_pixels, path))
    problem = _incomplete(fmt, size, head, tail, tiles)
    if problem:
        raise ValueError(f"truncated or corrupt {fmt} ({problem}): {path}")
    return width, height, fmt.lower()


def open_image_file(path):
    """``path`` opened for reading bytes, or ``ValueError`` saying why not. Only regular files are
    opened: a named pipe would block the reader forever and a device could be endless (or have
    side effects on open), so they are refused from ``stat`` before any open. The open itself is
    non-blocking and checked again, in case the path is swapped for a pipe in between."""
    try:
        _refuse_non_regular(os.stat(path).st_mode, path)
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError as exc:
        raise ValueError(f"{_os_reason(exc)}: {path}") from None
    try:
        _refuse_non_regular(os.fstat(fd).st_mode, path)
        if _OPEN_FLAGS & _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS = _NONBLOCK | getattr(os, "O_BINARY", 0)
_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
# What each way an open can fail means to someone fixing an image_url.
_OS_REASONS = {
    errno.ENOENT: "file not found",
    errno.EISDIR: "is a folder, not an image file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _refuse_non_regular(mode: int, path) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ValueError(f"is a folder, not an image file: {path}")
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
    raise ValueError(f"not a regular file ({kind}): {path}")


def _os_reason(exc: OSError) -> str:
    reason = _OS_REASONS.get(exc.errno)
    return reason or f"cannot read the file ({exc.strerror or exc})"


# Bytes read from the end of a file for the end-marker checks; tolerates a little padding.
_TAIL = 1024


def _read_header(fp, path) -> tuple[int, int, str, list]:
    try:
        img = Image.open(fp)  # lazy: parses the header only
    except Image.DecompressionBombError as exc:
        # Pillow refuses > 2 * MAX_IMAGE_PIXELS itself, before we see the size.
        raise ValueError(f"image is over Pillow's pixel limit ({exc}): {path}") from None
    except UnidentifiedImageError:
        raise ValueError(f"not an image file (Pillow cannot identify its format): {path}") from None
    except OSError as exc:
        if "runcated" in str(exc):  # Pillow: "Truncated File Read" inside the header
            raise ValueError(f"truncated file (cut short inside its header): {path}") from None
        raise ValueError(f"not a readable image ({exc}): {path}") from None
    except Exception as exc:  # a malformed header can raise almost anything inside a plugin
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc}): {path}") from None
    return img.width, img.height, img.format or "unknown", list(getattr(img, "tile", None) or [])


def _over_limit(width: int, height: int, max_pixels: int, path) -> str:
    return (f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (raise it with --max-pixels if the image is genuine): {path}")


def _incomplete(fmt: str, size: int, head: bytes, tail: bytes, tiles: list) -> str | None:
    """Why the file looks cut short, from its end marker or declared length; None when it looks whole."""
    if fmt in ("JPEG", "MPO"):
        if not tail.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
            return "no end-of-image marker FFD9 at the end"
    elif fmt == "PNG":
        if b"IEND" not in tail[-64:]:
            return "no IEND chunk at the end"
    elif fmt == "GIF":
        if not tail.rstrip(b"\x00").endswith(b";"):
            return "no trailer byte 0x3B at the end"
    elif fmt == "WEBP":
        declared = int.from_bytes(head[4:8], "little") + 8
        if declared > size:
            return f"RIFF header declares {declared} bytes, file has {size}"
    elif fmt == "BMP":
        declared = int.from_bytes(head[2:6], "little")
        if declared > size:
            return f"header declares {declared} bytes, file has {size}"
    else:
        offsets = [t[2] for t in tiles if isinstance(t[2], int)]
        if offsets and max(offsets) >= size:
            return f"pixel data should start at byte {max(offsets)}, file has {size}"
    return None
