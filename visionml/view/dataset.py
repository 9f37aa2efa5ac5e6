"""What ``visionml view`` shows: a dataset read as training reads it, every problem by FILE:LINE,
and with a model or its predictions the evaluator's matching per image (``matching``).

``build_view`` does the work once at start-up; the page then gets one JSON document
(``page_json``) and asks for thumbnails as it scrolls. Without a model or predictions the page
opens on ``lines_view`` (no image opened) while ``checked_view`` checks every image as training
does, the time most of a large dataset's opening would otherwise take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

import orjson

from ..tasks import get_task
from . import matching

# The page's filters: each image carries the flags that apply to it.
DATA_PROBLEM, NO_PREDICTION, MISTAKE = "data problem", "no prediction", "model mistake"
FALSE_POSITIVE, MISSED, WRONG, SUSPECT = "false positive", "missed object", "wrong class", "likely label mistake"
FLAGS = (DATA_PROBLEM, MISTAKE, FALSE_POSITIVE, MISSED, WRONG, SUSPECT, NO_PREDICTION)


@dataclass
class ViewData:
    loaded: object  # data.reader.LoadedData: the records the page shows, by id (their index)
    task: object
    scored: object | None = None  # predictions.Scored
    matched: dict = field(default_factory=dict)
    data: str = ""
    checked: bool = True  # every image's header and end marker read, as training reads them
    training: object | None = None  # the LoadedData training keeps, when ``loaded`` shows more (the audit's)

    @property
    def records(self):
        return self.loaded.records

    @cached_property
    def suspect_ids(self) -> set:
        return {s["id"] for s in self.matched.get("suspects", [])}


def build_view(data, *, task=None, datastores=None, model=None, predictions=None, overrides=None,
               device="cpu", progress=False) -> ViewData:
    """Read ``data`` (JSONL or MLTable; invalid lines kept as problems, never raised) and, with a
    model folder or a predictions file, score and match it."""
    from ..data.reader import load_dataset
    from .predictions import read_predictions, score_with_model

    if model is not None and task is None:
        from ..modelio import read_manifest

        task = read_manifest(model)["task"]
    loaded = load_dataset(data, task, datastores=datastores or {})
    view = ViewData(loaded=loaded, task=get_task(loaded.task) if loaded.task else None, data=str(data))
    if view.task is None or not loaded.records or (model is None and predictions is None):
        return view
    if model is not None:
        view.scored = score_with_model(model, loaded, overrides=overrides, device=device, progress=progress)
    else:
        view.scored = read_predictions(predictions, loaded, overrides=overrides)
    view.matched = matching.match(view.task, view.scored)
    return view


def lines_view(data, *, task=None, datastores=None) -> ViewData:
    """``data``'s lines read without opening an image (a fraction of a second for 10,000): what the
    page shows first, while ``checked_view`` reads the images."""
    from ..data.reader import load_dataset

    loaded = load_dataset(data, task, datastores=datastores or {}, check_images=False)
    return ViewData(loaded=loaded, task=get_task(loaded.task) if loaded.task else None, data=str(data),
                    checked=False)


def checked_view(first: ViewData, *, task=None, datastores=None) -> ViewData:
    """``first`` (a ``lines_view``) read again as training reads it, every image's header and end
    marker checked: the sizes are the images' own and the images that fail are problems of their
    lines. The images keep the ids the page already shows them by, so an image training would
    drop stays, flagged with its problem; ``training`` holds what training keeps."""
    import dataclasses

    from ..data.reader import load_dataset

    full = load_dataset(first.data, task, datastores=datastores or {})
    by_line = {(r.source, r.line): r for r in full.records}
    records = [by_line.get((r.source, r.line), r) for r in first.records]
    return ViewData(loaded=dataclasses.replace(full, records=records), data=first.data, training=full,
                    task=get_task(full.task) if full.task else None)


def page_json(view: ViewData) -> bytes:
    """The page's one document: the images with their labels, problems and (with predictions)
    outcomes, every problem and warning, the confusion matrix and the likely label mistakes."""
    loaded, task = view.loaded, view.task
    by_line: dict = {}
    for p in [*loaded.problems, *loaded.warnings]:
        by_line.setdefault((p.source, p.line), []).append(p)
    images = [_image(i, record, task, by_line, view) for i, record in enumerate(loaded.records)]
    where = {(r.source, r.line): i for i, r in enumerate(loaded.records)}
    doc = {
        "data": view.data,
        "sources": loaded.sources,
        "task": task.name if task else None,
        "objects": bool(task and task.objects),
        "labels": view.scored.labels if view.scored else loaded.labels,
        "images": images,
        "problems": [_problem(p, where) for p in loaded.problems],
        "warnings": [_problem(p, where) for p in loaded.warnings],
        "flags": list(FLAGS),
        "checked": view.checked,
    }
    if view.scored is not None:
        scored = view.scored
        doc["predictions"] = {
            "source": scored.source,
            "iou_threshold": float(scored.settings["validation_iou_threshold"]) if task.objects else None,
            "score_threshold": scored.score_threshold,
            "metrics": _headline(task, scored.metrics),
            "confusion": view.matched["confusion"],
            "suspects": view.matched["suspects"],
        }
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _image(i, record, task, by_line, view) -> dict:
    item = {"id": i, "where": record.where, "image_url": record.image_url, "width": record.width,
            "height": record.height, "classes": sorted(set(task.class_names(record))) if task else []}
    if task is not None and task.objects:
        item["objects"] = [_object(o) for o in record.objects]
    else:
        item["label"] = record.label
    problems = by_line.get((record.source, record.line), [])
    item["problems"] = [p.tagged() for p in problems]
    flags = [DATA_PROBLEM] if problems else []
    if view.scored is not None:
        result = view.matched["images"].get(i)
        if result is None:
            flags.append(NO_PREDICTION)
            item["missing"] = view.scored.missing.get(i, "not scored")
        else:
            item.update(result)
            flags += _outcome_flags(result)
            if i in view.suspect_ids:
                flags.append(SUSPECT)
    item["flags"] = flags
    return item


def _object(obj) -> dict:
    out = {"label": obj.label, "box": [round(v, 5) for v in obj.box], "crowd": bool(obj.is_crowd)}
    if obj.polygon is not None:
        out["polygon"] = obj.polygon
    return out


def _outcome_flags(result) -> list[str]:
    outcome = result["outcome"]
    flags = []
    if outcome.get("fp"):
        flags.append(FALSE_POSITIVE)
    if outcome.get("missed"):
        flags.append(MISSED)
    if "correct" in outcome and not outcome["correct"]:
        flags.append(WRONG)
    if flags:
        flags.insert(0, MISTAKE)
    return flags


def _problem(p, where) -> dict:
    return {"where": f"{p.source}:{p.line}", "field": p.field, "reason": p.reason, "training": p.training,
            "text": str(p), "image": where.get((p.source, p.line))}


def _headline(task, metrics: dict) -> dict:
    keys = (task.primary_metric, *task.headline_metrics)
    out = {key: metrics.get(key) for key in dict.fromkeys(keys) if isinstance(metrics.get(key), (int, float))}
    return {"primary": task.primary_metric, "values": out, "notes": metrics.get("notes", [])}


def export_lines(view: ViewData, ids) -> bytes:
    """The records ``ids`` as JSONL lines of the training schema ("relabel these"), each
    ``image_url`` the image's absolute path (URLs kept), so the file works from any folder and the
    converters take it to other labelling tools."""
    from ..data.resolve import is_url

    out = []
    for i in dict.fromkeys(int(i) for i in ids):
        if not 0 <= i < len(view.records):
            raise ValueError(f"no image {i}: ids run from 0 to {len(view.records) - 1}")
        record = view.records[i]
        line = record.to_json()
        if not is_url(record.path):
            line["image_url"] = os.path.abspath(record.path)
        out.append(orjson.dumps(line))
    return b"\n".join(out) + (b"\n" if out else b"")
