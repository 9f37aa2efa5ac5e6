"""Inference settings of a model folder: the manifest's values, overridable per deployment.

Azure lets a deployment change a few settings without retraining (its settings.json); visionml
takes them as ``--set KEY=VALUE`` on ``predict``/``serve`` or ``load_model(dir, key=value)``.
Only settings that make sense at inference may change; the rest are fixed by the weights.
"""

from __future__ import annotations

import difflib

from ..errors import UsageError
from ..tasks import is_classification

# Azure AutoML's inference defaults, used when an older manifest lacks a key.
DETECTION_DEFAULTS = {
    "box_score_threshold": 0.3,
    "nms_iou_threshold": 0.5,
    "box_detections_per_image": 100,
}
# Sizes a deployment may change; without them the detector keeps the sizes it was built with.
DETECTION_SIZES = ("min_size", "max_size")
SEGMENTATION_DEFAULTS = {"mask_pixel_score_threshold": 0.5, "max_number_of_polygon_points": 100}
CLASSIFICATION_DEFAULTS = {"validation_resize_size": 256, "validation_crop_size": 224}
DEFAULT_BATCH_SIZE = 16

INFERENCE_KEYS = {
    "classification": ("validation_resize_size", "validation_crop_size", "validation_batch_size"),
    "detection": (*DETECTION_DEFAULTS, *DETECTION_SIZES, "validation_batch_size"),
    "segmentation": (*DETECTION_DEFAULTS, *DETECTION_SIZES, *SEGMENTATION_DEFAULTS, "validation_batch_size"),
}


def _kind(task: str) -> str:
    if is_classification(task):
        return "classification"
    return "segmentation" if task.endswith("segmentation") else "detection"


def allowed_overrides(task: str) -> tuple[str, ...]:
    return INFERENCE_KEYS[_kind(task)]


def resolve_settings(manifest: dict, overrides: dict | None = None) -> dict:
    """Hyperparameters, then the manifest's inference block, then Azure's defaults for missing
    keys, then the caller's overrides (parsed and range-checked by ``visionml.config``)."""
    task = manifest["task"]
    settings = {**_defaults(task), **(manifest.get("hyperparameters") or {})}
    if manifest.get("model_name"):
        settings["model_name"] = manifest["model_name"]
    settings.update({k: v for k, v in (manifest.get("inference") or {}).items() if v is not None})
    pre = manifest.get("preprocessing") or {}
    if is_classification(task):
        settings["validation_resize_size"] = pre.get("resize_size", settings["validation_resize_size"])
        settings["validation_crop_size"] = pre.get("crop_size", settings["validation_crop_size"])
    else:
        settings.update({k: pre[k] for k in DETECTION_SIZES if pre.get(k) is not None})
    if overrides:
        settings.update(parse_overrides(task, overrides, settings))
    if settings.get("validation_batch_size") is None:
        settings["validation_batch_size"] = DEFAULT_BATCH_SIZE
    return settings


def _defaults(task: str) -> dict:
    kind = _kind(task)
    if kind == "classification":
        return dict(CLASSIFICATION_DEFAULTS)
    if kind == "detection":
        return dict(DETECTION_DEFAULTS)
    return {**DETECTION_DEFAULTS, **SEGMENTATION_DEFAULTS}


def parse_overrides(task: str, overrides: dict, current: dict) -> dict:
    """Check the keys against what may change at inference (close matches suggested), then let
    ``visionml.config`` parse each value by its declared type and range and check it against the
    ``current`` settings (e.g. a crop no larger than the resize)."""
    allowed = allowed_overrides(task)
    for key in overrides:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"{key!r} cannot be set at inference for {task}.{hint} "
                             f"Settings you can change: {', '.join(allowed)}.")
    from ..config import resolve_hyperparameters

    context = {k: current[k] for k in allowed if current.get(k) is not None}
    if current.get("model_name"):
        context["model_name"] = current["model_name"]
    resolved = resolve_hyperparameters(task, {**context, **overrides})
    return {key: resolved[key] for key in overrides}
