"""Hyperparameters: one typed definition each, Azure's names and defaults, parsed without eval.

Reference: Azure Machine Learning, "Hyperparameters for computer vision tasks in automated
machine learning" (https://learn.microsoft.com/azure/machine-learning/reference-automl-images-hyperparameters).
Keys marked ``azure=False`` are visionml extensions (precision, proposal budgets, anchors)
that the ``cpu`` preset needs; Azure jobs never set them, so their defaults change nothing.

``resolve_hyperparameters(task, overrides, preset)`` layers defaults < preset < overrides,
parses strings by type, range-checks, and rejects unknown keys with the closest names.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS, canonical_task

ALL = TASKS
CLS = (MULTICLASS, MULTILABEL)
DET = (DETECTION, SEGMENTATION)
SEG = (SEGMENTATION,)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", ""}


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default (one value, or one per task), range and tasks."""

    name: str
    kind: str  # int, float, bool, choice, model, grid ("3x2"), ints ("16,32,64")
    default: Any
    tasks: tuple[str, ...] = ALL
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False  # None allowed ("none"/"null")
    azure: bool = True
    help: str = ""

    def default_for(self, task: str):
        return self.default.get(task) if isinstance(self.default, dict) else self.default

    def parse(self, raw, task: str | None = None):
        """Turn ``raw`` (a string from --set, or a YAML/JSON value) into a checked value."""
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE):
            if self.optional:
                return None
            raise UsageError(f"{self.name} needs a value ({self.describe()})")
        value = _PARSERS[self.kind](self, raw)
        self._check_range(value, raw)
        if self.kind == "model" and task is not None:
            from .models.registry import get_spec

            value = get_spec(value, task).name
        return value

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
    close = difflib.get_close_matches(str(raw).strip().lower(), [str(c) for c in p.choices], n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
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
    return cols, rows


def _parse_ints(p: Param, raw) -> tuple[int, ...]:
    parts = list(raw) if isinstance(raw, (list, tuple)) else re.split(r"[\s,]+", str(raw).strip().strip("()[]"))
    values = tuple(_parse_int(p, v) for v in parts if str(v).strip())
    if not values:
        raise UsageError(f"{p.name}={raw!r} is empty: use {p.describe()}")
    return values


_PARSERS = {"int": _parse_int, "float": _parse_float, "bool": _parse_bool, "choice": _parse_choice,
            "model": _parse_model, "grid": _parse_grid, "ints": _parse_ints}


def _model_defaults():
    from .models.registry import DEFAULT_MODEL

    return dict(DEFAULT_MODEL)


PARAMS: dict[str, Param] = {p.name: p for p in [
    # --- model agnostic (Azure) ---
    Param("model_name", "model", None, help="registry name (visionml models); default per task"),
    Param("number_of_epochs", "int", 15, low=1),
    Param("training_batch_size", "int", {MULTICLASS: 78, MULTILABEL: 78, DETECTION: 2, SEGMENTATION: 2}, low=1),
    Param("validation_batch_size", "int", {MULTICLASS: 78, MULTILABEL: 78, DETECTION: 1, SEGMENTATION: 1}, low=1),
    Param("learning_rate", "float", {MULTICLASS: 0.01, MULTILABEL: 0.035, DETECTION: 0.005, SEGMENTATION: 0.005},
          low=0, high=1, low_open=True),
    Param("optimizer", "choice", "sgd", choices=("sgd", "adam", "adamw")),
    Param("momentum", "float", 0.9, low=0, high=1),
    Param("weight_decay", "float", 1e-4, low=0, high=1),
    Param("nesterov", "bool", True),
    Param("beta1", "float", 0.9, low=0, high=1),
    Param("beta2", "float", 0.999, low=0, high=1),
    Param("ams_gradient", "bool", False),
    Param("learning_rate_scheduler", "choice", "warmup_cosine", choices=("warmup_cosine", "step")),
    Param("warmup_cosine_lr_cycles", "float", 0.45, low=0, high=1),
    Param("warmup_cosine_lr_warmup_epochs", "int", 2, low=0),
    Param("step_lr_gamma", "float", 0.5, low=0, high=1),
    Param("step_lr_step_size", "int", 5, low=1),
    Param("early_stopping", "bool", True),
    Param("early_stopping_patience", "int", 5, low=1),
    Param("early_stopping_delay", "int", 5, low=0),
    Param("evaluation_frequency", "int", 1, low=1),
    Param("checkpoint_frequency", "int", None, low=1, optional=True,
          help="also keep checkpoints/epoch_NNN.pt every N epochs; none = only last.pt (resume) and "
               "the best epoch's model/ (Azure's default)"),
    Param("layers_to_freeze", "int", None, low=0, optional=True),
    Param("gradient_accumulation_step", "int", 1, low=1),
    Param("number_of_workers", "int", None, low=0, optional=True,
          help="data loader workers; none = min(8, CPU count) (Azure's default is 8)"),
    Param("validation_data_size", "float", 0.2, low=0, high=1, low_open=True, high_open=True),
    # --- classification (Azure) ---
    Param("weighted_loss", "choice", 0, tasks=CLS, choices=(0, 1, 2),
          help="0 none, 1 sqrt(class weights), 2 class weights"),
    # Upper bounds on image sizes: far above any real setting, low enough that a typo (or an edited
    # manifest) fails here instead of allocating tens of gigabytes per image.
    Param("training_crop_size", "int", 224, tasks=CLS, low=1, high=4096),
    Param("validation_crop_size", "int", 224, tasks=CLS, low=1, high=4096),
    Param("validation_resize_size", "int", 256, tasks=CLS, low=1, high=4096),
    # --- detection and segmentation (Azure) ---
    Param("min_size", "int", 600, tasks=DET, low=1, high=8192),
    Param("max_size", "int", 1333, tasks=DET, low=1, high=8192),
    Param("box_score_threshold", "float", 0.3, tasks=DET, low=0, high=1),
    Param("nms_iou_threshold", "float", 0.5, tasks=DET, low=0, high=1),
    Param("box_detections_per_image", "int", 100, tasks=DET, low=1),
    Param("validation_metric_type", "choice", "voc", tasks=DET, choices=("none", "coco", "voc", "coco_voc")),
    Param("validation_iou_threshold", "float", 0.5, tasks=DET, low=0.1, high=1),
    Param("tile_grid_size", "grid", None, tasks=DET, optional=True),
    Param("tile_overlap_ratio", "float", 0.25, tasks=DET, low=0, high=1, high_open=True),
    Param("tile_predictions_nms_threshold", "float", 0.25, tasks=DET, low=0, high=1),
    # --- instance segmentation (Azure) ---
    Param("mask_pixel_score_threshold", "float", 0.5, tasks=SEG, low=0, high=1),
    Param("max_number_of_polygon_points", "int", 100, tasks=SEG, low=3),
    # --- visionml extensions (not Azure): what the cpu preset tunes ---
    Param("precision", "choice", "auto", choices=("auto", "fp32", "bf16", "fp16"), azure=False,
          help="auto: fp16 mixed precision on CUDA, fp32 on CPU"),
    Param("rpn_pre_nms_top_n_train", "int", None, tasks=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept before NMS in training; none = torchvision's 2000"),
    Param("rpn_post_nms_top_n_train", "int", None, tasks=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept after NMS in training; none = torchvision's 2000"),
    Param("rpn_pre_nms_top_n_test", "int", None, tasks=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept before NMS at inference; none = torchvision's 1000"),
    Param("rpn_post_nms_top_n_test", "int", None, tasks=DET, low=1, optional=True, azure=False,
          help="R-CNN proposals kept after NMS at inference; none = torchvision's 1000"),
    Param("box_batch_size_per_image", "int", None, tasks=DET, low=1, optional=True, azure=False,
          help="R-CNN sampled RoIs per image for the box head loss; none = torchvision's 512"),
    Param("anchor_sizes", "ints", None, tasks=DET, low=1, optional=True, azure=False,
          help="anchor sizes in pixels: 5 (one per FPN level) for ResNet FPN and RetinaNet, "
               "any number for MobileNet FPN; none = torchvision's 32..512"),
]}

# Azure's model-specific defaults (batch sizes that fit a 12 GiB GPU for the ViTs).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "vits16r224": {"training_batch_size": 128, "validation_batch_size": 128},
    "vitb16r224": {"training_batch_size": 48, "validation_batch_size": 48},
    "vitl16r224": {"training_batch_size": 10, "validation_batch_size": 10},
}

# Named groups of settings (``--preset NAME``): explicit --set values override them.
# ``cpu``: train from scratch on small data on a laptop-class CPU in minutes (the issue's
# measured settings): small models, small images, fewer proposals, AdamW with warm-up, bf16.
# Classifiers: resnet18 at 64 px (~170-280 images/s on 2 cores in bf16), batch 16. From scratch
# the shapes are learnt after a plateau of ~5 epochs, hence the early-stopping delay.
_CPU_CLASSIFIER = {
    "model_name": "resnet18", "number_of_epochs": 10, "training_batch_size": 16, "validation_batch_size": 64,
    "optimizer": "adamw", "learning_rate": 0.001, "weight_decay": 0.01, "warmup_cosine_lr_warmup_epochs": 1,
    "warmup_cosine_lr_cycles": 0.5, "training_crop_size": 64, "validation_resize_size": 73,
    "validation_crop_size": 64, "early_stopping_delay": 6, "precision": "bf16",
}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        MULTICLASS: dict(_CPU_CLASSIFIER),
        MULTILABEL: {**_CPU_CLASSIFIER, "number_of_epochs": 14},
        DETECTION: {
            "model_name": "fasterrcnn_mobilenet_v3_large_fpn", "number_of_epochs": 8,
            "training_batch_size": 4, "validation_batch_size": 4, "optimizer": "adamw", "learning_rate": 0.001,
            "weight_decay": 1e-4, "warmup_cosine_lr_warmup_epochs": 1, "warmup_cosine_lr_cycles": 0.5,
            "min_size": 240, "max_size": 320, "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
            "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150, "box_batch_size_per_image": 128,
            "anchor_sizes": (16, 32, 64, 128), "early_stopping_delay": 6, "precision": "bf16",
        },
        SEGMENTATION: {
            "model_name": "maskrcnn_resnet18_fpn", "number_of_epochs": 4, "training_batch_size": 4,
            "validation_batch_size": 4, "optimizer": "adamw", "learning_rate": 0.001, "weight_decay": 1e-4,
            "warmup_cosine_lr_warmup_epochs": 1, "warmup_cosine_lr_cycles": 0.5, "min_size": 160,
            "max_size": 224, "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
            "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150, "box_batch_size_per_image": 128,
            "anchor_sizes": (16, 32, 64, 128, 256), "early_stopping_delay": 5, "precision": "bf16",
        },
    },
}


def params_for(task: str) -> dict[str, Param]:
    task = canonical_task(task)
    return {name: p for name, p in PARAMS.items() if task in p.tasks}


def get_param(key: str, task: str) -> Param:
    """The definition of ``key`` for ``task``; UsageError for unknown or other-task keys."""
    if key not in PARAMS:
        close = difflib.get_close_matches(key, list(PARAMS), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown hyperparameter {key!r}.{hint} See docs/models.md for the full list.")
    param = PARAMS[key]
    if task not in param.tasks:
        raise UsageError(f"hyperparameter {key!r} does not apply to {task}; it applies to {', '.join(param.tasks)}")
    return param


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


def resolve_hyperparameters(task: str, overrides: dict | None = None, preset: str | None = None) -> dict:
    """Every hyperparameter of ``task`` with a checked value: defaults < model defaults < preset < overrides."""
    task = canonical_task(task)
    overrides = dict(overrides or {})
    layer = _preset_layer(task, preset)
    explicit = {}
    for key, raw in {**layer, **overrides}.items():
        explicit[key] = get_param(key, task).parse(raw, task)
    model = explicit.get("model_name") or _model_defaults()[task]
    resolved = {name: p.default_for(task) for name, p in params_for(task).items()}
    resolved["model_name"] = model
    resolved.update(MODEL_DEFAULTS.get(model, {}))
    resolved.update(explicit)
    _check_consistency(task, resolved)
    return resolved


def check_supported(hp: dict) -> None:
    """Refuse, before any work, settings that are parsed and checked but whose feature visionml does
    not have yet, rather than train without it: a ported Azure job must not silently differ."""
    if hp.get("tile_grid_size") is not None:
        raise UsageError(
            f"tile_grid_size={hp['tile_grid_size']!r}: tiling (Azure's small-object detection: training and "
            "predicting on overlapping tiles) is not implemented in visionml yet. Remove tile_grid_size "
            "(tile_overlap_ratio and tile_predictions_nms_threshold only apply with it); for small objects, "
            "train at a larger min_size/max_size instead.")


def _preset_layer(task: str, preset: str | None) -> dict:
    if not preset:
        return {}
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=2, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown preset {preset!r}.{hint} Presets: {', '.join(PRESETS)}.")
    return dict(PRESETS[preset].get(task, {}))


def _check_consistency(task: str, hp: dict) -> None:
    """Cross-field rules that single-value ranges cannot express."""
    from .models.registry import get_spec

    spec = get_spec(hp["model_name"], task)
    if task in CLS:
        if hp["validation_resize_size"] < hp["validation_crop_size"]:
            raise UsageError(f"validation_resize_size ({hp['validation_resize_size']}) must be at least "
                             f"validation_crop_size ({hp['validation_crop_size']})")
        if spec.fixed_input_size:
            for key in ("training_crop_size", "validation_crop_size"):
                if hp[key] != spec.input_size:
                    raise UsageError(f"{spec.name} takes {spec.input_size}x{spec.input_size} inputs only: "
                                     f"set {key}={spec.input_size} (got {hp[key]})")
    else:
        if hp["max_size"] < hp["min_size"]:
            raise UsageError(f"max_size ({hp['max_size']}) must be at least min_size ({hp['min_size']})")


def cpu_time_hint(task: str, hp: dict, n_images: int | None = None, *, device: str = "cpu",
                  preset: str | None = None) -> str | None:
    """A one-line hint naming ``--preset cpu`` when these settings will take hours on a CPU.

    A rough estimate: seconds per training image for the model at its input size, measured on a
    2-core CPU (see docs/models.md), times images and epochs. None on a GPU, when fast enough, or
    when the run already uses the ``cpu`` preset (the hint's only advice).
    """
    if not str(device).startswith("cpu") or preset == "cpu":
        return None
    task = canonical_task(task)
    seconds = _cpu_seconds_per_image(task, hp)
    images = n_images if n_images is not None else 500
    hours = seconds * images * hp.get("number_of_epochs", 15) / 3600
    if hours < 0.5:
        return None
    cpu_model = PRESETS["cpu"][task]["model_name"]
    size = f"{images} images" if n_images is not None else "500 images (a guess)"
    return (f"hint: {hp['model_name']} with these settings needs roughly {hours:.1f} hours on this CPU for "
            f"{size} x {hp.get('number_of_epochs')} epochs. `--preset cpu` trains {cpu_model} at a small image "
            f"size in minutes (add --no-pretrained to train from scratch); --set values still override it.")


# Training seconds per image on a 2-core CPU in fp32 at a reference size (pixels of the shorter
# side), scaled by image area. Detectors: issue 4's measurements (3.4 images/s at 240 px; 0.6
# images/s at 800 px); classifiers: resnet18/resnet50 steps of 16 images at 224 px, 2026-11-27.
_CPU_COST = {
    "fasterrcnn_mobilenet_v3_large_fpn": (0.29, 240),
    "maskrcnn_resnet18_fpn": (0.7, 160),
    "resnet18": (0.1, 224),
}
_FAMILY_COST = {"classifier": (0.3, 224), "fasterrcnn": (1.7, 800), "maskrcnn": (2.0, 800),
                "retinanet": (1.8, 800), "ssdlite": (0.1, 320)}


def _cpu_seconds_per_image(task: str, hp: dict) -> float:
    from .models.registry import get_spec, parameter_count

    spec = get_spec(hp["model_name"], task)
    if spec.name in _CPU_COST:
        seconds, ref = _CPU_COST[spec.name]
    else:
        seconds, ref = _FAMILY_COST[spec.family]
        # Bigger backbones cost more: scale by parameters relative to the family's reference model.
        reference = {"classifier": "resnet50", "fasterrcnn": "fasterrcnn_resnet50_fpn",
                     "maskrcnn": "maskrcnn_resnet50_fpn"}.get(spec.family)
        if reference:
            seconds *= parameter_count(spec.name) / parameter_count(reference)
    if hp.get("precision") == "bf16":  # bf16 autocast about halves conv-net time on a CPU with AVX-512 BF16
        seconds *= 0.5
    if spec.family == "ssdlite":
        size = ref
    elif task in CLS:
        size = hp.get("training_crop_size", 224)
    else:
        size = hp.get("min_size", 600)
    return seconds * (size / ref) ** 2
