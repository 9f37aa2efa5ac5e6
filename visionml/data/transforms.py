"""Training and evaluation transforms, built from a ``DataConfig`` (``data/dataconfig.py``); each
task picks its pipeline (``Task.transforms``).

All transforms are ``torchvision.transforms.v2``, so boxes (``tv_tensors.BoundingBoxes``) and
masks (``tv_tensors.Mask``) move with the image. Classification pipelines take a PIL image and
return a float tensor normalised with the config's mean/std; detection pipelines take ``(image,
target)`` and return a float image in [0, 1] with its target (the torchvision detectors normalise
and resize inside, with ``min_size``/``max_size``).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def classification_train(config, crop_scale: tuple[float, float]) -> v2.Compose:
    """Random resized crop (``crop_scale`` of the area) at ``train_crop_size``, flip, colour jitter."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(int(config.train_crop_size), scale=crop_scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(config.mean), list(config.std)),
    ])


def classification_eval(config) -> v2.Compose:
    """Resize the shorter side to ``resize_size``, centre-crop ``crop_size``, normalise: what
    validation and the predictor both do to an image."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(int(config.resize_size), antialias=True),
        v2.CenterCrop(int(config.crop_size)),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(config.mean), list(config.std)),
    ])


def detection_labels_getter(sample):
    """Per-object tensors SanitizeBoundingBoxes must filter along with the boxes (masks are
    found by type). A module-level function so DataLoader workers can pickle it."""
    target = sample[1]
    return target["labels"], target["iscrowd"]


def detection_train(config) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.ToDtype(torch.float32, scale=True),
        # After the geometric steps: drops boxes a crop or resize made empty, with their targets.
        v2.SanitizeBoundingBoxes(labels_getter=detection_labels_getter),
    ])


def detection_eval(config) -> v2.Compose:
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def build_transforms(task, hp=None, train: bool = False) -> v2.Compose:
    """The pipeline of ``task`` (any spelling or a Task) for hyperparameters ``hp`` (resolved, or
    a partial dict whose missing or None values take the defaults and whose keys for other tasks are
    ignored), through the model's data config."""
    from ..config import params_for, resolve_hyperparameters
    from ..tasks import get_task
    from .dataconfig import resolve_data_config

    task = get_task(task)
    known = params_for(task)
    hp = resolve_hyperparameters(task, {k: v for k, v in dict(hp or {}).items() if v is not None and k in known})
    return task.transforms(resolve_data_config(hp["model_name"], hp), train)
