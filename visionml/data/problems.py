"""What is wrong with a line of data, and what training does about it.

Every problem is ``FILE:LINE: field: reason`` plus its ``training`` outcome: what a run with
``ignore_data_errors=true`` (Azure's default) does with the line, following Azure's own code
(``reference/azure-parity.md``, docs/data.md):

* ``dropped image``: the whole line is left out (bad JSON, no ``image_url``, a label of the wrong
  shape, a missing or undecodable image, ... and a line whose objects were all dropped);
* ``dropped object``: ``label[i]`` is left out, the rest of the line trains (a box outside [0, 1]
  or inverted, a polygon with no usable segment left);
* ``dropped segment``: ``label[i].polygon[j]`` is left out, the object trains on its other segments;
* ``kept``: the line trains as Azure reads it (an ``isCrowd`` of ``"yes"`` is 0, a coordinate
  written as the string ``"0.5"`` is 0.5), but the file should still be fixed;
* ``fatal``: training stops whatever ``ignore_data_errors`` says (Azure refuses these too).

Warnings (``image_details`` that is malformed or differs from the image, duplicate ``image_url``
lines merged as Azure merges them) are not problems: nothing is lost, ``validate`` still passes.
With ``ignore_data_errors=false`` any problem stops training before any work.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import orjson

IMAGE, OBJECT, SEGMENT, KEPT, FATAL = "dropped image", "dropped object", "dropped segment", "kept", "fatal"
WARNING = "warning"
BOM = b"\xef\xbb\xbf"
OUTCOMES = (FATAL, IMAGE, OBJECT, SEGMENT, KEPT)
"""Problem outcomes, the most severe first."""


@dataclass(slots=True)
class Problem:
    """One thing wrong with one line (``line`` is 1-based, blank lines counted)."""

    source: str
    line: int
    field: str
    reason: str
    raw: str | None = None
    """The line as it was in the file (for ``invalid_lines.jsonl``)."""
    training: str = IMAGE
    """What training with ``ignore_data_errors=true`` does about it (see the module docstring);
    ``warning`` for a warning."""
    kind: str = ""
    """A short name of the rule broken, the same for every line that breaks it (counted in reports)."""

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.reason}"

    @property
    def tolerated(self) -> bool:
        """Whether training goes on past it with ``ignore_data_errors=true``, as Azure's does."""
        return self.training != FATAL

    def tagged(self) -> str:
        """``FILE:LINE: field: reason [outcome]``, as ``validate`` prints it."""
        return f"{self} [{self.training}]"

    def to_json(self) -> dict:
        return {"source": self.source, "line": self.line, "field": self.field, "reason": self.reason,
                "training": self.training, "tolerated": self.tolerated, "kind": self.kind or self.field}


def sort_problems(problems: list[Problem], sources: list[str]) -> None:
    """In file order, then line order (a line's own problems keep their order)."""
    order = {source: i for i, source in enumerate(sources)}
    problems.sort(key=lambda p: (order.get(p.source, 0), p.line))


def dropped_counts(problems) -> dict[str, int]:
    """What the problems leave out of training, each thing once: images (lines), objects of the
    images kept, segments of the objects kept; and the values read leniently on lines kept."""
    images = {(p.source, p.line) for p in problems if p.training == IMAGE}
    objects = {(p.source, p.line, _head(p.field)) for p in problems
               if p.training == OBJECT and (p.source, p.line) not in images}
    segments = {(p.source, p.line, p.field) for p in problems if p.training == SEGMENT
                and (p.source, p.line) not in images and (p.source, p.line, _head(p.field)) not in objects}
    kept = sum(p.training == KEPT and (p.source, p.line) not in images for p in problems)
    return {"images": len(images), "objects": len(objects), "segments": len(segments), "kept": kept,
            "fatal": sum(p.training == FATAL for p in problems)}


def _head(field: str) -> str:
    """``label[3]`` of ``label[3].polygon[0]``: the object a field belongs to."""
    return field.split(".", 1)[0]


def reason_counts(problems) -> list[tuple[str, str, int]]:
    """``(training, kind, count)`` per rule broken, the most severe outcome first, then the most frequent."""
    counts = Counter((p.training, p.kind or p.field) for p in problems)
    rank = {outcome: i for i, outcome in enumerate((*OUTCOMES, WARNING))}
    return [(t, k, n) for (t, k), n in sorted(counts.items(), key=lambda x: (rank.get(x[0][0], 9), -x[1], x[0][1]))]


def write_invalid_lines(problems: list[Problem], path) -> int:
    """Write one JSON line per input line with problems: ``{"line", "source", "errors", "training",
    "raw"}``; ``errors`` are ``FILE:LINE: field: reason``, ``training`` their outcomes. Returns the
    number of lines written."""
    from ..fileio import write_bytes_atomic

    grouped: dict[tuple[str, int], list[Problem]] = {}
    for p in problems:
        grouped.setdefault((p.source, p.line), []).append(p)
    lines = []
    for (source, line), group in grouped.items():
        raw = next((p.raw for p in group if p.raw is not None), None)
        lines.append(orjson.dumps({"line": line, "source": source, "errors": [str(p) for p in group],
                                   "training": [p.training for p in group], "raw": raw}))
    write_bytes_atomic(path, b"".join(line + b"\n" for line in lines))
    return len(grouped)


def raw_lines_for(refs) -> dict[tuple[str, int], str]:
    """The raw text of a few ``(source, line, ...)`` lines, read again from their files (valid lines
    are not kept in memory)."""
    wanted: dict[str, set[int]] = {}
    for source, line, *_ in refs:
        wanted.setdefault(source, set()).add(line)
    out = {}
    for source, numbers in wanted.items():
        with open(source, "rb") as fp:
            for lineno, line in enumerate(fp, 1):
                if lineno in numbers:
                    out[(source, lineno)] = line_text(line[3:] if lineno == 1 and line.startswith(BOM) else line)
    return out


def line_text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r\n")
