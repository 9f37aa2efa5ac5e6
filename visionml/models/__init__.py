"""Models by the names users type: the registry, builders, pretrained weights and layer freezing.

Importing this package registers every model (builders import torch/torchvision lazily).
"""

from . import classification, detection  # noqa: F401  (registers the models)
from .freeze import freeze_layers, freeze_groups
from .registry import (
    CPU_DEFAULT_MODEL, DEFAULT_MODEL, MODELS, ModelSpec, all_specs, build_model, get_spec, models_for,
    parameter_count,
)

__all__ = [
    "CPU_DEFAULT_MODEL", "DEFAULT_MODEL", "MODELS", "ModelSpec", "all_specs", "build_model", "freeze_groups",
    "freeze_layers", "get_spec", "models_for", "parameter_count",
]
