"""Converters between labelling-tool formats and the JSONL schema.

Every source format is read into a :class:`~visionml.convert.common.Converted` (canonical
``ImageRecord``s, normalised coordinates, class names in the source's order, problems found);
every target format is written from one. ``convert`` ties a reader to a writer; the readers and
writers are plain functions that can be called on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError, VisionMLError
from .common import DEFAULT_MAX_POLYGON_POINTS, Converted, ConvertProblem

FROM_FORMATS = ("coco", "voc", "yolo", "imagefolder", "csv", "masks", "jsonl")
TO_FORMATS = ("jsonl", "coco", "yolo")

__all__ = ["FROM_FORMATS", "TO_FORMATS", "ConvertOptions", "ConvertResult", "Converted",
           "ConvertProblem", "convert", "read_source", "write_output"]


@dataclass(slots=True)
class ConvertOptions:
    images: Path | None = None
    task: str | None = None
    split: str | None = None
    separator: str | None = None
    max_polygon_points: int = DEFAULT_MAX_POLYGON_POINTS
    voc_difficult: str = "keep"
    mask_label: str = "object"
    skip_invalid: bool = False
    force: bool = False
    datastores: dict | None = None


@dataclass(slots=True)
class ConvertResult:
    data: Converted
    notes: list[str] = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        return sum(len(r.objects) for r in self.data.records)


def read_source(src, fmt: str, opts: ConvertOptions) -> Converted:
    """Read ``src`` in format ``fmt``; problems are collected, not raised (see ``convert``)."""
    from . import coco, csvlabels, imagefolder, jsonl, masks, voc, yolo

    readers = {
        "coco": lambda: coco.read_coco(src, images_dir=opts.images, task=opts.task,
                                       max_polygon_points=opts.max_polygon_points),
        "voc": lambda: voc.read_voc(src, images_dir=opts.images, task=opts.task,
                                    split=opts.split, difficult_mode=opts.voc_difficult),
        "yolo": lambda: yolo.read_yolo(src, task=opts.task, split=opts.split),
        "imagefolder": lambda: imagefolder.read_imagefolder(src, task=opts.task),
        "csv": lambda: csvlabels.read_csv_labels(src, images_dir=opts.images, task=opts.task,
                                                 separator=opts.separator),
        "masks": lambda: masks.read_masks(src, images_dir=opts.images, task=opts.task,
                                          label=opts.mask_label,
                                          max_polygon_points=opts.max_polygon_points),
        "jsonl": lambda: jsonl.read_jsonl(src, task=opts.task, skip_invalid=opts.skip_invalid,
                                          datastores=opts.datastores),
    }
    if fmt not in readers:
        raise UsageError(f"--from {fmt}: choose one of {', '.join(FROM_FORMATS)}")
    if not Path(src).exists():
        raise VisionMLError(f"{src}: not found")
    return readers[fmt]()


def write_output(data: Converted, fmt: str, out, opts: ConvertOptions) -> list[str]:
    """Write ``data`` as ``fmt`` to ``out`` (never half-written; an existing ``out`` only with
    ``force``). Returns notes for the user."""
    from . import coco, jsonl, yolo

    if fmt == "jsonl":
        jsonl.write_jsonl(data, out, force=opts.force)
        return []
    if fmt == "coco":
        coco.write_coco(data, out, force=opts.force)
        return []
    if fmt == "yolo":
        return yolo.write_yolo(data, out, force=opts.force, split=opts.split or "train")
    raise UsageError(f"--to {fmt}: choose one of {', '.join(TO_FORMATS)}")


def convert(src, from_fmt: str, to_fmt: str, out, opts: ConvertOptions | None = None
            ) -> ConvertResult:
    """Read, check, write. Any problem in the source stops the conversion with the full report
    (nothing written) unless ``opts.skip_invalid``, which drops exactly the objects and images
    named in ``result.data.problems``."""
    opts = opts or ConvertOptions()
    data = read_source(src, from_fmt, opts)
    if data.problems and not opts.skip_invalid:
        raise VisionMLError(problem_report(data.problems, src))
    if not data.records:
        raise VisionMLError(f"{src}: no usable images; nothing to write")
    notes = list(data.notes) + write_output(data, to_fmt, out, opts)
    return ConvertResult(data, notes)


def problem_report(problems, src) -> str:
    """Every problem, one per line: the user fixes them all in one pass."""
    lines = "\n".join(str(p) for p in problems)
    return (f"{len(problems)} problem(s) in {src}; nothing was written. Fix them, or pass "
            f"--skip-invalid to leave out the objects and images named:\n{lines}")
