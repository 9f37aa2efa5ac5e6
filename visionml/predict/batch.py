"""Batch scoring for ``visionml predict``: inputs (images, folders, JSONL files) -> JSON lines.

Each output line is exactly the object the REST endpoint returns for that image, with
``filename`` set to the input (the path, or the JSONL's ``image_url``). Beside it, as Azure's batch
scoring writes them: the masks of an instance segmentation model as image files
(``export_as_image``: ``MaskFiles``) and the predictions as a labeled data set in the training
JSONL schema (``--labeled-dataset``: ``labeled_line``), each through a sink ``score_inputs`` calls.
"""

from __future__ import annotations

import io
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from ..errors import VisionMLError
from ..fileio import atomic_path, write_bytes_atomic
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


def score_inputs(predictor, inputs: list[Input], write, batch_size: int, progress=None, sinks=()) -> list[str]:
    """Score ``inputs`` in batches, calling ``write(obj)`` for each result in input order, and each of
    ``sinks`` with ``(input, raw, obj)`` after it; returns the problems (unreadable images). The next
    batch is decoded in threads while the model runs."""

    def score(good):
        raws = predictor.raw_predict([image for _, image in good], batch_size=batch_size)
        for (item, image), raw in zip(good, raws):
            obj = predictor.to_output(raw, image, item.name)
            write(obj)
            for sink in sinks:
                sink(item, raw, obj)

    return _in_batches(predictor, inputs, batch_size, progress, score)


def featurize_inputs(predictor, inputs: list[Input], write, batch_size: int, progress=None) -> list[str]:
    """``score_inputs`` for ``visionml featurize``: ``write({"filename", "feature_vector"})`` per image."""

    def featurize(good):
        vectors = predictor.features([image for _, image in good], batch_size=batch_size)
        for (item, _), vector in zip(good, vectors):
            write(predictor.feature_output(vector, item.name))

    return _in_batches(predictor, inputs, batch_size, progress, featurize)


def _in_batches(predictor, inputs: list[Input], batch_size: int, progress, handle) -> list[str]:
    """Decode ``inputs`` a batch at a time (the next one in threads while ``handle`` runs on this one's
    ``[(input, image)]``, in input order); returns the problems (unreadable images)."""
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
                handle(good)
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


# -- masks as image files (Azure's export_as_image, object_detection/common/object_detection_utils.py) --

class MaskFiles:
    """Each instance's mask as an image (0 background, 255 the object, the image's own size), named as
    Azure's batch scoring names them: ``FOLDER/masks/ROOT/LABEL/ROOT_I_label_LABEL_conf_CCCC.TYPE``,
    ROOT the input's file name up to its first dot, I the box's index in the line's ``boxes`` (Azure's
    line has no field naming the file: the index links them), CCCC the score's digits. Two inputs
    with the same ROOT (a/x.jpg and b/x.jpg) would overwrite each other's masks in Azure; here the
    second gets ROOT_2. Each file is written atomically."""

    def __init__(self, folder, labels: list[str], image_type: str):
        self.folder = Path(folder) / "masks"
        self.labels = list(labels)
        self.suffix = image_type.lower()
        self.written = 0
        self._roots: dict[str, str] = {}  # ROOT -> the input that has it

    def __call__(self, item: Input, raw: dict, obj: dict) -> None:
        from PIL import Image

        root = self._root(item)
        for index, (mask, label_index, score) in enumerate(zip(raw["masks"], raw["labels"], raw["scores"])):
            label = _safe_part(self.labels[int(label_index)])
            name = f"{root}_{index}_label_{label}_conf_{str(float(score)).replace('.', '')[:4]}.{self.suffix}"
            image = Image.fromarray((np.asarray(mask, dtype=bool) * np.uint8(255)).astype(np.uint8), mode="L")
            buffer = io.BytesIO()
            image.save(buffer, format=_PIL_FORMATS[self.suffix])
            write_bytes_atomic(self.folder / root / label / name, buffer.getvalue())
            self.written += 1

    def _root(self, item: Input) -> str:
        base = _safe_part(os.path.basename(item.name.rstrip("/")).split(".")[0]) or "image"
        root, n = base, 1
        while self._roots.setdefault(root, item.location) != item.location:
            n += 1
            root = f"{base}_{n}"
        return root


_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP"}


def _safe_part(text: str) -> str:
    """``text`` as one path component: folder separators and NUL replaced."""
    return re.sub(r"[/\\\x00]", "_", text).strip() or "_"


# -- the labeled data set (Azure's labeled_dataset.json, in the training JSONL schema) ---------------

MULTILABEL_LABEL_THRESHOLD = 0.5
"""A multi-label image's label: the classes whose probability is above this (Azure's 0.5)."""


def labeled_line(task, obj: dict, image_url: str) -> dict:
    """One line of ``--labeled-dataset``: the prediction ``obj`` as a training JSONL line for
    ``image_url``, ``label`` in the shape the task trains on (``Task.inferred_from``) and
    ``label_confidence`` beside it, as Azure's labeled data set has it: object detection and instance
    segmentation a list of objects (``topX``..., ``label``, and ``polygon``) with a list of scores, as
    Azure writes them; multi-label the classes above ``MULTILABEL_LABEL_THRESHOLD`` with their
    probabilities; multi-class the predicted class with its probability (Azure lists every class and
    every probability there, which is no training label)."""
    from ..tasks.base import BOXES, CLASS, CLASSES, POLYGONS

    shape = task.inferred_from
    if shape in (BOXES, POLYGONS):
        boxes = obj["boxes"]
        if shape == POLYGONS:  # a mask too small for a contour has no polygon to train on
            boxes = [b for b in boxes if b.get("polygon")]
        label = [{**b["box"], "label": b["label"], **({"polygon": b["polygon"]} if "polygon" in b else {})}
                 for b in boxes]
        return {"image_url": image_url, "label": label, "label_confidence": [b["score"] for b in boxes]}
    probs, labels = obj["probs"], obj["labels"]
    if shape == CLASS:
        best = int(np.argmax(probs))
        return {"image_url": image_url, "label": labels[best], "label_confidence": probs[best]}
    if shape == CLASSES:
        chosen = [i for i, p in enumerate(probs) if p > MULTILABEL_LABEL_THRESHOLD]
        return {"image_url": image_url, "label": [labels[i] for i in chosen],
                "label_confidence": [probs[i] for i in chosen]}
    raise VisionMLError(f"--labeled-dataset: a {task.name} model's predictions have no training label form")


class LabeledDataset:
    """The ``--labeled-dataset`` sink: ``labeled_line`` for each prediction into a JSON lines file
    (atomic, like ``--output``). ``image_url`` is the image's path relative to the file's folder when
    the image is inside it, else absolute (a URL stays as given), so ``visionml train`` and
    ``visionml validate`` find the images from the file wherever they are run."""

    def __init__(self, path, task):
        self.task = task
        self.out = JsonLinesOut(path)
        self.folder = Path(path).resolve().parent

    def __enter__(self):
        self.out.__enter__()
        return self

    def __exit__(self, *exc):
        return self.out.__exit__(*exc)

    def __call__(self, item: Input, raw, obj: dict) -> None:
        self.out.write(labeled_line(self.task, obj, self._url(item.location)))

    def _url(self, location: str) -> str:
        if "://" in location:
            return location
        path = Path(location).resolve()
        return path.relative_to(self.folder).as_posix() if path.is_relative_to(self.folder) else str(path)
