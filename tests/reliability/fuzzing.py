"""What the fuzz tests share: hypothesis strategies for hostile JSONL/MLTable files, the folder of
real and broken images they point at, how many examples a run tries, and the count of inputs tried.

The suite runs each property for a bounded number of examples (``budget``); `make fuzz`
(benchmarks/fuzz.py) runs the same properties for ``FUZZ_SECONDS`` each, with fresh random seeds.
Every property counts the inputs it tried in ``TRIED`` so both can report them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

TRIED: Counter = Counter()
"""Inputs tried per property, in this process."""

WORST: dict = {}
"""The largest figure each property measured (e.g. reader memory per input byte), for the reports."""

TIME_BOUND_S = 10.0
"""The most one small input (a few KB) may take through validate: about 60 ms on average and 0.3 s
at most on the shared 2-core machine at load 8, so only a hang or a blow-up reaches this (and a
busy machine does not make the suite flaky)."""


def budget(examples: int, deadline_s: float = 2 * TIME_BOUND_S):
    """Hypothesis settings for a suite run: ``examples`` inputs, each under ``deadline_s``.
    Derandomised so that the suite tries the same inputs every time (a failure reproduces); no
    example database is written into the checkout."""
    return settings(max_examples=examples, deadline=timedelta(seconds=deadline_s), derandomize=True,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ----------------------------------------------------------------------------- the workspace


def make_workspace(root: Path) -> Path:
    """Images the fuzzed lines point at: readable, truncated, not an image, a decompression bomb
    (header only), in a sub-folder, and a datastore folder beside the data."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    (root / "store").mkdir(exist_ok=True)
    Image.new("RGB", (32, 24), (200, 30, 30)).save(root / "ok.png")
    Image.new("RGB", (40, 30), (30, 200, 30)).save(root / "sub" / "ok.jpg")
    Image.new("RGB", (16, 16), (30, 30, 200)).save(root / "store" / "ok.png")
    full = (root / "ok.png").read_bytes()
    (root / "trunc.png").write_bytes(full[: len(full) // 2])
    (root / "text.png").write_bytes(b"this is not an image\n")
    (root / "empty.png").write_bytes(b"")
    _png_header_only(root / "bomb.png", 30000, 30000)
    return root


def blank_png(path: Path, width: int, height: int) -> None:
    """A valid black 1-bit PNG of any size, written in milliseconds (what a converter needs: the
    size from the header, the file complete)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * ((1 + (width + 7) // 8) * height), 1)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _png_header_only(path: Path, width: int, height: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- strategies

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(width=64),
                     st.text(max_size=12))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

_PATH_PIECES = ["..", ".", "", "sub", "ok.png", "ok.jpg", "%2e%2e", "%2F", "store", "a b", "\\..", "~"]
_URL_FORMS = [
    "ok.png", "sub/ok.jpg", "trunc.png", "text.png", "empty.png", "bomb.png", "missing.png", "sub",
    "../ok.png", "./ok.png", "sub/../ok.png", "sub/../../ok.png", "sub//ok.jpg", "ok.png\x00.jpg",
    "file:///nonexistent/x.png", "file://otherhost/x.png", "file:relative.png", "FILE:///x.png",
    "azureml://datastores/store/paths/ok.png", "azureml://datastores/unmapped/paths/ok.png",
    "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/store/paths/../../../etc/passwd",
    "azureml://datastores/store/paths/%2e%2e/%2e%2e/etc/passwd", "azureml://datastores/store/paths/",
    "azureml://nothing", "azureml:/datastores/store/paths/ok.png",
    "http://127.0.0.1:9/refused.png", "https://", "http://", "ftp://example.invalid/x.png", "s3://b/k.png",
    "data:image/png;base64,iVBORw0KGgo=", "C:\\images\\x.png", "~/x.png", " ", "", "/", "/dev/null",
]


WORKSPACE = "@WORKSPACE@"
"""Stands for the workspace folder in generated data; ``in_workspace`` puts the real path in."""


def in_workspace(data: bytes, workspace: Path) -> bytes:
    return data.replace(WORKSPACE.encode(), str(workspace).encode())


@st.composite
def image_urls(draw):
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        url = draw(st.sampled_from(_URL_FORMS))
        if url in ("ok.png", "sub/ok.jpg") and draw(st.booleans()):  # absolute forms of a real image
            url = (f"file://{WORKSPACE}/{url}" if draw(st.booleans()) else f"{WORKSPACE}/{url}")
        return url
    if kind <= 7:
        return "/".join(draw(st.lists(st.sampled_from(_PATH_PIECES), max_size=6)))
    if kind == 8:
        return draw(st.text(max_size=20))
    return draw(json_values)


coordinates = st.one_of(st.floats(0, 1), st.floats(width=64), st.integers(-2, 2),
                        st.sampled_from(["0.5", "abc", "", "1e400", "nan", "-0", " 0.2"]),
                        st.none(), st.booleans(), json_values)
class_names = st.one_of(st.sampled_from(["cat", "dog", "1", "", "Cat", "cat "]), st.integers(-3, 3),
                        st.text(max_size=8), st.none(), st.booleans(), st.floats())
crowd_values = st.one_of(st.sampled_from([0, 1, True, False, "1", "true", "True", "yes", 2, 0.5, None]), json_values)
_box_keys = {"label": class_names, "topX": coordinates, "topY": coordinates, "bottomX": coordinates,
             "bottomY": coordinates, "isCrowd": crowd_values}
box_objects = st.fixed_dictionaries({}, optional=_box_keys)
good_boxes = st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)).map(
    lambda v: {"label": "cat", "topX": min(v[0], v[2]), "topY": min(v[1], v[3]), "bottomX": max(v[0], v[2]),
               "bottomY": max(v[1], v[3])})
segments = st.one_of(st.lists(st.lists(coordinates, max_size=10), max_size=3),
                     st.lists(st.lists(st.floats(0, 1), min_size=0, max_size=12), max_size=3), json_values)
polygon_objects = st.fixed_dictionaries({}, optional={"label": class_names, "polygon": segments,
                                                      "isCrowd": crowd_values})
labels = st.one_of(class_names, st.lists(class_names, max_size=4), st.lists(box_objects, max_size=4),
                   st.lists(good_boxes, min_size=1, max_size=3), st.lists(polygon_objects, max_size=3),
                   st.lists(st.one_of(box_objects, polygon_objects, json_values), max_size=3), json_values)
pixel_counts = st.one_of(st.integers(-5, 2**40), st.sampled_from(["400px", "0px", "px", "\u00b2", "9" * 50, "400",
                                                                  "-1px", "1e3"]),
                         st.floats(), json_values)
image_details = st.one_of(st.none(), json_values, st.fixed_dictionaries({}, optional={
    "format": st.one_of(st.sampled_from(["jpg", "PNG", ".png", "tiff", "heic", ""]), json_values),
    "width": pixel_counts, "height": pixel_counts}))


@st.composite
def jsonl_objects(draw):
    """One line's value: mostly objects shaped like the schema, sometimes any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    keys = {"image_url": image_urls(), "label": labels, "image_details": image_details,
            "extra": json_values}
    present = draw(st.sets(st.sampled_from(sorted(keys)), max_size=4)) | (
        {"image_url", "label"} if draw(st.integers(0, 3)) else set())
    return {key: draw(keys[key]) for key in sorted(present)}


def _encode(value, how: str) -> bytes:
    if how == "orjson":
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # integers past 64 bits
            how = "json"
    return json.dumps(value, allow_nan=True, ensure_ascii=(how == "ascii")).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted or the file cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(out)))
        if op == 0 and at < len(out):
            out[at] = draw(st.integers(0, 255))
        elif op == 1:
            out[at:at] = draw(st.sampled_from([b"\n", b"\r", b"\x00", b"\xff", b"{", b"]", b'"', b"\xef\xbb\xbf",
                                               b"\xed\xa0\x80", b"\\u0000", b"NaN"]))
        elif op == 2:
            del out[at:at + draw(st.integers(1, 8))]
        else:
            del out[at:]
    return bytes(out)


