"""The model registry: one ``ModelSpec`` per name a user types, filled by a decorator.

Names are Azure AutoML's where Azure has them (``resnet50``, ``fasterrcnn_resnet50_fpn``,
``maskrcnn_resnet50_fpn``, ``vitb16r224`` ...) plus torchvision's fast CPU models. Builders
import torchvision/timm lazily so that importing the registry (for ``--help``, config
validation, ``visionml models``) stays cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from ..data.dataconfig import IMAGENET_MEAN, IMAGENET_STD
from ..errors import UsageError, did_you_mean
from ..tasks import TASKS, get_task
from .families import ModelFamily

# Names that appear in Azure's examples but that no permissively licensed maintained library
# provides: they fail with the closest supported model, never a silent substitute.
UNSUPPORTED = {
    "yolov5": (
        "yolov5 is not available in visionml: its only maintained implementation (Ultralytics) is "
        "AGPL-3.0 licensed. The closest supported detectors are fasterrcnn_mobilenet_v3_large_fpn "
        "(fast on CPU) and fasterrcnn_resnet50_fpn (more accurate); pass one with --model-name."
    ),
}


# Azure clips every gradient before each optimizer step (common/constants.py TrainingCommonSettings):
# each component to [-5, 5] by default, the total norm to 1 for its ViTs.
CLIP_BY_VALUE = ("value", 5.0)
CLIP_BY_NORM = ("norm", 1.0)


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of visionml needs to know about a model without building it."""

    name: str
    family: ModelFamily  # what the architecture family shares (models/families.py)
    source: str  # "torchvision" or "timm"
    builder: Callable  # (spec, task, num_classes, pretrained, hp, fetch) -> nn.Module
    input_size: int | None = None  # classification crop size the weights were trained at
    fixed_input_size: bool = False  # takes input_size only (no registered model: ViTs resize their embeddings)
    same_crop_sizes: bool = False
    """Trains at ``validation_crop_size`` (Azure forces ``training_crop_size`` to it for its ViTs)."""
    patch_size: int | None = None  # ViT: the crop must hold at least one patch
    gradcam_layer: str | None = None  # dotted module name of the last conv stage; None for ViT
    weights: str | None = None  # "torchvision:EnumName.MEMBER" or "timm:model.tag"
    description: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation (classifiers)
    std: tuple[float, float, float] = IMAGENET_STD
    hp_defaults: dict = field(default_factory=dict)
    """Azure's defaults for this model ({key: value}, or {task name: {key: value}} per task)."""
    grad_clip: tuple[str, float] = CLIP_BY_VALUE
    """How training clips gradients before each step, as Azure does for this model: ("value", limit)
    clips each gradient component, ("norm", max_norm) the total norm. Not a hyperparameter: Azure's
    jobs cannot set it either."""
    cpu_cost: tuple[float, int] | None = None
    """(training seconds per image on a 2-core CPU in fp32, at this image side): measured on this model."""

    @property
    def tasks(self) -> tuple[str, ...]:
        """The registered tasks this model can learn."""
        return tuple(name for name, task in TASKS.items() if task.model_kind == self.family.kind)

    def defaults_for(self, task) -> dict:
        """This model's hyperparameter defaults for ``task``."""
        task = get_task(task)
        flat = {k: v for k, v in self.hp_defaults.items() if not isinstance(v, dict)}
        return {**flat, **self.hp_defaults.get(task.name, {})}

    @property
    def parameters(self) -> int:
        """Parameter count at the reference head size (1000 classes / 91 COCO classes)."""
        return parameter_count(self.name)


MODELS: dict[str, ModelSpec] = {}


def register(name: str, family: ModelFamily, source: str = "torchvision", **fields):
    """Decorator: register ``builder`` under ``name`` (the name users type)."""

    def wrap(builder):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = ModelSpec(name=name, family=family, source=source, builder=builder, **fields)
        return builder

    return wrap


def models_for(task) -> list[str]:
    """The registry names that can learn ``task`` (any spelling or a Task)."""
    _ensure_registered()
    kind = get_task(task).model_kind
    return [name for name, spec in MODELS.items() if spec.family.kind == kind]


def get_spec(name: str, task: str | None = None) -> ModelSpec:
    """The spec for ``name``; a clear ``UsageError`` for unknown, unsupported or wrong-task names."""
    _ensure_registered()
    key = name.strip().lower() if isinstance(name, str) else name
    if key in UNSUPPORTED:
        raise UsageError(UNSUPPORTED[key])
    if key not in MODELS:
        hint = did_you_mean(key, list(MODELS) + list(UNSUPPORTED), cutoff=0.5)
        raise UsageError(f"unknown model_name {name!r}.{hint} Run `visionml models` to list them all.")
    spec = MODELS[key]
    if task is not None:
        task = get_task(task)
        if spec.family.kind != task.model_kind:
            raise UsageError(
                f"model_name {name!r} is for {' and '.join(spec.tasks)}, not {task.name}. "
                f"Models for {task.name}: {', '.join(models_for(task))}."
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
    task = get_task(task)
    spec = get_spec(name, task)
    if num_classes < 1:
        raise UsageError(f"a model needs at least one class, got {num_classes}")
    heads = spec.family.head_classes(num_classes)
    model = spec.builder(spec, task, heads, bool(pretrained), hp if hp is not None else {}, fetch_weights)
    model.visionml_pretrained = bool(pretrained)
    return model


@functools.lru_cache(maxsize=None)
def parameter_count(name: str) -> int:
    """Count parameters by building the model on the meta device (no memory, no weights)."""
    import torch

    from ..config import resolve_hyperparameters

    spec = get_spec(name)
    reference_classes = 1000 if spec.family.kind == "classifier" else 90
    task = spec.tasks[0]
    with torch.device("meta"):
        model = build_model(name, task, reference_classes, pretrained=False,
                            hp=resolve_hyperparameters(task, {"model_name": name}))
    return sum(p.numel() for p in model.parameters())


def _ensure_registered() -> None:
    # The builders live in sibling modules that register themselves on import.
    from . import classification, detection  # noqa: F401


def all_specs() -> list[ModelSpec]:
    _ensure_registered()
    order = {task: i for i, task in enumerate(TASKS)}
    return sorted(MODELS.values(), key=lambda s: (order.get(s.tasks[0], len(order)) if s.tasks else len(order),
                                                  list(MODELS).index(s.name)))
