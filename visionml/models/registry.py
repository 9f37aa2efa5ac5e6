"""The model registry: one ``ModelSpec`` per name a user types, filled by a decorator.

Names are Azure AutoML's where Azure has them (``resnet50``, ``fasterrcnn_resnet50_fpn``,
``maskrcnn_resnet50_fpn``, ``vitb16r224`` ...) plus torchvision's fast CPU models. Builders
import torchvision/timm lazily so that importing the registry (for ``--help``, config
validation, ``visionml models``) stays cheap.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError
from ..tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS, canonical_task

CLASSIFICATION = (MULTICLASS, MULTILABEL)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Names that appear in Azure's examples but that no permissively licensed maintained library
# provides: they fail with the closest supported model, never a silent substitute.
UNSUPPORTED = {
    "yolov5": (
        "yolov5 is not available in visionml: its only maintained implementation (Ultralytics) is "
        "AGPL-3.0 licensed. The closest supported detectors are fasterrcnn_mobilenet_v3_large_fpn "
        "(fast on CPU) and fasterrcnn_resnet50_fpn (more accurate); pass one with --model-name."
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of visionml needs to know about a model without building it."""

    name: str
    tasks: tuple[str, ...]
    family: str  # "classifier", "fasterrcnn", "maskrcnn", "retinanet", "ssdlite"
    source: str  # "torchvision" or "timm"
    builder: Callable  # (spec, task, num_classes, pretrained, hp, fetch) -> nn.Module
    input_size: int | None = None  # classification crop size the weights were trained at
    fixed_input_size: bool = False  # ViT: crop size must equal input_size
    gradcam_layer: str | None = None  # dotted module name of the last conv stage; None for ViT
    weights: str | None = None  # "torchvision:EnumName.MEMBER" or "timm:model.tag"
    description: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation (classifiers)
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def is_detector(self) -> bool:
        return self.family != "classifier"

    @property
    def parameters(self) -> int:
        """Parameter count at the reference head size (1000 classes / 91 COCO classes)."""
        return parameter_count(self.name)


MODELS: dict[str, ModelSpec] = {}


def register(name: str, tasks, family: str, source: str = "torchvision", **fields):
    """Decorator: register ``builder`` under ``name`` (the name users type)."""

    def wrap(builder):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = ModelSpec(name=name, tasks=tuple(tasks), family=family, source=source,
                                 builder=builder, **fields)
        return builder

    return wrap


# The model each task uses when none is named: Azure's default where visionml has it
# (Azure's detection default is yolov5, which is not available: see UNSUPPORTED).
DEFAULT_MODEL = {
    MULTICLASS: "seresnext",
    MULTILABEL: "seresnext",
    DETECTION: "fasterrcnn_resnet50_fpn",
    SEGMENTATION: "maskrcnn_resnet50_fpn",
}

# The model the ``cpu`` preset trains from scratch on a CPU in minutes (config.PRESETS).
CPU_DEFAULT_MODEL = {
    MULTICLASS: "resnet18",
    MULTILABEL: "resnet18",
    DETECTION: "fasterrcnn_mobilenet_v3_large_fpn",
    SEGMENTATION: "maskrcnn_resnet18_fpn",
}


def models_for(task: str) -> list[str]:
    task = canonical_task(task)
    return [name for name, spec in MODELS.items() if task in spec.tasks]


def get_spec(name: str, task: str | None = None) -> ModelSpec:
    """The spec for ``name``; a clear ``UsageError`` for unknown, unsupported or wrong-task names."""
    _ensure_registered()
    key = name.strip().lower() if isinstance(name, str) else name
    if key in UNSUPPORTED:
        raise UsageError(UNSUPPORTED[key])
    if key not in MODELS:
        close = difflib.get_close_matches(str(key), list(MODELS) + list(UNSUPPORTED), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown model_name {name!r}.{hint} Run `visionml models` to list them all.")
    spec = MODELS[key]
    if task is not None:
        task = canonical_task(task)
        if task not in spec.tasks:
            raise UsageError(
                f"model_name {name!r} is for {' and '.join(spec.tasks)}, not {task}. "
                f"Models for {task}: {', '.join(models_for(task))}."
            )
    return spec


def build_model(name: str, task: str, num_classes: int, *, pretrained: bool, hp: dict | None = None,
                fetch_weights: bool = True):
    """Build ``name`` for ``task`` with its head sized to ``num_classes`` (the user's labels).

    Detection/segmentation callers pass ``len(labels)``; the background class torchvision
    detectors need is added here. ``hp`` carries the resolved hyperparameters (detector sizes,
    thresholds, proposal counts, anchors); missing keys take torchvision's defaults.
    With ``pretrained`` the weights come from torch's hub cache (``weights.ensure_cached``),
    which fails fast with the file to put where when it is neither cached nor downloadable.
    ``pretrained=True, fetch_weights=False`` builds the fine-tuning layout (frozen BatchNorm in
    detectors) without weights: how a saved model folder is rebuilt before its own weights load.
    The model remembers ``visionml_pretrained`` so that ``modelio`` can record the layout.
    """
    task = canonical_task(task)
    spec = get_spec(name, task)
    if num_classes < 1:
        raise UsageError(f"a model needs at least one class, got {num_classes}")
    heads = num_classes + 1 if spec.is_detector else num_classes
    model = spec.builder(spec, task, heads, bool(pretrained), dict(hp or {}), fetch_weights)
    model.visionml_pretrained = bool(pretrained)
    return model


@functools.lru_cache(maxsize=None)
def parameter_count(name: str) -> int:
    """Count parameters by building the model on the meta device (no memory, no weights)."""
    import torch

    spec = get_spec(name)
    reference_classes = 1000 if spec.family == "classifier" else 90
    with torch.device("meta"):
        model = build_model(name, spec.tasks[0], reference_classes, pretrained=False, hp={})
    return sum(p.numel() for p in model.parameters())


def _ensure_registered() -> None:
    # The builders live in sibling modules that register themselves on import.
    from . import classification, detection  # noqa: F401


def all_specs() -> list[ModelSpec]:
    _ensure_registered()
    order = {task: i for i, task in enumerate(TASKS)}
    return sorted(MODELS.values(), key=lambda s: (order[s.tasks[0]], list(MODELS).index(s.name)))