@st.composite
def jsonl_files(draw) -> bytes:
    """The bytes of a JSONL file: random bytes, schema-shaped lines, or such lines damaged."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=600))
    values = draw(st.lists(jsonl_objects(), min_size=0, max_size=8))
    how = draw(st.sampled_from(["orjson", "json", "ascii"]))
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \t\n"]))
    data = sep.join(_encode(v, how) for v in values)
    if draw(st.booleans()):
        data += b"\n"
    if draw(st.integers(0, 5)) == 0:
        data = b"\xef\xbb\xbf" + data
    if kind >= 7:
        data = draw(mutated(data))
    return data


_MLTABLE_VALUES = ["data.jsonl", "./data.jsonl", "sub/more.jsonl", "missing.jsonl", "../data.jsonl",
                   "sub/../../outside.jsonl", "sub", ".", "..", "*.jsonl", "**/*.jsonl", "sub/*.jsonl", "[",
                   "**x", "../*.jsonl", "/nonexistent/*", "/nonexistent/x.jsonl", "azureml://datastores/store/paths/x.jsonl",
                   "http://127.0.0.1:9/x.jsonl", "file:///nonexistent.jsonl", "", "  "]


@st.composite
def _mltable_entries(draw) -> dict:
    kind = draw(st.sampled_from(["file", "folder", "pattern", "url", "File"]))
    return {kind: draw(st.one_of(st.sampled_from(_MLTABLE_VALUES), st.text(max_size=10), json_values))}


@st.composite
def mltable_files(draw) -> bytes:
    """The bytes of an MLTable file: random bytes, random YAML, or ``paths:`` entries of every kind."""
    import yaml

    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return yaml.safe_dump(draw(json_values.filter(lambda v: not _huge_int(v)))).encode()
    entries = draw(st.lists(st.one_of(_mltable_entries(), json_values), max_size=4))
    doc = {"paths": entries} if draw(st.integers(0, 5)) else {"type": "mltable", "path": entries}
    text = yaml.safe_dump(doc, allow_unicode=True).encode()
    if kind == 2:  # YAML anchors, aliases and tags nothing in an MLTable should need
        text = b"a: &x [1, 2]\nb: *x\npaths: !!python/object/apply:os.getcwd []\n" + text
    if kind >= 8:
        text = draw(mutated(text))
    return text


def _huge_int(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > 2**63
    if isinstance(value, list):
        return any(map(_huge_int, value))
    if isinstance(value, dict):
        return any(map(_huge_int, value.values()))
    return False


def line_count(data: bytes) -> int:
    """Lines as the reader numbers them (Python's file iteration splits on b"\\n")."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def run_cli(argv: list[str]) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of ``visionml ARGV`` run in this process: an exception
    escaping ``main`` (what a user sees as a traceback) fails the caller's test."""
    from visionml.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - start


def fuzz_seconds() -> float | None:
    """``FUZZ_SECONDS`` (the long runs of `make fuzz`), or None in the suite."""
    value = os.environ.get("FUZZ_SECONDS")
    return float(value) if value else None
