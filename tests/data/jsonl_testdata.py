"""Builders for the data-layer tests: tiny real image files, JSONL lines, bomb-like PNGs.

A plain module (not conftest) so test files can import it by a name no other folder uses.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import orjson
from PIL import Image


def write_image(path: Path, size=(40, 30), fmt: str | None = None, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def write_jsonl(path: Path, lines, bom: bool = False) -> Path:
    """Each item is a dict (dumped as JSON) or a str (written as is, for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = b"".join((line.encode() if isinstance(line, str) else orjson.dumps(line)) + b"\n" for line in lines)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` but holds almost no pixel data: what a
    decompression bomb looks like to a reader that only trusts the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(body)
    return path


def box(label="cat", x0=0.1, y0=0.1, x1=0.5, y1=0.6, **extra) -> dict:
    return {"label": label, "topX": x0, "topY": y0, "bottomX": x1, "bottomY": y1, **extra}


def poly(label="cat", points=(0.1, 0.1, 0.5, 0.1, 0.3, 0.6), **extra) -> dict:
    return {"label": label, "polygon": [list(points)], **extra}
