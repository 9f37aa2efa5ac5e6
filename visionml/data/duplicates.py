"""Duplicate ``image_url`` lines, as Azure trains on them.

Detection and segmentation merge the lines' objects into one image (Azure keys its annotations
by image: ``object_detection/data/datasets.py``); classification trains on the last line's label
(a dict from file to label: ``classification/io/read/dataset_wrappers.py``). Both are reported:
a merge, or a repeat with the same label, as a warning; an earlier label overruled by a later
one as a problem (that line's label is lost). ``validate`` applies the same rules to the counts
it streams (``validate.scan_dataset``).
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

from ..tasks import get_task
from .lines import shown
from .problems import IMAGE, WARNING, Problem, raw_lines_for
from .records import ImageRecord


def duplicate_notes(task, entries: list[tuple[str, int, object]]) -> tuple[list[Problem], list[Problem], int]:
    """(problems, warnings, which entry's label trains) for the lines naming one image, given as
    ``(source, line, label)`` in file order. Detection and segmentation merge the lines' objects
    into the first line's image (Azure: ``datasets.py``); classification trains on the last
    line's label (Azure: a dict from file to label), so an earlier line with another label is
    overruled: a problem (its label is lost); one with the same label, a warning."""
    task = get_task(task)
    if task.objects:
        source, line, _ = entries[0]
        return [], [Problem(s, n, "image_url", f"the same image as {source}:{line}; its objects are added to that "
                                               "line's, as Azure merges the lines of one image", None, WARNING,
                            "duplicate image_url merged") for s, n, _ in entries[1:]], 0
    last_source, last_line, final = entries[-1]
    problems, warnings = [], []
    for s, n, label in entries[:-1]:
        if _same_label(label, final):
            warnings.append(Problem(s, n, "image_url", f"the same image and label as {last_source}:{last_line}; "
                                                       "counted once", None, WARNING, "duplicate image_url"))
        else:
            problems.append(Problem(s, n, "label", f"{shown(label)} is overruled: {last_source}:{last_line} labels the "
                                                   f"same image {shown(final)}, and Azure trains on the last line's "
                                                   "label", None, IMAGE, "duplicate image_url, another label"))
    return problems, warnings, len(entries) - 1


def _same_label(a, b) -> bool:
    return set(a) == set(b) if type(a) is list and type(b) is list else a == b


def merge_duplicates(task, records: list[ImageRecord], problems: list, warnings: list) -> tuple[list, int]:
    """(one record per image, number of lines overruled): duplicate ``image_url`` lines as Azure
    trains on them (``duplicate_notes``), each reported."""
    paths = list(map(attrgetter("path"), records))
    if len(set(paths)) == len(paths):  # the common case, checked in C
        return records, 0
    first: dict[str, int] = {}
    groups: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        j = first.setdefault(path, i)
        if j != i:
            groups.setdefault(j, [j]).append(i)
    task, gone, overruled = get_task(task), set(), []
    for j, members in groups.items():
        found, notes, kept = duplicate_notes(task, [(records[k].source, records[k].line, records[k].label)
                                                    for k in members])
        overruled += found
        warnings += notes
        last = records[members[-1]]
        if task.objects:
            merged = records[j]
            merged.objects = merged.objects + list(chain.from_iterable(records[k].objects for k in members[1:]))
            merged.width, merged.height, merged.format = last.width, last.height, last.format
        else:
            records[j] = records[members[kept]]
        gone.update(members[1:])
    raw = raw_lines_for([(p.source, p.line) for p in overruled])
    for p in overruled:
        p.raw = raw.get((p.source, p.line))
    problems += overruled
    return [r for i, r in enumerate(records) if i not in gone], len(overruled)
