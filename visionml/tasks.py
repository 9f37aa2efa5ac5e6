"""The four tasks: canonical names (Azure CLI v2), accepted aliases and primary metrics."""

from __future__ import annotations

import difflib

from .errors import UsageError

MULTICLASS = "image_classification"
MULTILABEL = "image_classification_multilabel"
DETECTION = "image_object_detection"
SEGMENTATION = "image_instance_segmentation"

TASKS = (MULTICLASS, MULTILABEL, DETECTION, SEGMENTATION)

_ALIASES = {
    MULTICLASS: (MULTICLASS, "image-classification", "multiclass"),
    MULTILABEL: (MULTILABEL, "image-classification-multilabel", "multilabel"),
    DETECTION: (DETECTION, "image-object-detection", "object-detection"),
    SEGMENTATION: (SEGMENTATION, "image-instance-segmentation", "instance-segmentation"),
}
ALIAS_TO_TASK = {alias: task for task, aliases in _ALIASES.items() for alias in aliases}

PRIMARY_METRIC = {
    MULTICLASS: "accuracy",
    MULTILABEL: "iou",
    DETECTION: "mean_average_precision",
    SEGMENTATION: "mean_average_precision",
}


def canonical_task(name: str) -> str:
    """Map any accepted spelling to the canonical task name, or fail with the closest names."""
    key = name.strip().lower()
    if key in ALIAS_TO_TASK:
        return ALIAS_TO_TASK[key]
    close = difflib.get_close_matches(key, list(ALIAS_TO_TASK), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown task {name!r}.{hint} Valid tasks: {', '.join(TASKS)}.")


def is_classification(task: str) -> bool:
    return task in (MULTICLASS, MULTILABEL)


def is_detection_like(task: str) -> bool:
    """Detection and instance segmentation share boxes, NMS settings and COCO metrics."""
    return task in (DETECTION, SEGMENTATION)
