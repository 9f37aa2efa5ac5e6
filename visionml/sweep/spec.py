"""Azure AutoML image job YAML (CLI v2, ``type: automl``) -> a validated sweep specification.

Hyperparameter keys in ``training_parameters`` and ``search_space`` may use any spelling Azure
accepts (``lr_scheduler``, ``box_score_thresh``, ...): they are turned into their canonical names
here (``visionml.config.canonical_overrides``), so the trials, trials.csv and every config.json use
one name per hyperparameter, and a search-space value replaces the fixed value of the same key
whichever spelling each uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError, VisionMLError, did_you_mean
from ..tasks import get_task
from .space import Distribution, parse_search_space

# Keys Azure accepts that mean nothing on one machine: accepted and noted.
IGNORED_KEYS = ("$schema", "compute", "experiment_name", "description", "log_verbosity", "name",
                "display_name", "tags")
TOP_KEYS = ("type", "task", "primary_metric", "target_column_name", "training_data", "validation_data",
            "validation_data_size", "limits", "training_parameters", "image_model", "sweep", "search_space")
LIMIT_KEYS = ("timeout_minutes", "max_trials", "max_concurrent_trials", "trial_timeout_minutes")
SWEEP_KEYS = ("sampling_algorithm", "early_termination", "limits")
POLICY_KEYS = {
    "bandit": ("type", "evaluation_interval", "delay_evaluation", "slack_factor", "slack_amount"),
    "median_stopping": ("type", "evaluation_interval", "delay_evaluation"),
    "truncation_selection": ("type", "evaluation_interval", "delay_evaluation", "truncation_percentage",
                             "exclude_finished_jobs"),
}
SAMPLERS = ("random", "grid", "bayesian")


@dataclass
class JobSpec:
    task: str
    primary_metric: str
    training_data: str
    validation_data: str | None = None
    validation_data_size: float | None = None
    timeout_minutes: float | None = None
    max_trials: int = 1
    max_concurrent_trials: int = 1
    trial_timeout_minutes: float | None = None
    training_parameters: dict = field(default_factory=dict)
    sampling_algorithm: str = "random"
    early_termination: dict | None = None
    search_space: list[dict[str, Distribution]] = field(default_factory=list)
    raw_search_space: Any = None
    automode: bool = False
    notes: list[str] = field(default_factory=list)
    source: str = ""


def _unknown(keys, valid, where: str):
    for key in keys:
        if key not in valid:
            raise VisionMLError(f"{where}: unknown key {key!r}.{did_you_mean(key, valid, cutoff=0.5)} "
                                f"Valid keys: {', '.join(valid)}.")


def _number(value, where: str, kind=float, minimum=None):
    try:
        if isinstance(value, bool):
            raise ValueError
        out = kind(value)
    except (TypeError, ValueError):
        raise VisionMLError(f"{where}: expected a{'n integer' if kind is int else ' number'}, "
                            f"got {value!r}") from None
    if minimum is not None and out < minimum:
        raise VisionMLError(f"{where}: must be >= {minimum}, got {value!r}")
    return out


def _data_path(value, base: Path, where: str) -> str:
    """``{path, type: mltable}`` or a plain path, relative to the YAML file."""
    if isinstance(value, dict):
        _unknown(value, ("path", "type", "mode", "description"), where)
        kind = str(value.get("type", "mltable")).lower()
        if kind not in ("mltable", "uri_file", "uri_folder"):
            raise VisionMLError(f"{where}.type: {value.get('type')!r} is not supported; use mltable "
                                "(an MLTable folder) or a path to a JSONL file")
        value = value.get("path")
    if not isinstance(value, str) or not value:
        raise VisionMLError(f"{where}: expected a path (or {{path: ..., type: mltable}})")
    if value.startswith("azureml:") and not value.startswith("azureml://"):
        raise VisionMLError(f"{where}: {value!r} is an Azure data asset, which visionml cannot fetch. "
                            "Download it (az ml data download) and set path to the local MLTable folder.")
    path = Path(value[len("file://"):] if value.startswith("file://") else value)
    return str(path if path.is_absolute() else (base / path))


def _canonical(task, params: dict, where: str, notes: list) -> dict:
    """``params`` keyed by canonical hyperparameter names (notes for renamed and ignored keys); an
    unknown key, or one key given twice with two values, fails naming ``where``."""
    from ..config import canonical_overrides

    try:
        canonical, more = canonical_overrides(task, params, where)
    except UsageError as exc:  # in a job file this is bad input (exit 1), not bad usage
        raise VisionMLError(str(exc)) from None
    notes.extend(note.removeprefix("note: ") for note in more)
    return canonical


def load_job(path: str | Path) -> JobSpec:
    """Read and validate an Azure AutoML image job YAML."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VisionMLError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise VisionMLError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise VisionMLError(f"{path}: expected a mapping at the top level")
    return parse_job(doc, base=path.parent, source=str(path))


