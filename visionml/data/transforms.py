"""Training and evaluation transforms per task, built from Azure's hyperparameter names.

All transforms are ``torchvision.transforms.v2``, so boxes (``tv_tensors.BoundingBoxes``) and
masks (``tv_tensors.Mask``) move with the image. Classification pipelines take a PIL image and
return a normalised float tensor; detection pipelines take ``(image, target)`` and return a
float image in [0, 1] with its target (the torchvision detectors normalise and resize inside,
with ``min_size``/``max_size``).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from ..tasks import MULTILABEL, canonical_task, is_classification

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Azure's classification defaults (used when hp lacks the key or holds None).
CLASSIFICATION_DEFAULTS = {"training_crop_size": 224, "validation_resize_size": 256,
                           "validation_crop_size": 224}

# torchvision's default lower bound (0.08) often crops the labelled object out of an image
# whose object covers a fraction of it; a quarter of the area keeps it in nearly always.
RANDOM_CROP_SCALE = (0.25, 1.0)
# A multi-label image's label is every object in it: a crop that leaves one out makes the label
# wrong. Crops keep at least 70% of the area (objects near the border still lose a little).
MULTILABEL_CROP_SCALE = (0.7, 1.0)


def _hp_int(hp: dict | None, key: str) -> int:
    value = (hp or {}).get(key)
    return int(CLASSIFICATION_DEFAULTS[key] if value is None else value)


def classification_preprocessing(hp: dict | None) -> dict:
    """What evaluation does to an image, for the model folder's manifest and the predictor."""
    return {"resize_size": _hp_int(hp, "validation_resize_size"),
            "crop_size": _hp_int(hp, "validation_crop_size"),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def build_transforms(task: str, hp: dict | None = None, train: bool = False) -> v2.Compose:
    """The v2 pipeline for ``task``: augmenting when ``train``, deterministic otherwise."""
    task = canonical_task(task)
    if is_classification(task):
        return _classification(hp, train, MULTILABEL_CROP_SCALE if task == MULTILABEL else RANDOM_CROP_SCALE)
    return _detection(train)


def _classification(hp: dict | None, train: bool, crop_scale=RANDOM_CROP_SCALE) -> v2.Compose:
    if train:
        geometry = [v2.RandomResizedCrop(_hp_int(hp, "training_crop_size"), scale=crop_scale,
                                         antialias=True),
                    v2.RandomHorizontalFlip(),
                    v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)]
    else:
        pre = classification_preprocessing(hp)
        geometry = [v2.Resize(pre["resize_size"], antialias=True), v2.CenterCrop(pre["crop_size"])]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def detection_labels_getter(sample):
    """Per-object tensors SanitizeBoundingBoxes must filter along with the boxes (masks are
    found by type). A module-level function so DataLoader workers can pickle it."""
    target = sample[1]
    return target["labels"], target["iscrowd"]


def _detection(train: bool) -> v2.Compose:
    steps = [v2.ToImage()]
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train:
        # After the geometric steps: drops boxes a crop or resize made empty, with their targets.
        steps.append(v2.SanitizeBoundingBoxes(labels_getter=detection_labels_getter))
    return v2.Compose(steps)
