"""Hyperparameters: one typed definition each, Azure's names and defaults, parsed without eval.

Reference: Azure Machine Learning, "Hyperparameters for computer vision tasks in automated
machine learning" (https://learn.microsoft.com/azure/machine-learning/reference-automl-images-hyperparameters).
Keys marked ``azure=False`` are visionml extensions (precision, proposal budgets, anchors)
that the ``cpu`` preset needs; Azure jobs never set them, so their defaults change nothing.

``resolve_hyperparameters(task, overrides, preset)`` layers defaults < model defaults < preset
< overrides, parses strings by type, range-checks, rejects unknown keys with the closest names,
and returns a frozen ``Hyperparameters``: every key of the task, typed, read as ``hp["key"]`` or
``hp.key``, so no reader restates a default.

Every key an Azure AutoML image job accepts is accepted here, in its CLI/SDK v2 spelling (the
canonical name, saved in config.json and the manifest) and in the SDK v1 / internal spellings of
Azure's own code (``Param.aliases``: ``box_score_thresh``, ``lr_scheduler``, ``valid_crop_size``,
...). ``canonical_overrides`` is the one place a key is resolved: an alias becomes its canonical
name, a key that only Azure's yolov5 or Azure's service reads is dropped with a note
(``NOTED_KEYS``), a key that names something visionml cannot do fails with what to do instead
(``REFUSED_KEYS``), and anything else fails with the closest names.

``Param.parse`` is the one value parser (``--set``,
``xai_parameters`` and job YAMLs all use it). Parameters marked ``inference=True`` are the ones a
deployment may change (``visionml predict/serve --set``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError, did_you_mean
from .tasks import get_task

# Parameter groups: a task lists the groups that apply to it (Task.param_groups).
ALL = ("all",)
CLS = ("classification",)
DET = ("detection",)
SEG = ("segmentation",)

# Azure parses booleans with strtobool (y/yes/t/true/on/1) and its log_* settings as Enable/Disable.
_TRUE = {"true", "1", "yes", "on", "y", "t", "enable", "enabled"}
_FALSE = {"false", "0", "no", "off", "n", "f", "disable", "disabled"}
_NONE = {"none", "null", ""}


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default (one value, or one per group), range and groups."""

    name: str
    kind: str  # int, float, bool, choice, model, grid ("3x2"), ints ("16,32,64")
    default: Any
    groups: tuple[str, ...] = ALL
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False  # None allowed ("none"/"null")
    azure: bool = True
    inference: bool = False
    """A deployment may change it without retraining (``--set`` on predict, serve, evaluate)."""
    help: str = ""
    aliases: tuple[str, ...] = ()
    """Azure's other spellings of this key (SDK v1 and its internal settings names)."""
    clamp: bool = False
    """Out of [low, high]: clamped with a warning (as Azure does) instead of refused."""

    def applies_to(self, task) -> bool:
        return any(group in get_task(task).param_groups for group in self.groups)

    def default_for(self, task):
        """The default for ``task``: the task's own (Azure's per-task values), else its most specific group's."""
        task = get_task(task)
        if self.name in task.hp_defaults:
            return task.hp_defaults[self.name]
        if isinstance(self.default, dict):
            return next((self.default[g] for g in reversed(task.param_groups) if g in self.default), None)
        return self.default

    def parse(self, raw, task: str | None = None):
        """Turn ``raw`` (a string from --set, or a YAML/JSON value) into a checked value."""
        return self.parse_noted(raw, task)[0]

    def parse_noted(self, raw, task: str | None = None) -> tuple[Any, str | None]:
        """``(value, warning or None)``: ``parse``, saying when a ``clamp`` parameter was clamped."""
        is_choice = isinstance(raw, str) and raw.strip().lower() in (str(c).lower() for c in self.choices)
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE and not is_choice):
            if self.optional:
                return None, None
            raise UsageError(f"{self.name} needs a value ({self.describe()})")
        value = _PARSERS[self.kind](self, raw)
        note = None
        if self.clamp and isinstance(value, (int, float)) and not isinstance(value, bool):
            clamped = min(max(value, self.low), self.high)
            if clamped != value:
                note = (f"warning: {self.name}={raw!r} is outside [{_fmt(self.low, '')}, {_fmt(self.high, '')}]: "
                        f"clamped to {clamped:g}, as Azure does")
                value = clamped
        self._check_range(value, raw)
        if self.kind == "model" and task is not None:
            from .models.registry import get_spec

            value = get_spec(value, task).name
        return value, note

    def _check_range(self, value, raw) -> None:
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                continue
            too_low = self.low is not None and (item < self.low or (self.low_open and item == self.low))
            too_high = self.high is not None and (item > self.high or (self.high_open and item == self.high))
            if too_low or too_high:
                raise UsageError(f"{self.name}={raw!r} is out of range: it must be {self.describe()}")

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "grid":
            text = 'a grid "COLSxROWS" such as "3x2"'
        elif self.kind == "ints":
            text = "comma-separated positive integers such as 16,32,64"
        elif self.kind == "model":
            text = "a model name from `visionml models`"
        elif self.kind == "bool":
            text = "true or false"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            if self.low is not None or self.high is not None:
                lo = "(" if self.low_open else "["
                hi = ")" if self.high_open else "]"
                text += f" in {lo}{_fmt(self.low, '-inf')}, {_fmt(self.high, 'inf')}{hi}"
        return text + (", or none" if self.optional else "")


