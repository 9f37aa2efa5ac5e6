"""Batch scoring for ``visionml predict``: inputs (images, folders, JSONL files) -> JSON lines.

Each output line is exactly the object the REST endpoint returns for that image, with
``filename`` set to the input (the path, or the JSONL's ``image_url``).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import VisionMLError
from ..fileio import atomic_path
from .decode import DecodeError, read_header

from ..data.images import IMAGE_EXTENSIONS  # one list with validate's (gif and webp too)
JSONL_EXTENSIONS = {".jsonl", ".json"}


@dataclass(frozen=True)
class Input:
    name: str  # the output's ``filename``
    location: str  # a local path or an http(s) URL


def collect_inputs(paths: list[str], datastores: dict | None = None) -> tuple[list[Input], list[str]]:
    """Every image the command-line inputs name, in order, and the problems found on the way
    (missing paths, bad JSONL lines) as ``WHERE: reason`` strings."""
    inputs, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                problems.append(f"{raw}: no images in this folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
            inputs.extend(Input(str(p), str(p)) for p in found)
        elif path.suffix.lower() in JSONL_EXTENSIONS and path.is_file():
            _jsonl_inputs(path, datastores or {}, inputs, problems)
        elif path.is_file():
            inputs.append(Input(raw, raw))
        else:
            problems.append(f"{raw}: no such file or folder")
    return inputs, problems


def _jsonl_inputs(path: Path, datastores: dict, inputs: list, problems: list) -> None:
    from ..data.resolve import resolve_image_url

    root = str(path.resolve().parent)
    with open(path, "rb") as fp:
        for number, line in enumerate(fp, 1):
            line = line.strip().removeprefix(b"\xef\xbb\xbf")
            if not line:
                continue
            try:
                url = orjson.loads(line)["image_url"]
                if not isinstance(url, str):
                    raise ValueError("must be a string")
                inputs.append(Input(url, resolve_image_url(url, root, datastores)))
            except orjson.JSONDecodeError as exc:
                problems.append(f"{path}:{number}: not valid JSON ({exc})")
            except (KeyError, TypeError):
                problems.append(f"{path}:{number}: image_url: missing")
            except ValueError as exc:
                problems.append(f"{path}:{number}: image_url: {exc}")


def _load(item: Input, predictor):
    """``(image, None)`` or ``(None, problem)``: an unreadable image, or one the model cannot take
    (checked from its header, before decoding), is reported, not fatal."""
    from ..data.images import local_path

    try:
        encoded = read_header(local_path(item.location), predictor.max_pixels)
        problem = predictor.size_problem(encoded.width, encoded.height)
        if problem:
            return None, f"{item.name}: {problem}"
        return encoded.decode(predictor.max_pixels), None
    except (DecodeError, ValueError, OSError) as exc:
        return None, f"{item.name}: {exc}"


def score_inputs(predictor, inputs: list[Input], write, batch_size: int, progress=None) -> list[str]:
    """Score ``inputs`` in batches, calling ``write(obj)`` for each result in input order; returns
    the problems (unreadable images). The next batch is decoded in threads while the model runs."""
    problems: list[str] = []
    chunks = [inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        submit = lambda chunk: [pool.submit(_load, item, predictor) for item in chunk]  # noqa: E731
        pending = submit(chunks[0]) if chunks else []
        for k, chunk in enumerate(chunks):
            loaded = [f.result() for f in pending]
            pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
            good = [(item, image) for item, (image, _) in zip(chunk, loaded) if image is not None]
            problems.extend(problem for _, problem in loaded if problem)
            if good:
                images = [image for _, image in good]
                raws = predictor.raw_predict(images, batch_size=batch_size)
                for (item, image), raw in zip(good, raws):
                    write(predictor.to_output(raw, image, item.name))
            if progress is not None:
                progress.update(len(chunk))
    return problems


class JsonLinesOut:
    """JSON lines to a file, written atomically (``fileio.atomic_path``: a temporary file renamed at
    the end, removed if the run fails or is interrupted), or to stdout when no path is given."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self._fp = None
        self._stack = ExitStack()
        self.written = 0

    def __enter__(self):
        if self.path is None:
            self._fp = sys.stdout.buffer
            return self
        folder = self.path.resolve().parent
        if not folder.is_dir():
            raise VisionMLError(f"--output {self.path}: the folder {folder} does not exist")
        with ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._fp = stack.enter_context(open(tmp, "wb"))
            self._stack = stack.pop_all()
        return self

    def write(self, obj: dict) -> None:
        self._fp.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
        self.written += 1

    def __exit__(self, exc_type, exc, tb):
        if self.path is None:
            self._fp.flush()
            return None
        # Closes the file (a full disk may only show here), then renames it or removes it.
        return self._stack.__exit__(exc_type, exc, tb)
