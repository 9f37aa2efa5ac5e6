"""Training and evaluation transforms, built from a ``DataConfig`` (``data/dataconfig.py``); each
task picks its pipeline (``Task.transforms``).

All transforms are ``torchvision.transforms.v2``, so boxes (``tv_tensors.BoundingBoxes``) and
masks (``tv_tensors.Mask``) move with the image. Classification pipelines take a PIL image and
return a float tensor normalised with the config's mean/std; detection pipelines take ``(image,
target)`` and return a float image in [0, 1] with its target (the torchvision detectors normalise
and resize inside, with ``min_size``/``max_size``).

The training augmentations are Azure AutoML's (its ``classification/common/transforms.py`` and
``object_detection/common/augmentations.py``); each task holds their parameters
(``Task.augmentation``): classification, a random resized crop, a horizontal flip and, half the
time, colour jitter; detection, half the time either a crop that keeps every box or a zoom out, then
a horizontal flip, and no colour change.
"""

from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN_255 = (124, 116, 104)
"""What Azure fills a zoomed-out detection image with: the ImageNet mean, in 0-255 pixels."""


def classification_train(config, crop_scale: tuple[float, float], jitter: tuple[float, float, float, float] = (
        0.4, 0.4, 0.4, 0.4), jitter_p: float = 0.5, flip_p: float = 0.5) -> v2.Compose:
    """Random resized crop (``crop_scale`` of the area, aspect 3/4 to 4/3) at ``train_crop_size``, a
    horizontal flip, then with probability ``jitter_p`` ColorJitter(brightness, contrast, saturation,
    hue = ``jitter``): Azure's training pipeline."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(int(config.train_crop_size), scale=tuple(crop_scale), antialias=True),
        v2.RandomHorizontalFlip(flip_p),
        v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_p),
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


class RandomCropAroundBoxes(v2.Transform):
    """Crop to a random rectangle that contains every box (Azure's crop for detection): at least
    ``min_area`` of the image, height/width ratio within ``aspect``, tried up to ``trials`` times,
    else the image is left as it is. Masks are cropped with the image; no box is ever cut or lost."""

    def __init__(self, min_area: float = 0.6, aspect: tuple[float, float] = (0.5, 2.0), trials: int = 50):
        super().__init__()
        self.min_area, self.aspect, self.trials = float(min_area), tuple(aspect), int(trials)

    def make_params(self, flat_inputs: list) -> dict:
        from torchvision.transforms.v2._utils import get_bounding_boxes, query_size

        height, width = query_size(flat_inputs)
        boxes = F.convert_bounding_box_format(get_bounding_boxes(flat_inputs), new_format="XYXY")
        boxes = boxes.as_subclass(torch.Tensor).reshape(-1, 4)
        if len(boxes):  # the smallest rectangle holding every box, in whole pixels
            x0, y0 = math.floor(float(boxes[:, 0].min())), math.floor(float(boxes[:, 1].min()))
            x1, y1 = math.ceil(float(boxes[:, 2].max())), math.ceil(float(boxes[:, 3].max()))
        else:  # nothing to keep: any crop of the allowed area and shape
            x0, y0, x1, y1 = width, height, 0, 0
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            return {}
        for _ in range(self.trials):
            left, right = sorted((_randint(0, min(x0, width)), _randint(max(x1, 0), width)))
            top, bottom = sorted((_randint(0, min(y0, height)), _randint(max(y1, 0), height)))
            w, h = right - left, bottom - top
            if w > 0 and h * w >= height * width * self.min_area and self.aspect[0] < h / w < self.aspect[1]:
                return {"top": top, "left": left, "height": h, "width": w}
        return {}

    def transform(self, inpt, params: dict):
        if not params:
            return inpt
        return self._call_kernel(F.crop, inpt, **params)

    # torchvision before 0.21 calls these names
    _get_params = make_params
    _transform = transform


def _randint(low: int, high: int) -> int:
    """Uniform in [low, high], from torch's generator (seeded per run and per loader worker)."""
    return int(torch.randint(low, high + 1, (1,)))


def detection_train(config, crop_or_expand_p: float = 0.5, flip_p: float = 0.5,
                    expand: tuple[float, float] = (1.0, 2.0), crop_min_area: float = 0.6) -> v2.Compose:
    """Azure's detection augmentation: with probability ``crop_or_expand_p`` either (even odds) a crop
    keeping every box or a zoom out to ``expand`` times the size on an ImageNet-mean canvas, then a
    horizontal flip with ``flip_p``; no colour change."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomApply([v2.RandomChoice([
            RandomCropAroundBoxes(min_area=crop_min_area),
            v2.RandomZoomOut(fill={tv_tensors.Image: IMAGENET_MEAN_255, "others": 0}, side_range=expand, p=1.0),
        ])], p=crop_or_expand_p),
        v2.RandomHorizontalFlip(flip_p),
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