def parse_job(doc: dict, base: Path = Path("."), source: str = "job") -> JobSpec:
    notes = [f"{source}: '{k}' is accepted and not used by visionml" for k in IGNORED_KEYS if k in doc]
    _unknown([k for k in doc if k not in IGNORED_KEYS], TOP_KEYS + IGNORED_KEYS, source)
    if str(doc.get("type", "automl")).lower() != "automl":
        raise VisionMLError(f"{source}: type must be 'automl' (an AutoML image job), got {doc.get('type')!r}")
    if "task" not in doc:
        raise VisionMLError(f"{source}: 'task' is required (e.g. image_object_detection)")
    task = get_task(str(doc["task"]))
    metric = str(doc.get("primary_metric", task.primary_metric))
    if metric.lower() != task.primary_metric.lower():
        raise VisionMLError(f"{source}: primary_metric {metric!r} is not supported for {task}; "
                            f"Azure uses {task.primary_metric!r}")
    target = doc.get("target_column_name", "label")
    if target != "label":
        raise VisionMLError(f"{source}: target_column_name must be 'label' (the JSONL schema's key), got {target!r}")
    if "training_data" not in doc:
        raise VisionMLError(f"{source}: 'training_data' is required")

    sweep = doc.get("sweep") or {}
    if not isinstance(sweep, dict):
        raise VisionMLError(f"{source}: sweep must be a mapping")
    _unknown(sweep, SWEEP_KEYS, f"{source}: sweep")
    limits = dict(doc.get("limits") or {})
    _unknown(limits, LIMIT_KEYS, f"{source}: limits")
    nested = sweep.get("limits") or {}
    _unknown(nested, LIMIT_KEYS, f"{source}: sweep.limits")
    limits.update(nested)  # Azure's newer spelling nests sweep limits; it wins over the top level

    if "training_parameters" in doc and "image_model" in doc:
        raise VisionMLError(f"{source}: give training_parameters or image_model (its older name), not both")
    params = dict(doc.get("training_parameters") or doc.get("image_model") or {})
    params = _canonical(task, params, f"{source}: training_parameters", notes)

    spec = JobSpec(
        task=task,
        primary_metric=task.primary_metric,
        training_data=_data_path(doc["training_data"], base, f"{source}: training_data"),
        validation_data=(_data_path(doc["validation_data"], base, f"{source}: validation_data")
                         if doc.get("validation_data") else None),
        training_parameters=params,
        notes=notes,
        source=source,
    )
    if "validation_data_size" in doc:
        spec.validation_data_size = _number(doc["validation_data_size"], f"{source}: validation_data_size")
        if not 0 < spec.validation_data_size < 1:
            raise VisionMLError(f"{source}: validation_data_size must be between 0 and 1")
    if "timeout_minutes" in limits:
        spec.timeout_minutes = _number(limits["timeout_minutes"], f"{source}: limits.timeout_minutes", minimum=0)
    if "trial_timeout_minutes" in limits:
        spec.trial_timeout_minutes = _number(limits["trial_timeout_minutes"],
                                             f"{source}: limits.trial_timeout_minutes", minimum=0)
    spec.max_trials = _number(limits.get("max_trials", 1), f"{source}: limits.max_trials", int, 1)
    spec.max_concurrent_trials = _number(limits.get("max_concurrent_trials", 1),
                                         f"{source}: limits.max_concurrent_trials", int, 1)

    algo = str(sweep.get("sampling_algorithm", "random")).lower()
    if algo not in SAMPLERS:
        raise VisionMLError(f"{source}: sweep.sampling_algorithm {sweep.get('sampling_algorithm')!r} is not "
                            f"one of {', '.join(SAMPLERS)}.{did_you_mean(algo, SAMPLERS, n=1)}")
    spec.sampling_algorithm = algo
    policy = sweep.get("early_termination")
    if policy:
        kind = str(policy.get("type", "")).lower()
        if kind not in POLICY_KEYS:
            raise VisionMLError(f"{source}: sweep.early_termination.type must be one of "
                                f"{', '.join(POLICY_KEYS)}, got {policy.get('type')!r}")
        _unknown(policy, POLICY_KEYS[kind], f"{source}: sweep.early_termination")
        spec.early_termination = {**policy, "type": kind}

    raw_space = doc.get("search_space")
    if isinstance(raw_space, dict):
        raw_space = [raw_space]
    if isinstance(raw_space, list) and all(isinstance(sub, dict) for sub in raw_space):
        raw_space = [_canonical(task, sub, f"{source}: search_space[{i}]", notes) for i, sub in enumerate(raw_space)]
    spec.raw_search_space = raw_space
    spec.search_space = parse_search_space(raw_space, f"{source}: search_space")
    if not spec.search_space and spec.max_trials > 1:
        spec.automode = True
    if algo == "grid" and spec.search_space:
        for sub in spec.search_space:
            for name, dist in sub.items():
                if not dist.is_discrete:
                    raise VisionMLError(f"{source}: search_space.{name}: grid sampling needs choice() "
                                        f"values, got {dist.kind}()")
    return spec
