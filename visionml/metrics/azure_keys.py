"""Azure's metric keys and value shapes, so that a script written for an Azure AutoML run's
metrics reads visionml's ``metrics.json`` unchanged (docs/metrics.md lists every key).

The names are those of Azure's ``MetricsLiterals`` and of the metrics its runs log
(``common/constants.py``, ``common/utils.py`` and ``object_detection/eval/cocotools.py`` in its
wheel; classification: the ``azureml.metrics`` constants). Inside these keys a value is written
as Azure writes it: detection's undefined values are ``-1.0`` and numbers are rounded to 5
decimals, as Azure rounds what it logs; classification's undefined values are ``null`` (Azure's
scoring writes NaN, which JSON cannot hold). visionml's own keys keep ``None`` for undefined.
"""

from __future__ import annotations

import numpy as np

UNDEFINED = -1.0   # Azure's IncrementalVocEvaluator.UNDEFINED_METRIC_VALUE
DIGITS = 5         # Azure rounds the detection metrics it logs to 5 decimals

PER_LABEL_METRICS = "per_label_metrics"
IMAGE_LEVEL = "image_level_binary_classifier_metrics"
COCO_METRICS = "coco_metrics"
PR_CURVE = "pr_curve"
PRECISIONS_PER_SCORE_THRESHOLD = "precisions_per_score_threshold"
RECALLS_PER_SCORE_THRESHOLD = "recalls_per_score_threshold"
MISSED = "Missed"  # the confusion matrices' last column: objects no prediction found


def confusion_matrix_key(threshold: float) -> str:
    """``confusion_matrix_score_threshold_0.3``: the name Azure logs each matrix under."""
    return f"confusion_matrix_score_threshold_{round(float(threshold), DIGITS)}"


def pr_curve_key(label: str | None = None) -> str:
    """``pr_curve`` for all classes together, ``pr_curve_<label>`` for one class."""
    return PR_CURVE if label is None else f"{PR_CURVE}_{label}"


def coco_summary_names() -> list[str]:
    """The 12 lines of pycocotools' ``COCOeval.summarize()``, without ``= value``: Azure keys
    ``coco_metrics`` by them (``cocotools.convert_coco_metrics``)."""
    rows = [("AP", "0.50:0.95", "all", 100), ("AP", "0.50", "all", 100), ("AP", "0.75", "all", 100),
            ("AP", "0.50:0.95", "small", 100), ("AP", "0.50:0.95", "medium", 100), ("AP", "0.50:0.95", "large", 100),
            ("AR", "0.50:0.95", "all", 1), ("AR", "0.50:0.95", "all", 10), ("AR", "0.50:0.95", "all", 100),
            ("AR", "0.50:0.95", "small", 100), ("AR", "0.50:0.95", "medium", 100), ("AR", "0.50:0.95", "large", 100)]
    titles = {"AP": "Average Precision", "AR": "Average Recall"}
    return [f"{titles[kind]:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={dets:>3d} ]"
            for kind, iou, area, dets in rows]


def value(v):
    """A detection number as Azure writes it: rounded, ``-1.0`` where undefined."""
    return UNDEFINED if v is None else round(float(v), DIGITS)


def per_threshold(values: dict) -> dict:
    """``{"0.3": value}``: per score threshold, Azure's value; the keys are the strings JSON makes
    of Azure's float keys, so the dict in memory equals the one read back from metrics.json."""
    return {str(round(t, DIGITS)): value(v) for t, v in values.items()}


def per_label_entry(summary: dict) -> dict:
    """One class of ``per_label_metrics`` from ``voc.precision_recall``'s result."""
    return {"precision": value(summary["precision"]), "recall": value(summary["recall"]),
            "average_precision": value(summary["average_precision"]),
            PRECISIONS_PER_SCORE_THRESHOLD: per_threshold(summary[PRECISIONS_PER_SCORE_THRESHOLD]),
            RECALLS_PER_SCORE_THRESHOLD: per_threshold(summary[RECALLS_PER_SCORE_THRESHOLD])}


def pr_curve(summary: dict) -> dict:
    """A PR curve as Azure's run history returns the table it logs: one list per column, a row per
    score threshold (highest first) where both precision and recall are defined."""
    rows = [(value(summary[RECALLS_PER_SCORE_THRESHOLD][t]), value(p), round(t, DIGITS))
            for t, p in sorted(summary[PRECISIONS_PER_SCORE_THRESHOLD].items(), reverse=True)
            if p is not None and summary[RECALLS_PER_SCORE_THRESHOLD][t] is not None]
    return {"recall": [r for r, _, _ in rows], "precision": [p for _, p, _ in rows],
            "score_threshold": [t for _, _, t in rows]}


def confusion_matrix(labels: list[str], matrix, *, missed: bool = False) -> dict:
    """Azure's confusion-matrix value. ``missed`` (detection): the matrix has a last column of
    objects no prediction found, which gets a ``Missed`` label and a row of ``N/A`` to square it."""
    rows = np.asarray(matrix).tolist()
    class_labels = [str(label) for label in labels]
    if missed:
        class_labels.append(MISSED)
        rows.append(["N/A"] * (len(labels) + 1))
    return {"schema_type": "confusion_matrix", "schema_version": "1.0.0",
            "data": {"class_labels": class_labels, "matrix": rows}}


def coco_metrics(stats) -> dict:
    """``coco_metrics``: the 12 COCO numbers keyed by pycocotools' summary lines; COCO's own -1
    ("nothing in that range") kept, as Azure keeps it."""
    return {name: float(v) for name, v in zip(coco_summary_names(), stats)}
