"""Models by the names users type: the registry, the families, builders, pretrained weights and
layer freezing.

Importing this package registers every model (builders import torch/torchvision lazily).
"""

from . import classification, detection  # noqa: F401  (registers the models)
from .families import FAMILIES, ModelFamily
from .freeze import freeze_groups, freeze_layers
from .registry import MODELS, ModelSpec, all_specs, build_model, get_spec, models_for, parameter_count

__all__ = [
    "FAMILIES", "MODELS", "ModelFamily", "ModelSpec", "all_specs", "build_model", "freeze_groups", "freeze_layers",
    "get_spec", "models_for", "parameter_count",
]
