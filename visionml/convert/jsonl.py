"""The JSONL schema (Azure AutoML for Images) <-> the canonical records."""

from __future__ import annotations

from pathlib import Path

import orjson

from ..tasks import get_task
from .common import Converted, Problems, atomic_file, image_info, image_url_for


def read_jsonl(path, *, task: str | None = None, skip_invalid: bool = False,
               datastores=None) -> Converted:
    """A JSONL file or MLTable, read and validated by the data layer (the same reader training
    uses). Sizes come from each image's header: pixel formats need the true size, whatever
    ``image_details`` claims."""
    from ..data.reader import read_dataset

    loaded = read_dataset(path, get_task(task) if task else None, datastores=datastores,
                          skip_invalid=skip_invalid)
    problems = Problems(loaded.problems)
    records = []
    for rec in loaded.records:
        try:
            info = image_info(_local(rec.path))
        except (OSError, ValueError) as exc:
            problems.add(rec.source, rec.line, f"image_url: {rec.path}: {exc}")
            continue
        rec.width, rec.height, rec.format = info.width, info.height, info.format
        records.append(rec)
    return Converted(loaded.task, list(loaded.labels), records, list(problems))


def _local(path: str) -> Path:
    from ..data.images import local_path

    return Path(local_path(path))


def jsonl_lines(data: Converted, out_dir: Path) -> list[bytes]:
    lines = []
    for rec in data.records:
        line = rec.to_json()
        line["image_url"] = image_url_for(rec.path, out_dir)
        lines.append(orjson.dumps(line))
    return lines


def write_jsonl(data: Converted, out: Path, *, force: bool = False) -> None:
    out = Path(out)
    lines = jsonl_lines(data, out.parent)
    with atomic_file(out, force) as tmp:
        tmp.write_bytes(b"".join(line + b"\n" for line in lines))
