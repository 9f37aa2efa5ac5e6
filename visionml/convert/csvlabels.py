"""A CSV of image names and labels -> multi-label records.

Two layouts, told apart by the header: ``filename,labels`` (two columns, the labels inside the
second split by ``separator``, default whitespace) or one-hot ``filename,cat,dog,...`` with 0/1
values. The first row is always the header. Image names are relative to ``--images`` (default:
the CSV's folder); a name without a suffix matches any image suffix. Rows that name the same
image make one record: their labels joined for multi-label (a row per label is a common layout),
the same label for multi-class, or a problem when they disagree.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import VisionMLError
from ..tasks import CLASS, CLASSES
from .common import Converted, Problems, converter_task, find_image, new_record, open_image


def read_csv_labels(src, *, images_dir=None, task: str | None = None,
                    separator: str | None = None) -> Converted:
    src = Path(src)
    task = converter_task(task, (CLASSES, CLASS), "CSV labels are classification data")
    single = CLASS in task.label_shapes
    folder = Path(images_dir) if images_dir else src.parent
    header, body = _rows(src)
    one_hot = len(header) > 2
    problems = Problems()
    records = {}  # absolute image path -> its one record, however many rows name it (in row order)
    for line, row in body:
        labels = _labels(row, header, one_hot, separator, problems, src, line)
        if labels is None:
            continue
        if single and len(labels) != 1:
            problems.add(src, line, f"multi-class needs exactly one label per image, got {labels}")
            continue
        image = _image(folder, row[0])
        earlier = records.get(os.path.abspath(image))
        if earlier is not None:  # a row per label (multi-label), or the same image twice
            if not single:
                earlier.label += [lb for lb in labels if lb not in earlier.label]
            elif labels[0] != earlier.label:
                problems.add(src, line, f"{row[0]} is labelled {earlier.label!r} on line {earlier.line} and "
                                        f"{labels[0]!r} here: multi-class takes one label per image")
            continue
        info = open_image(image, problems, src, line)
        if info is None:
            continue
        rec = new_record(image, info, src, line)
        rec.label = labels[0] if single else list(dict.fromkeys(labels))
        records[rec.path] = rec
    names = header[1:] if one_hot else sorted({lb for r in records.values() for lb in _as_list(r.label)})
    return Converted(task, list(names), list(records.values()), list(problems))


def _rows(src: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, row)]), blank rows skipped."""
    try:
        text = src.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise VisionMLError(f"{src}: cannot read the CSV ({exc})") from None
    delimiter = "\t" if src.suffix.lower() == ".tsv" else ","
    rows = [(n, [c.strip() for c in row]) for n, row in
            enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1) if any(row)]
    if len(rows) < 2 or len(rows[0][1]) < 2:
        raise VisionMLError(f"{src}: expected a header row ('filename,labels' or "
                            "'filename,class1,class2,...') and at least one data row")
    return rows[0][1], rows[1:]


def _labels(row, header, one_hot, separator, problems, src, line) -> list[str] | None:
    if len(row) != len(header):
        problems.add(src, line, f"{len(row)} columns, the header has {len(header)}")
        return None
    if not row[0]:
        problems.add(src, line, "the image name (first column) is empty")
        return None
    if not one_hot:
        return [lb for lb in (row[1].split(separator) if separator else row[1].split())
                if lb.strip()]
    bad = [h for h, v in zip(header[1:], row[1:]) if v not in ("0", "1")]
    if bad:
        problems.add(src, line, f"one-hot columns {bad} must be 0 or 1")
        return None
    return [h for h, v in zip(header[1:], row[1:]) if v == "1"]


def _image(folder: Path, name: str) -> Path:
    path = folder / name
    if path.is_file() or Path(name).suffix:
        return path
    return find_image(path.parent, path.name) or path


def _as_list(label) -> list[str]:
    return label if isinstance(label, list) else [label]