def _fmt(x, missing):
    return missing if x is None else f"{x:g}"


def _parse_int(p: Param, raw) -> int:
    if isinstance(raw, bool):
        raise UsageError(f"{p.name}={raw!r} is not an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        return int(raw)
    raise UsageError(f"{p.name}={raw!r} is not an integer ({p.describe()})")


def _parse_float(p: Param, raw) -> float:
    if isinstance(raw, bool):
        raise UsageError(f"{p.name}={raw!r} is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{p.name}={raw!r} is not a number ({p.describe()})") from None
    if not math.isfinite(value):
        raise UsageError(f"{p.name}={raw!r} must be a finite number")
    return value


def _parse_bool(p: Param, raw) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{p.name}={raw!r} is not a boolean: use true or false (or 1/0)")


def _parse_choice(p: Param, raw):
    for choice in p.choices:
        if str(raw).strip().lower() == str(choice).lower():
            return choice
    hint = did_you_mean(str(raw).strip().lower(), p.choices, n=2, cutoff=0.5)
    raise UsageError(f"{p.name}={raw!r} is not valid: use {p.describe()}.{hint}")


def _parse_model(p: Param, raw) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise UsageError(f"{p.name}={raw!r} is not a model name")
    return raw.strip().lower()


def _parse_grid(p: Param, raw) -> tuple[int, int]:
    """Azure spells the grid "3x2" (v2) or "(3, 2)" (v1); YAML may give a list."""
    if isinstance(raw, (list, tuple)):
        parts = list(raw)
    else:
        text = str(raw).strip().strip("()[]")
        parts = re.split(r"\s*[x,X]\s*", text)
    try:
        cols, rows = (_parse_int(p, v) for v in parts)
    except (ValueError, UsageError):
        raise UsageError(f"{p.name}={raw!r} is not valid: use {p.describe()}") from None
    if cols < 1 or rows < 1:
        raise UsageError(f"{p.name}={raw!r}: both grid sizes must be at least 1")
    if cols * rows < 2:  # Azure refuses it too: one tile is the whole image again
        raise UsageError(f"{p.name}={raw!r}: a grid of one tile is the image itself; use at least 2 tiles "
                         f"(e.g. 2x1 or 3x2), or none for no tiling")
    return cols, rows


def _parse_ints(p: Param, raw) -> tuple[int, ...]:
    parts = list(raw) if isinstance(raw, (list, tuple)) else re.split(r"[\s,]+", str(raw).strip().strip("()[]"))
    values = tuple(_parse_int(p, v) for v in parts if str(v).strip())
    if not values:
        raise UsageError(f"{p.name}={raw!r} is empty: use {p.describe()}")
    return values


_PARSERS = {"int": _parse_int, "float": _parse_float, "bool": _parse_bool, "choice": _parse_choice,
            "model": _parse_model, "grid": _parse_grid, "ints": _parse_ints}


PARAMS: dict[str, Param] = {p.name: p for p in [
    # --- model agnostic (Azure) ---
    Param("model_name", "model", None, help="registry name (visionml models); default per task"),
    Param("number_of_epochs", "int", 15, low=1),
    Param("training_batch_size", "int", {"classification": 78, "detection": 2}, low=1),
    Param("validation_batch_size", "int", {"classification": 78, "detection": 1}, low=1, inference=True),
    Param("learning_rate", "float", {"classification": 0.01, "detection": 0.005}, low=0, high=1, low_open=True),
    Param("optimizer", "choice", "sgd", choices=("sgd", "adam", "adamw")),
    Param("momentum", "float", 0.9, low=0, high=1),
    Param("weight_decay", "float", 1e-4, low=0, high=1),
    Param("nesterov", "bool", True),
    Param("beta1", "float", 0.9, low=0, high=1),
    Param("beta2", "float", 0.999, low=0, high=1),
    Param("ams_gradient", "bool", False, aliases=("amsgrad",)),
    Param("learning_rate_scheduler", "choice", "warmup_cosine", choices=("warmup_cosine", "step"),
          aliases=("lr_scheduler",)),
    Param("warmup_cosine_lr_cycles", "float", 0.45, low=0, high=1),
    Param("warmup_cosine_lr_warmup_epochs", "int", 2, low=0),
    Param("step_lr_gamma", "float", 0.5, low=0, high=1),
    Param("step_lr_step_size", "int", 5, low=1),
    Param("early_stopping", "bool", True),
    Param("early_stopping_patience", "int", 5, low=1),
    Param("early_stopping_delay", "int", 5, low=0),
    Param("evaluation_frequency", "int", 1, low=1),
    Param("checkpoint_frequency", "int", 1, low=1, optional=True,
          help="keep checkpoints/epoch_NNN.pt (the full training state) every N epochs, as Azure keeps "
               "{epoch}_model.pt; none = only last.pt (resume) and the best epoch's model/"),
    Param("layers_to_freeze", "int", None, low=0, optional=True),
    Param("gradient_accumulation_step", "int", 1, low=1, aliases=("grad_accumulation_step",)),
    Param("number_of_workers", "int", None, low=0, optional=True, aliases=("num_workers",),
          help="data loader workers; none = min(8, CPU count) (Azure's default is 8)"),
    Param("validation_data_size", "float", 0.2, low=0, high=1, low_open=True, high_open=True,
          aliases=("split_ratio", "validation_size")),
    Param("ignore_data_errors", "bool", True,
          help="train on what Azure's reader keeps: an invalid box or polygon segment, or an image that is "
               "missing or does not decode, is left out and reported in RUN/data_report.json (Azure's "
               "default); false = any data problem stops the run before training (docs/data.md)"),
    Param("random_seed", "int", None, low=0, high=2**32 - 1, optional=True, aliases=("seed",),
          help="seeds weights, shuffling and the validation split; wins over --seed; none = --seed, else a "
               "fresh seed (saved in config.json)"),
    Param("log_training_metrics", "bool", False,
          help="also compute the primary metric on the training batches at each evaluation "
               "(history.csv: PRIMARY_train); costs one more forward pass per training batch"),
    Param("log_validation_loss", "bool", True,
          help="the validation loss at each evaluation (history.csv: validation_loss); detectors pay one "
               "more forward pass per validation batch"),
    Param("enable_onnx_normalization", "bool", False,
          help="Azure: the ONNX graph takes 0-255 pixels and normalises inside. Saved with the model; visionml "
               "export --format onnx follows it (or --set enable_onnx_normalization=...)"),
    Param("distributed", "bool", True,
          help="Azure: train on every GPU of the node. visionml trains distributed when started under "
               "torchrun; false refuses a torchrun launch of more than one process"),
    # --- classification (Azure) ---
    Param("weighted_loss", "choice", 0, groups=CLS, choices=(0, 1, 2),
          help="0 none, 1 sqrt(class weights), 2 class weights"),
    # Upper bounds on image sizes: far above any real setting, low enough that a typo (or an edited
    # manifest) fails here instead of allocating tens of gigabytes per image.
    Param("training_crop_size", "int", 224, groups=CLS, low=1, high=4096, aliases=("train_crop_size",)),
    Param("validation_crop_size", "int", 224, groups=CLS, low=1, high=4096, inference=True,
          aliases=("valid_crop_size",)),
    Param("validation_resize_size", "int", 256, groups=CLS, low=1, high=4096, inference=True,
          aliases=("valid_resize_size",)),
    # --- detection and segmentation (Azure) ---
    Param("min_size", "int", 600, groups=DET, low=1, high=8192, inference=True),
    Param("max_size", "int", 1333, groups=DET, low=1, high=8192, inference=True),
    Param("box_score_threshold", "float", 0.3, groups=DET, low=0, high=1, inference=True,
          aliases=("box_score_thresh",)),
    Param("nms_iou_threshold", "float", 0.5, groups=DET, low=0, high=1, inference=True,
          aliases=("nms_iou_thresh", "box_nms_thresh")),
    Param("box_detections_per_image", "int", 100, groups=DET, low=1, inference=True,
          aliases=("box_detections_per_img",)),
    Param("validation_metric_type", "choice", "voc", groups=DET, choices=("none", "coco", "voc", "coco_voc"),
          help="none: no validation metrics; every evaluation's model replaces the last (Azure's rule)"),
    Param("validation_iou_threshold", "float", 0.5, groups=DET, low=0.1, high=1, clamp=True),
    Param("tile_grid_size", "grid", None, groups=DET, optional=True, inference=True,
          help="tiling for small objects: train on the image and its tiles, predict on both (docs/models.md)"),
    Param("tile_overlap_ratio", "float", 0.25, groups=DET, low=0, high=1, high_open=True, inference=True),
    Param("tile_predictions_nms_threshold", "float", 0.25, groups=DET, low=0, high=1, inference=True,
          aliases=("tile_predictions_nms_thresh",)),
    # --- instance segmentation (Azure) ---
    Param("mask_pixel_score_threshold", "float", 0.5, groups=SEG, low=0, high=1, inference=True),
    Param("max_number_of_polygon_points", "int", 100, groups=SEG, low=3, inference=True),
    Param("export_as_image", "bool", False, groups=SEG, inference=True,
          help="visionml predict: also write each instance's mask as an image file, in masks/ beside --output "
               "(Azure's batch scoring setting)"),
    Param("image_type", "choice", "jpg", groups=SEG, choices=("jpg", "png", "bmp"), inference=True,
          help="the file format of export_as_image's masks"),
    # --- visionml extensions (not Azure): what the cpu preset tunes ---
    Param("precision", "choice", "auto", choices=("auto", "fp32", "bf16", "fp16"), azure=False,
          help="auto: fp16 mixed precision on CUDA, fp32 on CPU"),
    Param("rpn_pre_nms_top_n_train", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept before NMS in training; none = torchvision's 2000"),
    Param("rpn_post_nms_top_n_train", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept after NMS in training; none = torchvision's 2000"),
    Param("rpn_pre_nms_top_n_test", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept before NMS at inference; none = torchvision's 1000"),
    Param("rpn_post_nms_top_n_test", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept after NMS at inference; none = torchvision's 1000"),
    Param("box_batch_size_per_image", "int", None, groups=DET, low=1, optional=True, azure=False,
          help="R-CNN sampled RoIs per image for the box head loss; none = torchvision's 512"),
    Param("anchor_sizes", "ints", None, groups=DET, low=1, optional=True, azure=False,
          help="anchor sizes in pixels: 5 (one per FPN level) for ResNet FPN and RetinaNet, "
               "any number for MobileNet FPN; none = torchvision's 32..512"),
]}

ALIASES: dict[str, str] = {alias: p.name for p in PARAMS.values() for alias in p.aliases}
"""Azure's SDK v1 / internal spellings -> the canonical (CLI/SDK v2) name."""

_YOLO = ("applies to Azure's yolov5 only, which visionml does not have (its only maintained implementation "
         "is AGPL-licensed): ignored. The R-CNN and RetinaNet models size images with min_size and max_size.")
NOTED_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    # key: (groups it belongs to, why visionml accepts it and does nothing with it)
    "image_size": (DET, _YOLO),
    "img_size": (DET, _YOLO),
    "model_size": (DET, _YOLO),
    "multi_scale": (DET, _YOLO),
    "box_iou_thresh": (DET, _YOLO),
    "augmentations": (ALL, "is an Azure service string visionml does not read: training uses Azure's default "
                           "augmentations (docs/models.md, 'Augmentation')."),
    "advanced_settings": (ALL, "carries Azure service settings (streaming images, yolov5's mosaic) that mean "
                               "nothing on one machine: ignored."),
}
"""Keys an Azure job accepts that only Azure's yolov5 or Azure's service reads: accepted, not stored, and
explained in a note."""

_CHECKPOINT = ("names a checkpoint in an Azure workspace, which visionml can neither fetch nor read. To start "
               "from earlier weights, remove it and pass --checkpoint MODEL_DIR with a visionml model folder "
               "(an earlier run's RUN/model).")
REFUSED_KEYS: dict[str, str] = {
    "checkpoint_run_id": _CHECKPOINT,
    "checkpoint_dataset_id": _CHECKPOINT,
    "checkpoint_filename": _CHECKPOINT,
    "checkpoint_model": _CHECKPOINT,
}
"""Keys an Azure job accepts whose meaning visionml cannot honour here: training without it would silently
differ from the Azure job, so they fail, saying what to do instead."""


def canonical_name(key: str) -> str:
    """The canonical name of ``key`` (itself unless it is one of Azure's other spellings)."""
    return ALIASES.get(key, key)


def canonical_overrides(task, overrides: Mapping | None, where: str = "") -> tuple[dict, list[str]]:
    """``(overrides keyed by canonical names, notes)``: the one place a user's key is resolved.

    Aliases become their canonical names (a note lists them); two spellings of one key with different
    values fail; ``NOTED_KEYS`` are dropped with their note; ``REFUSED_KEYS`` fail with what to do;
    unknown keys and keys of another task fail with the closest names (``get_param``). ``where``
    prefixes messages (e.g. the job file)."""
    task = get_task(task)
    prefix = f"{where}: " if where else ""
    out: dict = {}
    spelled: dict[str, str] = {}
    renamed, notes = [], []
    for key, raw in dict(overrides or {}).items():
        key = str(key).strip()
        if key in REFUSED_KEYS:
            raise UsageError(f"{prefix}{key} {REFUSED_KEYS[key]}")
        if key in NOTED_KEYS:
            groups, why = NOTED_KEYS[key]
            if not any(g in task.param_groups for g in groups):
                raise UsageError(f"{prefix}hyperparameter {key!r} does not apply to {task.name}: it {why}")
            notes.append(f"note: {prefix}{key} {why}")
            continue
        try:
            name = get_param(key, task).name
        except UsageError as exc:
            raise UsageError(f"{prefix}{exc}") from None
        if name in out and out[name] != raw:
            raise UsageError(f"{prefix}{spelled[name]}={out[name]!r} and {key}={raw!r} are the same hyperparameter "
                             f"({name}) with two values: give it once")
        if name != key:
            renamed.append(f"{key} -> {name}")
        out[name], spelled[name] = raw, key
    if renamed:
        notes.insert(0, f"note: {prefix}Azure's other spellings saved under their v2 names: {', '.join(renamed)}")
    return out, notes


PRESETS = ("cpu",)
"""Named groups of settings (``--preset NAME``), defined per task (``Task.cpu_preset``); explicit
``--set`` values override them. ``cpu``: train from scratch on small data on a laptop-class CPU in
minutes: small models, small images, fewer proposals, AdamW with warm-up, bf16 where native."""


class Hyperparameters(Mapping):
    """The resolved hyperparameters of one task: every key the task has, each parsed and
    range-checked, frozen. Read ``hp["learning_rate"]`` or ``hp.learning_rate``; change with
    ``hp.replace(learning_rate=0.01)``, which checks the new values like ``--set`` does."""

    __slots__ = ("_task", "_values", "_notes")

    def __init__(self, task, values: dict, notes=()):
        object.__setattr__(self, "_task", get_task(task))
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_notes", tuple(notes))

    @property
    def task(self):
        return self._task

    @property
    def notes(self) -> tuple[str, ...]:
        """What resolving these values changed or ignored, one line each ("note: ..."/"warning: ..."):
        renamed spellings, keys only Azure's yolov5 reads, clamped values, what a preset set. Training logs them."""
        return self._notes

    def __getitem__(self, key: str):
        return self._values[ALIASES.get(key, key)]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._task.name} has no hyperparameter {name!r}."
                                 f"{did_you_mean(name, self._values)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("Hyperparameters are frozen: use hp.replace(key=value)")

    def __reduce__(self):
        return Hyperparameters, (self._task.name, self._values)

    def __repr__(self) -> str:
        return f"Hyperparameters({self._task.name}, {self._values!r})"

    def replace(self, **changes) -> Hyperparameters:
        """A copy with ``changes`` (raw or typed values) parsed, checked and applied."""
        values = dict(self._values)
        changes, notes = canonical_overrides(self._task, changes)
        for key, raw in changes.items():
            values[key], note = PARAMS[key].parse_noted(raw, self._task)
            notes += [note] if note else []
        notes += _apply_model_rules(self._task, values, set(changes))
        _check_consistency(self._task, values)
        return Hyperparameters(self._task, values, (*self._notes, *notes))

    def to_json(self) -> dict:
        """Plain JSON values (tuples such as tile_grid_size become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self._values.items()}


def params_for(task) -> dict[str, Param]:
    """Every hyperparameter that applies to ``task``."""
    task = get_task(task)
    return {name: p for name, p in PARAMS.items() if p.applies_to(task)}


def inference_keys(task) -> tuple[str, ...]:
    """The settings a deployment of a ``task`` model may change without retraining."""
    return tuple(name for name, p in params_for(task).items() if p.inference)


def get_param(key: str, task) -> Param:
    """The definition of ``key`` (any of its spellings) for ``task``; UsageError for unknown or
    other-task keys, and for keys visionml accepts in a job but does not keep (``NOTED_KEYS``)."""
    task = get_task(task)
    if key in NOTED_KEYS or key in REFUSED_KEYS:
        raise UsageError(f"{key} {NOTED_KEYS[key][1] if key in NOTED_KEYS else REFUSED_KEYS[key]}")
    if canonical_name(key) not in PARAMS:
        known = [*PARAMS, *ALIASES, *NOTED_KEYS]
        raise UsageError(f"unknown hyperparameter {key!r}.{did_you_mean(key, known)} "
                         f"See docs/models.md for the full list.")
    param = PARAMS[canonical_name(key)]
    if not param.applies_to(task):
        where = ", ".join(name for name, t in _tasks().items() if param.applies_to(t))
        raise UsageError(f"hyperparameter {key!r} does not apply to {task.name}; it applies to {where}")
    return param


def _tasks():
    from .tasks import TASKS

    return TASKS


def parse_set_arguments(items: list[str], example: str = "learning_rate=0.01") -> dict[str, str]:
    """``["lr=0.1", ...]`` from repeated ``--set KEY=VALUE`` into a dict (values still strings);
    ``example`` is the KEY=VALUE the error message shows."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set {example}")
        result[key.strip()] = value.strip()
    return result


def resolve_hyperparameters(task, overrides: Mapping | None = None, preset: str | None = None) -> Hyperparameters:
    """Every hyperparameter of ``task`` with a checked value: defaults < model defaults < preset < overrides."""
    from .models.registry import get_spec

    task = get_task(task)
    given, notes = canonical_overrides(task, overrides)
    by_preset = preset_values(preset, task)
    explicit = {}
    for key, raw in {**by_preset, **given}.items():
        explicit[key], note = get_param(key, task).parse_noted(raw, task)
        notes += [note] if note else []
    model = explicit.get("model_name") or task.default_model
    resolved = {name: p.default_for(task) for name, p in params_for(task).items()}
    resolved["model_name"] = model
    resolved.update({key: get_param(key, task).parse(raw, task)
                     for key, raw in get_spec(model, task).defaults_for(task).items()})
    resolved.update(explicit)
    if by_preset:
        notes.append(_preset_note(preset, by_preset, given, resolved))
    notes += _apply_model_rules(task, resolved, set(given))
    _check_consistency(task, resolved)
    return Hyperparameters(task, resolved, notes)


def _preset_note(preset: str, by_preset: dict, given: dict, resolved: dict) -> str:
    """One line: the keys ``--preset`` set (the values used) and the ones the user's values overrode."""
    kept = [k for k in by_preset if k in given]
    values = ", ".join(f"{k}={_show(resolved[k])}" for k in by_preset if k not in given)
    return (f"note: --preset {preset} set {values or 'nothing'}"
            + (f" (your values kept for {', '.join(kept)})" if kept else ""))


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _apply_model_rules(task, values: dict, explicit: set) -> list[str]:
    """Azure's per-model rules that adjust values (not refuse them), with a note when one changed. ViTs
    train at the validation crop: Azure forces ``training_crop_size`` to ``validation_crop_size``."""
    from .models.registry import get_spec

    spec = get_spec(values["model_name"], task)
    notes = []
    if spec.same_crop_sizes and "training_crop_size" in values \
            and values["training_crop_size"] != values["validation_crop_size"]:
        was = values["training_crop_size"]
        values["training_crop_size"] = values["validation_crop_size"]
        if "training_crop_size" in explicit:
            notes.append(f"note: {spec.name} trains at validation_crop_size ({values['validation_crop_size']}), as "
                         f"Azure does: training_crop_size {was} was replaced. Set validation_crop_size to train "
                         f"at another size (the position embeddings are resized to it).")
    return notes


def check_supported(hp: Mapping) -> None:
    """Refuse, before any work, settings that are parsed and checked but whose feature visionml does
    not have yet, rather than train without it: a ported Azure job must not silently differ. Every
    Azure key visionml keeps is honoured today (tiling, the last one refused, is in visionml.tiling);
    training and sweeps still call this first, so a key added before its feature is refused here."""


def preset_values(preset: str | None, task) -> dict:
    """The settings preset ``preset`` gives ``task`` (empty without a preset)."""
    if not preset:
        return {}
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}.{did_you_mean(preset, PRESETS, n=2, cutoff=0.4)} "
                         f"Presets: {', '.join(PRESETS)}.")
    return dict(get_task(task).cpu_preset)


