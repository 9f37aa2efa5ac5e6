"""What ``visionml validate`` reports: the problems and a summary (images, classes with counts,
boxes/polygons per class, image sizes).

Two ways to the same summary: ``summarize`` over loaded records (after image checks), and
``scan_dataset`` which folds records into counts in batches and lets them go, for
``--no-image-check`` on huge files (keeping 200,000 records only to count them costs more than
reading them).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from itertools import chain
from operator import attrgetter

import numpy as np
import orjson

from ..tasks import EMPTY, get_task
from .duplicates import duplicate_notes
from .lines import to_record
from .problems import Problem, dropped_counts, raw_lines_for
from .reader import (LoadedData, choose_task, data_files, fitting_shapes, mismatch_problems, paused_gc, read_lines,
                     sort_problems)

_BATCH = 1024  # small enough that a batch is still in cache when it is counted and freed


class Tally:
    """Counts for the summary, folded in from batches of records. The walks use map/chain so
    that millions of objects are counted in C. ``paths``, ``widths`` and ``heights`` are per line
    (``sizes`` makes them one per image file)."""

    def __init__(self) -> None:
        self.lines = self.labelled = self.with_objects = self.objects = self.crowd = 0
        self.names: Counter = Counter()
        self.paths: list[str] = []
        self.widths: list = []
        self.heights: list = []
        self.distinct: int | None = None
        """The number of image files, once counted."""

    def add(self, records) -> None:
        object_lists = list(map(attrgetter("objects"), records))
        objects = list(chain.from_iterable(object_lists))
        labels = [label for label in map(attrgetter("label"), records) if label]
        self.lines += len(records)
        self.labelled += len(labels)
        self.with_objects += sum(map(bool, object_lists))
        self.objects += len(objects)
        self.crowd += sum(map(attrgetter("is_crowd"), objects))
        self.names.update(map(attrgetter("label"), objects))
        self.names.update(label for label in labels if type(label) is str)
        self.names.update(chain.from_iterable(label for label in labels if type(label) is not str))
        self.paths.extend(map(attrgetter("path"), records))
        self.widths.extend(map(attrgetter("width"), records))
        self.heights.extend(map(attrgetter("height"), records))

    def merge(self, other: Tally) -> None:
        for name in ("lines", "labelled", "with_objects", "objects", "crowd"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.names.update(other.names)
        self.paths += other.paths
        self.widths += other.widths
        self.heights += other.heights

    def sizes(self, distinct: int) -> tuple[list, list]:
        """(widths, heights), one per image file (the last line's, as the merged record has it);
        ``distinct`` is the number of image files."""
        if distinct == len(self.paths):
            return self.widths, self.heights
        by_path = dict(zip(self.paths, zip(self.widths, self.heights)))
        return [w for w, _ in by_path.values()], [h for _, h in by_path.values()]


def summarize(loaded: LoadedData) -> dict:
    """The summary of loaded (and possibly image-checked) records."""
    tally = Tally()
    tally.add(loaded.records)
    return _summary(loaded.task, loaded.task_inferred, loaded.sources, loaded.problems, loaded.warnings, tally,
                    loaded.kept_lines)


def scan_dataset(path, task: str | None = None, *, datastores: dict[str, str] | None = None
                 ) -> tuple[dict, list[Problem], list[Problem]]:
    """(summary, problems, warnings) of the lines of ``path`` without opening images or keeping
    records: the same answer as ``load_dataset(..., check_images=False)`` + ``summarize``."""
    wanted = get_task(task) if task else None
    sources = data_files(path, datastores or {})
    tallies: dict[str, Tally] = defaultdict(Tally)
    batches: dict[str, list] = defaultdict(list)
    # source -> shape -> line numbers (plain ints: nothing for the garbage collector to walk later),
    # kept to report the lines whose shape turns out not to fit the task, and (with the tallies'
    # paths) duplicate image_url lines.
    where: dict[str, dict[str, list[int]]] = {source: defaultdict(list) for source in sources}
    problems: list[Problem] = []
    warnings: list[Problem] = []
    with paused_gc():
        for source in sources:
            lines = where[source]

            def fold(record, shape: str, lines=lines) -> None:
                batch = batches[shape]
                batch.append(record)
                lines[shape].append(record.line)
                if len(batch) >= _BATCH:
                    tallies[shape].add(batch)
                    batch.clear()

            read_lines(source, wanted, datastores or {}, fold, problems, warnings)
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
        total = Tally()
        for shape in fits & tallies.keys():
            total.merge(tallies[shape])
        overruled = _duplicates(final, sources, where, tallies, fits, total, problems, warnings, datastores or {})
        sort_problems(problems, sources)
        sort_problems(warnings, sources)
        return (_summary(final, inferred, sources, problems, warnings, total, total.lines - overruled),
                problems, warnings)


def _duplicates(task, sources, where, tallies, fits, total: Tally, problems, warnings, datastores) -> int:
    """Report duplicate image_url lines as ``load_dataset`` does, and correct the counts to what
    training gets (one image per file); returns the number of lines overruled. The lines of
    duplicated images are read again for their labels: nothing per line is kept for this."""
    total.distinct = len(set(total.paths))
    if task is None or total.distinct == total.lines:  # no image file named twice: the common case
        return 0
    repeated = {path for path, n in Counter(total.paths).items() if n > 1}
    order = {source: i for i, source in enumerate(sources)}
    refs = []
    for shape in fits & tallies.keys():  # a shape's tally holds its lines' paths in file order
        lines = ((s, line) for s in sources for line in where[s].get(shape, ()))
        refs += [(order[s], line, s, path, shape) for (s, line), path in zip(lines, tallies[shape].paths)
                 if path in repeated]
    refs.sort()
    raw = raw_lines_for([(s, line) for _, line, s, _, _ in refs])
    groups: dict[str, list] = defaultdict(list)
    for _, line, source, path, shape in refs:
        groups[path].append((source, line, _label_of(task, raw[(source, line)], source, line, shape, datastores)))
    overruled = 0
    for entries in groups.values():
        found, notes, kept = duplicate_notes(task, [(s, n, label) for s, n, (label, _) in entries])
        for p in found:
            p.raw = raw[(p.source, p.line)]
        problems += found
        warnings += notes
        overruled += len(found)
        if task.objects:
            with_objects = sum(has for _, _, (_, has) in entries)
            total.with_objects -= with_objects - (1 if with_objects else 0)
            continue
        for k, (_, _, (label, _)) in enumerate(entries):
            if k != kept:  # only the kept line's label trains
                total.names.subtract([label] if type(label) is str else label)
                total.labelled -= bool(label)
    total.names = +total.names  # drop the classes left with no image
    return overruled


def _label_of(task, text: str, source: str, line: int, shape: str, datastores) -> tuple:
    """(label, has objects) of one line as the reader reads it."""
    base = os.path.join(os.path.dirname(os.path.abspath(source)), "")
    record, _ = to_record(orjson.loads(text), source, line, base, datastores, task, [])
    if shape == EMPTY:
        task.empty_label(record)
    return record.label, bool(record.objects)


def _summary(task, inferred: bool, sources, problems, warnings, tally: Tally, lines: int) -> dict:
    task = get_task(task) if task is not None else None
    detection = task is not None and task.objects
    key = task.summary_key() if task is not None else "images"
    images = tally.distinct if tally.distinct is not None else len(set(tally.paths))
    widths, heights = tally.sizes(images)
    summary = {
        "task": task.name if task is not None else None,
        "task_inferred": inferred,
        "sources": list(sources),
        "images": lines,
        "distinct_image_files": images,
        "invalid_lines": len({(p.source, p.line) for p in problems}),
        "problems": len(problems),
        "warnings": len(warnings),
        "left_out": dropped_counts(problems),
        "classes": [{"name": name, key: tally.names[name]} for name in sorted(tally.names)],
        "images_without_labels": images - tally.labelled - tally.with_objects,
        "image_sizes": _sizes(widths, heights),
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
             (f"Images:  {summary['images']} lines kept ({summary['distinct_image_files']} distinct image files), "
             f"{summary['invalid_lines']} line(s) with problems")]
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
