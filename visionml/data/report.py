"""What training does with the data's problems: ``RUN/data_report.json``, ``RUN/invalid_lines.jsonl``,
a terminal summary, and the checks that stop a run when nothing usable is left.

With ``ignore_data_errors=true`` (Azure's default) the reader has already left out what Azure's
trainer leaves out (``problems``); this module says so, drop by drop, and refuses to train when a
class has nothing usable left, when a split is empty, or when no image has an object (Azure:
"No objects in dataset"). With ``ignore_data_errors=false`` any problem stops the run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from .lines import class_names_in
from .problems import FATAL, IMAGE, OBJECT, dropped_counts, reason_counts, write_invalid_lines

REPORT = "data_report.json"
INVALID_LINES = "invalid_lines.jsonl"
SHOWN = 5
"""Problems quoted in the terminal summary; every one is in the report files."""


def lost_classes(problems, kept: set[str]) -> dict[str, list[str]]:
    """``{class: [FILE:LINE, ...]}`` for the classes named only on what was left out (whole lines,
    or the objects dropped), so that no image or object of theirs is left to train on."""
    by_line: dict[tuple[str, int], list] = defaultdict(list)
    for p in problems:
        if p.training in (IMAGE, OBJECT) and p.raw is not None:
            by_line[(p.source, p.line)].append(p)
    lost: dict[str, list[str]] = {}
    for (source, line), group in by_line.items():
        try:
            obj = orjson.loads(group[0].raw)
        except orjson.JSONDecodeError:
            continue
        label = obj.get("label") if type(obj) is dict else None
        if any(p.training == IMAGE for p in group):
            names = class_names_in(label)
        else:
            names = class_names_in([_item(label, p.field) for p in group])
        for name in dict.fromkeys(map(str, names)):
            if name not in kept:
                lost.setdefault(name, []).append(f"{source}:{line}")
    return lost


def split_stops(name: str, task, sources, problems, kept: set[str], images: int, objects: int) -> list[str]:
    """Why one split of the data (``name``: training or validation) leaves nothing to train on:
    no image left, a class of the training data with nothing usable left, or (detection,
    segmentation) no object at all."""
    if not images:
        return [f"no usable line is left in the {name} data ({', '.join(sources)})"]
    if name != "training":
        return []
    reasons = []
    for cls, where in sorted(lost_classes(problems, kept).items()):
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        reasons.append(f"class {cls!r} has nothing usable left in the training data: every line naming it was "
                       f"left out ({shown})")
    task = _task(task)
    if task is not None and task.objects and not objects:
        reasons.append("no training image has an object (Azure refuses a dataset without objects)")
    return reasons


def _item(label, field_: str):
    """``label[i]`` of the line for a field such as ``label[3].topX``."""
    head = field_.split(".", 1)[0]
    try:
        return label[int(head[len("label["):-1])]
    except (ValueError, IndexError, TypeError, KeyError):
        return None


@dataclass
class DataReport:
    """The data of one run as training takes it: per split, what was kept and what was left out."""

    ignore_data_errors: bool
    splits: dict = field(default_factory=dict)
    """``"training"`` and, when given, ``"validation"``: ``LoadedData``."""
    held_out: dict | None = None
    """``{"training": n, "validation": m}`` images when validation is held out of the training data."""

    @property
    def problems(self) -> list:
        return [p for data in self.splits.values() for p in data.problems]

    @property
    def warnings(self) -> list:
        return [w for data in self.splits.values() for w in data.warnings]

    def stop_reasons(self) -> list[str]:
        """Why training cannot go on with what is left (empty when it can)."""
        reasons = []
        fatal = [p for p in self.problems if p.training == FATAL]
        if fatal:
            reasons.append(f"{len(fatal)} problem(s) Azure refuses too, whatever ignore_data_errors says")
        for name, data in self.splits.items():
            reasons += split_stops(name, data.task, data.sources, data.problems, set(data.class_counts),
                                   len(data.records), sum(len(r.objects) for r in data.records))
        return reasons

    def to_json(self) -> dict:
        problems, warnings = self.problems, self.warnings
        doc = {"ignore_data_errors": self.ignore_data_errors}
        for name, data in self.splits.items():
            doc[name] = _split_json(data)
        if self.held_out is not None:
            doc["held_out"] = dict(self.held_out)
        doc["left_out"] = dropped_counts(problems)
        doc["reasons"] = [{"training": t, "kind": k, "count": n} for t, k, n in reason_counts(problems + warnings)]
        doc["problems"] = [{"problem": str(p), **p.to_json()} for p in problems]
        doc["warnings"] = [{"warning": str(w), **w.to_json()} for w in warnings]
        return doc

    def summary(self, shown: int = SHOWN) -> str:
        """Counts per reason and the first few problems, for the terminal ('' when there is nothing to say)."""
        problems, warnings = self.problems, self.warnings
        if not problems and not warnings:
            return ""
        lines = [f"data: {_headline(problems, warnings, self.ignore_data_errors)}"]
        for training, kind, count in reason_counts(problems + warnings):
            lines.append(f"  {count:>6}  {training:<15}  {kind}")
        if shown:
            first = problems[:shown] if problems else warnings[:shown]
            lines += [f"  {p.tagged()}" for p in first]
            more = len(problems) + len(warnings) - len(first)
            if more > 0:
                lines.append(f"  ... and {more} more")
        return "\n".join(lines)

    def write(self, run_dir, log) -> None:
        """``data_report.json`` always, ``invalid_lines.jsonl`` when a line has a problem, and the summary."""
        from ..fileio import write_json

        write_json(run_dir / REPORT, self.to_json())
        files = [str(run_dir / REPORT)]
        if self.problems:
            write_invalid_lines(self.problems, run_dir / INVALID_LINES)
            files.append(str(run_dir / INVALID_LINES))
        text = self.summary()
        if text:
            log(f"{text}\n  every one: {' and '.join(files)}")


def _task(name):
    from ..tasks import get_task

    return get_task(name) if name else None


def _split_json(data) -> dict:
    objects = sum(len(r.objects) for r in data.records)
    out = {"sources": list(data.sources), "images": len(data.records), "lines_kept": data.kept_lines,
           "classes": {name: data.class_counts[name] for name in data.labels}}
    task = _task(data.task)
    if task is not None and task.objects:
        out["objects"] = objects
    return out


def _headline(problems, warnings, lenient: bool) -> str:
    lines = len({(p.source, p.line) for p in problems})
    text = f"{len(problems)} problem(s) on {lines} line(s)" if problems else "no problem"
    if warnings:
        text += f", {len(warnings)} warning(s)"
    if not problems:
        return text + " (nothing left out)"
    setting = "true (Azure's default)" if lenient else "false"
    return f"{text}; ignore_data_errors={setting}: training {left_out_phrase(dropped_counts(problems))}"


def left_out_phrase(counts: dict) -> str:
    """What training does, in words, for ``dropped_counts``: "leaves out 2 image(s) and 1 object(s),
    and reads 1 value(s) as Azure reads them"."""
    parts = [f"{counts[key]} {word}" for key, word in (("images", "image(s)"), ("objects", "object(s)"),
                                                        ("segments", "polygon segment(s)")) if counts[key]]
    did = f"leaves out {_and(parts)}" if parts else "leaves nothing out"
    if counts["kept"]:
        did += f"{',' if len(parts) > 1 else ''} and reads {counts['kept']} value(s) as Azure reads them"
    return did


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

