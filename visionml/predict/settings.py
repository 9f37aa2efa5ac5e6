"""Inference settings of a model folder: the manifest's values, overridable per deployment.

Azure lets a deployment change a few settings without retraining (its settings.json); visionml
takes them as ``--set KEY=VALUE`` on ``predict``/``serve``/``evaluate`` or ``load_model(dir,
key=value)``. Which settings may change is marked once, in ``visionml.config.PARAMS``
(``inference=True``); the rest are fixed by the weights.
"""

from __future__ import annotations

from ..config import Hyperparameters, canonical_overrides, inference_keys, params_for, resolve_hyperparameters
from ..errors import UsageError, did_you_mean
from ..tasks import get_task

# The manifest's preprocessing block names the sizes the folder was saved or exported with.
_PREPROCESSING_KEYS = {"resize_size": "validation_resize_size", "crop_size": "validation_crop_size",
                       "min_size": "min_size", "max_size": "max_size"}


def allowed_overrides(task) -> tuple[str, ...]:
    return inference_keys(task)


def resolve_settings(manifest: dict, overrides: dict | None = None) -> Hyperparameters:
    """The model's hyperparameters, then the manifest's inference block and preprocessing sizes,
    then the caller's overrides (only inference settings; parsed and range-checked like ``--set``).
    Keys an older manifest lacks take their defaults."""
    task = get_task(manifest["task"])
    known = params_for(task)
    values = {k: v for k, v in (manifest.get("hyperparameters") or {}).items() if k in known}
    values["model_name"] = manifest["model_name"]
    values.update({k: v for k, v in (manifest.get("inference") or {}).items() if k in known and v is not None})
    pre = manifest.get("preprocessing") or {}
    values.update({key: pre[name] for name, key in _PREPROCESSING_KEYS.items()
                   if key in known and pre.get(name) is not None})
    if overrides:
        _check_keys(task, overrides)
        values.update(canonical_overrides(task, overrides)[0])
    return resolve_hyperparameters(task, values)


def _check_keys(task, overrides: dict) -> None:
    """Only inference settings, in any of Azure's spellings (a deployment's settings.json uses the
    v1 names such as box_score_thresh)."""
    from ..config import PARAMS

    allowed = allowed_overrides(task)
    aliases = {alias: name for name in allowed for alias in PARAMS[name].aliases}
    for key in overrides:
        if key not in allowed and aliases.get(key) not in allowed:
            raise UsageError(f"{key!r} cannot be set at inference for {task.name}.{did_you_mean(key, allowed, cutoff=0.5)} "
                             f"Settings you can change: {', '.join(allowed)}.")
