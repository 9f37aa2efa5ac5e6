"""Small copies of dataset images: decoded at reduced size, EXIF orientation applied, cached on disk.

A JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (``Image.draft``), so a thumbnail of
a 12-megapixel photo costs a fraction of a full decode. Thumbnails are keyed by the file's path,
size and modification time, so an edited image gets a new one, and written under a temporary name
then renamed, so two servers sharing the cache never read half a file. ``visionml view`` and
``visionml audit`` (its perceptual hashes) both read images through here.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

from PIL import Image, ImageOps

from .images import DEFAULT_MAX_PIXELS, local_path, open_image_file

THUMB_SIZE = 256      # the grid's tiles: the longer side, in pixels
LARGE_SIZE = 1280     # the enlarged view
JPEG_QUALITY = 85
CACHE_ENV = "VISIONML_CACHE_DIR"


def default_thumbnail_dir() -> Path:
    """``$VISIONML_CACHE_DIR/thumbnails``, else ``$XDG_CACHE_HOME/visionml/thumbnails``, else
    ``~/.cache/visionml/thumbnails`` (beside the cache of downloaded images)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "thumbnails"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "visionml" / "thumbnails"


def reduced_rgb(src, longest: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image ``src`` (a path, a URL the image cache fetches, or the file's bytes) as RGB, its
    longer side at most ``longest`` pixels, EXIF orientation applied (the image the models and
    the JSONL coordinates see). Raises ``ValueError`` for a file that is not a readable image or
    is over ``max_pixels`` (from the header)."""
    if isinstance(src, (bytes, bytearray)):
        return _reduced(io.BytesIO(src), longest, max_pixels)
    with open_image_file(local_path(src)) as fp:
        return _reduced(fp, longest, max_pixels)


def _reduced(fp, longest: int, max_pixels: int | None) -> Image.Image:
    try:
        img = Image.open(fp)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ValueError(f"image is {img.width}x{img.height} pixels, over the limit of {max_pixels}")
        img.draft("RGB", (longest, longest))  # JPEG only: decode at the smallest scale still >= longest
        img.load()
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"not a readable image ({exc})") from exc
    img = ImageOps.exif_transpose(img)
    img = img if img.mode == "RGB" else img.convert("RGB")
    img.thumbnail((longest, longest), Image.Resampling.BILINEAR)
    return img


class ThumbnailCache:
    """JPEG thumbnails of image files in ``folder``, made on first request and read back after."""

    def __init__(self, folder=None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.folder = Path(folder) if folder is not None else default_thumbnail_dir()
        self.max_pixels = max_pixels

    def path_for(self, image_path, longest: int) -> Path:
        location = os.fspath(image_path)
        try:
            st = os.stat(location)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:  # a URL (fetched into the image cache, which never changes) or a missing file
            stamp = ""
        key = hashlib.sha256(f"{os.path.abspath(location)}\0{stamp}\0{longest}".encode("utf-8")).hexdigest()
        return self.folder / key[:2] / f"{key}.jpg"

    def cached(self, image_path, longest: int = THUMB_SIZE) -> bytes | None:
        """The thumbnail's JPEG bytes if it was made before, else None (no decoding)."""
        try:
            return self.path_for(image_path, longest).read_bytes()
        except OSError:
            return None

    def get(self, image_path, longest: int = THUMB_SIZE) -> bytes:
        """The thumbnail's JPEG bytes, made now if need be; ``ValueError`` when the image cannot be read."""
        data = self.cached(image_path, longest)
        if data is not None:
            return data
        target = self.path_for(image_path, longest)
        buffer = io.BytesIO()
        reduced_rgb(image_path, longest, self.max_pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        data = buffer.getvalue()
        self._store(target, data)
        return data

    def _store(self, target: Path, data: bytes) -> None:
        """Best effort: a cache that cannot be written (read-only home, full disk) only costs speed."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
