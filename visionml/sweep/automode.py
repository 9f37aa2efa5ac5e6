"""AutoMode: the built-in search space per task when a job gives ``max_trials`` > 1 and no
``search_space`` (as Azure does). On a machine without a GPU it sweeps models that train in
minutes on a CPU; with a GPU, Azure's own larger models."""

from __future__ import annotations

from ..tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION
from .space import parse_search_space

_CPU = {
    MULTICLASS: [
        {"model_name": "choice('mobilenet_v3_large', 'resnet18', 'efficientnet_b0')",
         "learning_rate": "uniform(0.0005, 0.005)", "optimizer": "choice('adamw', 'sgd')"},
    ],
    MULTILABEL: [
        {"model_name": "choice('mobilenet_v3_large', 'resnet18', 'efficientnet_b0')",
         "learning_rate": "uniform(0.0005, 0.005)", "optimizer": "choice('adamw', 'sgd')"},
    ],
    DETECTION: [
        {"model_name": "choice('fasterrcnn_mobilenet_v3_large_fpn')",
         "learning_rate": "uniform(0.0003, 0.003)"},
        {"model_name": "choice('fasterrcnn_resnet18_fpn')", "learning_rate": "uniform(0.0003, 0.003)"},
    ],
    SEGMENTATION: [
        {"model_name": "choice('maskrcnn_resnet18_fpn')", "learning_rate": "uniform(0.0003, 0.003)"},
    ],
}

_GPU = {
    MULTICLASS: [
        {"model_name": "choice('vitb16r224', 'resnet50', 'seresnext')",
         "learning_rate": "uniform(0.001, 0.01)", "optimizer": "choice('sgd', 'adamw')"},
    ],
    MULTILABEL: [
        {"model_name": "choice('vitb16r224', 'resnet50', 'seresnext')",
         "learning_rate": "uniform(0.005, 0.05)", "optimizer": "choice('sgd', 'adamw')"},
    ],
    DETECTION: [
        {"model_name": "choice('fasterrcnn_resnet50_fpn', 'retinanet_resnet50_fpn')",
         "learning_rate": "uniform(0.0001, 0.01)", "optimizer": "choice('sgd', 'adamw')"},
    ],
    SEGMENTATION: [
        {"model_name": "choice('maskrcnn_resnet50_fpn')", "learning_rate": "uniform(0.0001, 0.01)",
         "optimizer": "choice('sgd', 'adamw')"},
    ],
}


def automode_space(task: str, gpu: bool):
    """The parsed AutoMode search space for ``task`` (a list of sub-spaces)."""
    return parse_search_space((_GPU if gpu else _CPU)[task], f"automode[{task}]")
