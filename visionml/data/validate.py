"""What ``visionml validate`` reports: the problems and a summary (images, classes with counts,
boxes/polygons per class, image sizes).

Two ways to the same summary: ``summarize`` over loaded records (after image checks), and
``scan_dataset`` which folds records into counts in batches and lets them go, for
``--no-image-check`` on huge files (keeping 200,000 records only to count them costs more than
reading them).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import chain
from operator import attrgetter

import numpy as np

from ..tasks import get_task
from .reader import (LoadedData, Problem, choose_task, data_files, fitting_shapes, mismatch_problems, paused_gc,
                     read_lines, sort_problems)

_BATCH = 1024  # small enough that a batch is still in cache when it is counted and freed


class Tally:
    """Counts for the summary, folded in from batches of records. The walks use map/chain so
    that millions of objects are counted in C."""

    def __init__(self) -> None:
        self.images = self.labelled = self.with_objects = self.objects = self.crowd = 0
        self.names: Counter = Counter()
        self.paths: set[str] = set()
        self.widths: list = []
        self.heights: list = []

    def add(self, records) -> None:
        object_lists = list(map(attrgetter("objects"), records))
        objects = list(chain.from_iterable(object_lists))
        labels = [label for label in map(attrgetter("label"), records) if label]
        self.images += len(records)
        self.labelled += len(labels)
        self.with_objects += sum(map(bool, object_lists))
        self.objects += len(objects)
        self.crowd += sum(map(attrgetter("is_crowd"), objects))
        self.names.update(map(attrgetter("label"), objects))
        self.names.update(label for label in labels if type(label) is str)
        self.names.update(chain.from_iterable(label for label in labels if type(label) is not str))
        self.paths.update(map(attrgetter("path"), records))
        self.widths.extend(map(attrgetter("width"), records))
        self.heights.extend(map(attrgetter("height"), records))

    def merge(self, other: Tally) -> None:
        for name in ("images", "labelled", "with_objects", "objects", "crowd"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.names.update(other.names)
        self.paths.update(other.paths)
        self.widths.extend(other.widths)
        self.heights.extend(other.heights)


def summarize(loaded: LoadedData) -> dict:
    """The summary of loaded (and possibly image-checked) records."""
    tally = Tally()
    tally.add(loaded.records)
    return _summary(loaded.task, loaded.task_inferred, loaded.sources, loaded.problems, tally)


def scan_dataset(path, task: str | None = None, *, datastores: dict[str, str] | None = None
                 ) -> tuple[dict, list[Problem]]:
    """(summary, problems) of the lines of ``path`` without opening images or keeping records:
    the same answer as ``load_dataset(..., check_images=False)`` + ``summarize``."""
    wanted = get_task(task) if task else None
    sources = data_files(path, datastores or {})
    tallies: dict[str, Tally] = defaultdict(Tally)
    batches: dict[str, list] = defaultdict(list)
    # source -> shape -> line numbers (plain ints: nothing for the garbage collector to walk later),
    # kept to report the lines whose shape turns out not to fit the task.
    where: dict[str, dict[str, list[int]]] = {source: defaultdict(list) for source in sources}
    problems: list[Problem] = []
    with paused_gc():
        for source in sources:
            lines = where[source]

            def fold(record, shape: str) -> None:
                batch = batches[shape]
                batch.append(record)
                lines[shape].append(record.line)
                if len(batch) >= _BATCH:
                    tallies[shape].add(batch)
                    batch.clear()

            read_lines(source, wanted, datastores or {}, fold, problems)
        for shape, batch in batches.items():
            tallies[shape].add(batch)
        shape_counts = Counter()
        for by_shape in where.values():
            shape_counts.update({shape: len(numbers) for shape, numbers in by_shape.items()})
        final, inferred = choose_task(wanted, shape_counts, sources)
        fits = fitting_shapes(final) if final else set()
        if final:
            odd = [(source, line, shape) for source, by_shape in where.items() for shape, numbers in by_shape.items()
                   if shape not in fits for line in numbers]
            problems.extend(mismatch_problems(final, inferred, odd))
        sort_problems(problems, sources)
        total = Tally()
        for shape in fits & tallies.keys():
            total.merge(tallies[shape])
        return _summary(final, inferred, sources, problems, total), problems


def _summary(task, inferred: bool, sources, problems, tally: Tally) -> dict:
    task = get_task(task) if task is not None else None
    detection = task is not None and task.objects
    key = task.summary_key() if task is not None else "images"
    summary = {
        "task": task.name if task is not None else None,
        "task_inferred": inferred,
        "sources": list(sources),
        "images": tally.images,
        "distinct_image_files": len(tally.paths),
        "invalid_lines": len({(p.source, p.line) for p in problems}),
        "problems": len(problems),
        "classes": [{"name": name, key: tally.names[name]} for name in sorted(tally.names)],
        "images_without_labels": tally.images - tally.labelled - tally.with_objects,
        "image_sizes": _sizes(tally.widths, tally.heights),
    }
    if detection:
        summary["objects"] = tally.objects
        summary["crowd_objects"] = tally.crowd
    return summary


def _sizes(widths: list, heights: list) -> dict | None:
    """The smallest, median and largest image by pixel count, each an image of the data (minimum
    and maximum per axis would pair the width of one image with the height of another)."""
    # None (size unknown) becomes NaN in a float array.
    w = np.array(widths, dtype=np.float64)
    h = np.array(heights, dtype=np.float64)
    known = ~(np.isnan(w) | np.isnan(h))
    if not known.any():
        return None
    w, h = w[known], h[known]
    order = np.argsort(w * h, kind="stable")  # ties: the first one counted

    def image(i) -> dict:
        return {"width": int(w[i]), "height": int(h[i])}

    return {"known": int(known.sum()), "min": image(order[0]), "median": image(order[(len(order) - 1) // 2]),
            "max": image(order[-1])}


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
        lines.append(f"Image sizes ({sizes['known']} known): " + ", ".join(
            f"{sizes[k]['width']}x{sizes[k]['height']} {k}" for k in ("min", "median", "max"))
            + " (width x height, by pixel count)")
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
