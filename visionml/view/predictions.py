"""A model's answers for the records of a dataset, in the form the metrics take them.

From a model folder they come from the evaluator's own scoring loop (``metrics.evaluate``: the same
decoding, the same boxes down to the COCO floor), so the view shows what ``visionml evaluate``
counted. From a ``visionml predict`` JSONL they are read back from Azure's output objects
(normalised coordinates) and matched to the dataset's images by file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import orjson

from ..errors import VisionMLError
from ..tasks import get_task


@dataclass
class Scored:
    """Per record index: the metrics' ground truth and prediction (``None``: not scored, with the
    reason in ``missing``), the class order, the settings matching uses, and the evaluator's metrics."""

    labels: list[str]
    settings: object  # Hyperparameters: validation_iou_threshold, box_score_threshold, ...
    score_threshold: float | None
    ground_truth: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    source: str = ""


def score_with_model(model_dir, loaded, *, overrides=None, device="cpu", batch_size=None, progress=False) -> Scored:
    """Score every usable record of ``loaded`` with the model folder, as ``visionml evaluate`` does."""
    import contextlib

    from ..metrics.evaluate import _check_labels, _score, _usable
    from ..models.detection import AP_SCORE_FLOOR
    from ..predict import Predictor

    predictor = Predictor.from_folder(model_dir, overrides=overrides, device=device)
    task = get_task(predictor.task)
    if loaded.task is not None and get_task(loaded.task) != task:
        raise VisionMLError(f"{model_dir}: the model is for {task}, the data for {loaded.task}: view data "
                            "labelled for this model's task")
    _check_labels(loaded, predictor.labels, task)
    records, _ = _usable(predictor, loaded.records)
    usable = {id(r) for r in records}
    index = {id(r): i for i, r in enumerate(loaded.records)}
    floor = getattr(predictor, "scoring_down_to", None)
    with floor(AP_SCORE_FLOOR) if floor is not None else contextlib.nullcontext():
        ground_truth, predictions = _score(predictor, records, task, batch_size, progress)
    scored = Scored(labels=list(predictor.labels), settings=predictor.settings, source=str(model_dir),
                    score_threshold=float(predictor.settings["box_score_threshold"]) if task.objects else None)
    scored.metrics = task.metrics(ground_truth, predictions, predictor.labels, predictor.settings)
    for k, record in enumerate(records):
        scored.ground_truth[index[id(record)]] = ground_truth[k]
        scored.predictions[index[id(record)]] = predictions[k]
    for i, record in enumerate(loaded.records):
        if id(record) not in usable:
            scored.missing[i] = "the model cannot take an image of this size"
    return scored


def read_predictions(path, loaded, *, overrides=None) -> Scored:
    """The answers in ``path`` (``visionml predict`` output: one Azure output object per line) for
    the records of ``loaded``, matched by file: ``filename`` is the image's path as predict was
    given it, compared resolved, then as written in ``image_url``, then by file name alone when
    that is unique. The boxes in the file are the deployed ones, so all of them count."""
    from ..config import resolve_hyperparameters
    from ..data.reader import label_order

    task = get_task(loaded.task)
    answers = _read_answers(path)
    labels = _labels(task, answers, loaded, label_order)
    settings = resolve_hyperparameters(task, overrides or {})
    scored = Scored(labels=labels, settings=settings, score_threshold=None, source=str(path))
    lookup = _lookup(answers)
    index = {name: k for k, name in enumerate(labels)}
    for i, record in enumerate(loaded.records):
        found = _find(lookup, record)
        if found is None:
            scored.missing[i] = f"no line of {path} names this image"
            continue
        line, answer = found
        if not (record.width and record.height):
            scored.missing[i] = "the image's size is unknown (its header could not be read)"
            continue
        scored.ground_truth[i] = task.ground_truth(record, record.width, record.height, index)
        scored.predictions[i] = _metric_prediction(task, answer, record, index, labels, f"{path}:{line}")
    if scored.predictions:
        order = sorted(scored.predictions)
        gts, preds = task.finish([scored.ground_truth[i] for i in order], [scored.predictions[i] for i in order])
        scored.metrics = task.metrics(gts, preds, labels, settings)
        if not task.objects:  # finish stacked them: keep the per-image rows
            scored.ground_truth = dict(zip(order, list(gts)))
            scored.predictions = dict(zip(order, list(preds)))
    return scored


