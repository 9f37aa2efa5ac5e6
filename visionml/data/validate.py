"""Summaries of a loaded dataset: what ``visionml validate`` prints after the problems."""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np

from ..tasks import SEGMENTATION, is_detection_like
from .reader import LoadedData


def summarize(loaded: LoadedData) -> dict:
    """A JSON-ready summary: images, classes with counts (images per class for classification,
    boxes or polygons per class for detection/segmentation), image sizes."""
    records = loaded.records
    detection = loaded.task is not None and is_detection_like(loaded.task)
    # map/attrgetter keep the walk over (possibly millions of) records and objects in C.
    object_lists = list(map(attrgetter("objects"), records))
    labelled = sum(map(bool, map(attrgetter("label"), records)))
    key = ("polygons" if loaded.task == SEGMENTATION else "boxes") if detection else "images"
    counts = loaded.class_counts
    summary = {
        "task": loaded.task,
        "task_inferred": loaded.task_inferred,
        "sources": loaded.sources,
        "images": len(records),
        "distinct_image_files": len(set(map(attrgetter("path"), records))),
        "invalid_lines": len({(p.source, p.line) for p in loaded.problems}),
        "problems": len(loaded.problems),
        "classes": [{"name": name, key: counts.get(name, 0)} for name in loaded.labels],
        "images_without_labels": len(records) - labelled - sum(map(bool, object_lists)),
        "image_sizes": _sizes(records),
    }
    if detection:
        summary["objects"] = sum(map(len, object_lists))
        summary["crowd_objects"] = sum(map(attrgetter("is_crowd"), chain.from_iterable(object_lists)))
    return summary


def _sizes(records) -> dict | None:
    # None (size unknown) becomes NaN in a float array.
    widths = np.array(list(map(attrgetter("width"), records)), dtype=np.float64)
    heights = np.array(list(map(attrgetter("height"), records)), dtype=np.float64)
    known = ~(np.isnan(widths) | np.isnan(heights))
    if not known.any():
        return None
    w, h = widths[known], heights[known]
    return {"known": int(known.sum()),
            "min_width": int(w.min()), "max_width": int(w.max()), "median_width": int(np.median(w)),
            "min_height": int(h.min()), "max_height": int(h.max()), "median_height": int(np.median(h))}


def format_summary(summary: dict) -> str:
    """The summary as aligned plain text."""
    how = " (inferred from the labels)" if summary["task_inferred"] else ""
    task = summary["task"] or "unknown (no line with a usable label)"
    lines = [f"Task:    {task}{how if summary['task'] else ''}",
             f"Images:  {summary['images']} valid lines ({summary['distinct_image_files']} distinct image files), "
             f"{summary['invalid_lines']} invalid line(s)"]
    if "objects" in summary:
        lines.append(f"Objects: {summary['objects']} ({summary['crowd_objects']} marked isCrowd), "
                     f"{summary['images_without_labels']} image(s) with none")
    elif summary["images_without_labels"]:
        lines.append(f"Images with no label: {summary['images_without_labels']}")
    lines.extend(_class_table(summary["classes"]))
    sizes = summary["image_sizes"]
    if sizes:
        lines.append(f"Image sizes ({sizes['known']} known): {sizes['min_width']}x{sizes['min_height']} min, "
                     f"{sizes['median_width']}x{sizes['median_height']} median, "
                     f"{sizes['max_width']}x{sizes['max_height']} max (width x height)")
    else:
        lines.append("Image sizes: unknown (no image_details and the images were not opened)")
    return "\n".join(lines)


def _class_table(classes: list[dict]) -> list[str]:
    if not classes:
        return ["Classes: none"]
    key = next(k for k in ("images", "boxes", "polygons") if k in classes[0])
    width = max(len("class"), *(len(c["name"]) for c in classes))
    rows = [f"  {c['name']:<{width}}  {c[key]:>9}" for c in classes]
    return [f"Classes: {len(classes)}", f"  {'class':<{width}}  {key:>9}", *rows]