def _check_consistency(task, hp: dict) -> None:
    """Cross-field rules that single-value ranges cannot express (each applies where its keys exist)."""
    from .models.registry import get_spec

    spec = get_spec(hp["model_name"], task)
    if "validation_crop_size" in hp:
        if hp["validation_resize_size"] < hp["validation_crop_size"]:
            raise UsageError(f"validation_resize_size ({hp['validation_resize_size']}) must be at least "
                             f"validation_crop_size ({hp['validation_crop_size']})")
        if spec.patch_size and hp["validation_crop_size"] < spec.patch_size:
            raise UsageError(f"{spec.name} cuts the image into {spec.patch_size}-pixel patches: validation_crop_size "
                             f"must be at least {spec.patch_size} (got {hp['validation_crop_size']})")
        if spec.fixed_input_size:
            for key in ("training_crop_size", "validation_crop_size"):
                if hp[key] != spec.input_size:
                    raise UsageError(f"{spec.name} takes {spec.input_size}x{spec.input_size} inputs only: "
                                     f"set {key}={spec.input_size} (got {hp[key]})")
    if "max_size" in hp and hp["max_size"] < hp["min_size"]:
        raise UsageError(f"max_size ({hp['max_size']}) must be at least min_size ({hp['min_size']})")


def cpu_time_hint(task, hp: Mapping, n_images: int | None = None, *, device: str = "cpu",
                  preset: str | None = None) -> str | None:
    """A one-line hint naming ``--preset cpu`` when these settings will take hours on a CPU.

    A rough estimate: seconds per training image for the model at its input size, measured on a
    2-core CPU (see docs/models.md), times images and epochs. None on a GPU, when fast enough, or
    when the run already uses the ``cpu`` preset (the hint's only advice).
    """
    if not str(device).startswith("cpu") or preset == "cpu":
        return None
    task = get_task(task)
    seconds = _cpu_seconds_per_image(task, hp)
    images = n_images if n_images is not None else 500
    hours = seconds * images * hp["number_of_epochs"] / 3600
    if hours < 0.5:
        return None
    cpu_model = task.cpu_preset.get("model_name", task.default_model)
    size = f"{images} images" if n_images is not None else "500 images (a guess)"
    return (f"hint: {hp['model_name']} with these settings needs roughly {hours:.1f} hours on this CPU for "
            f"{size} x {hp['number_of_epochs']} epochs. `--preset cpu` trains {cpu_model} at a small image "
            f"size in minutes (add --no-pretrained to train from scratch); --set values still override it.")


def _cpu_seconds_per_image(task, hp: Mapping) -> float:
    """Training seconds per image on a 2-core CPU in fp32 at a reference size (pixels of the shorter
    side), scaled by image area: measured per model where the registry has a figure, else the
    family's, scaled by parameters relative to the model the family's figure was measured on."""
    from .models.registry import get_spec, parameter_count

    spec = get_spec(hp["model_name"], task)
    family = spec.family
    if spec.cpu_cost is not None:
        seconds, ref = spec.cpu_cost
    else:
        seconds, ref = family.cpu_seconds, family.cpu_reference_size
        if family.cpu_reference_model:
            seconds *= parameter_count(spec.name) / parameter_count(family.cpu_reference_model)
    if hp["precision"] == "bf16" and _native_bf16():  # bf16 autocast about halves conv-net time where native
        seconds *= 0.5
    return seconds * (family.cpu_size(hp) / ref) ** 2


def _native_bf16() -> bool:
    from .explain.methods import bf16_available

    import torch

    return bf16_available(torch.device("cpu"))