def _read_answers(path) -> list[tuple[int, dict]]:
    answers = []
    try:
        with open(path, "rb") as fp:
            for lineno, line in enumerate(fp, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise VisionMLError(f"{path}:{lineno}: not JSON ({exc}); expected one `visionml predict` "
                                        "output object per line") from None
                if not isinstance(obj, dict) or "filename" not in obj or not ({"boxes", "probs"} & set(obj)):
                    raise VisionMLError(f"{path}:{lineno}: filename: expected an object with 'filename' and "
                                        "'boxes' (detection) or 'probs' and 'labels' (classification), as "
                                        "`visionml predict --output` writes")
                answers.append((lineno, obj))
    except OSError as exc:
        raise VisionMLError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not answers:
        raise VisionMLError(f"{path}: no predictions in the file")
    return answers


def _labels(task, answers, loaded, label_order) -> list[str]:
    if not task.objects:
        line, first = answers[0]
        labels = [str(v) for v in first.get("labels") or []]
        if not labels:
            raise VisionMLError(f"line {line}: labels: empty; classification predictions carry every class")
        unknown = [name for name in loaded.labels if name not in labels]
        if unknown:
            raise VisionMLError(f"{loaded.sources[0]}: label: {unknown[0]!r} is not among the predictions' "
                                f"classes ({', '.join(map(repr, labels[:30]))}); view predictions made by a "
                                "model of these classes")
        return labels
    names = set(loaded.labels) | {str(b.get("label")) for _, a in answers for b in a.get("boxes") or []}
    return label_order(names, loaded.integer_labels)


def _lookup(answers) -> dict:
    by_key: dict = {}
    for line, answer in answers:
        name = str(answer["filename"])
        by_key.setdefault(("path", os.path.abspath(name)), (line, answer))
        by_key.setdefault(("url", name), (line, answer))
        base = os.path.basename(name)
        by_key[("base", base)] = (line, answer) if ("base", base) not in by_key else None  # None: not unique
    return by_key


def _find(lookup, record):
    for key in (("path", os.path.abspath(record.path)), ("url", record.image_url),
                ("base", os.path.basename(record.path))):
        found = lookup.get(key)
        if found is not None:
            return found
    return None


def _metric_prediction(task, answer, record, index, labels, where):
    if not task.objects:
        probs = np.asarray(answer.get("probs") or [], dtype=np.float64)
        if len(probs) != len(labels):
            raise VisionMLError(f"{where}: probs: {len(probs)} values for {len(labels)} classes")
        return probs
    from ..geometry import polygon_norm_to_abs, xyxy_norm_to_abs
    from ..metrics.coco import polygons_to_rles

    boxes = answer.get("boxes") or []
    w, h = record.width, record.height
    try:
        coords = [[b["box"]["topX"], b["box"]["topY"], b["box"]["bottomX"], b["box"]["bottomY"]] for b in boxes]
        pred = {"boxes": xyxy_norm_to_abs(coords, w, h).reshape(-1, 4),
                "scores": np.array([float(b["score"]) for b in boxes], dtype=np.float64),
                "labels": np.array([index[str(b["label"])] for b in boxes], dtype=np.int64)}
    except (KeyError, TypeError, ValueError) as exc:
        raise VisionMLError(f"{where}: boxes: each box needs box {{topX, topY, bottomX, bottomY}}, label and "
                            f"score ({type(exc).__name__}: {exc})") from None
    if task.masks:
        pixels = [[seg.reshape(-1).tolist() for seg in polygon_norm_to_abs(b.get("polygon") or [], w, h)]
                  for b in boxes]
        pred["masks"] = polygons_to_rles(pixels, h, w)
    return pred
