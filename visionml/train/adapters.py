"""The task table: what differs between the four tasks during training, as plain functions.

Each ``TaskAdapter`` knows how to build the loss, run one training forward pass, and turn a
validation batch into the ground truth / prediction format of ``visionml.metrics``.
``ADAPTERS[task]`` is the only dispatch; there is no trainer class hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION


@dataclass(frozen=True)
class TaskAdapter:
    make_criterion: Callable
    """(hp, labels, records) -> loss module or None (detectors compute their own losses)."""
    train_losses: Callable
    """(model, images, targets, criterion) -> dict of named scalar losses (summed for backward)."""
    eval_batch: Callable
    """(model, images, targets, hp) -> (ground-truth items, prediction items) for the batch."""
    finish: Callable
    """(ground-truth items, prediction items) -> (ground_truth, predictions) as the metrics take them."""
    to_device: Callable
    """(images, targets, device) -> (images, targets)."""


# ---- class weights (Azure's weighted_loss: 1 = sqrt of the class weights, 2 = the weights) ----

def class_counts(records, labels: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    counts = np.zeros(len(labels), dtype=np.float64)
    for record in records:
        names = record.label if isinstance(record.label, list) else [record.label]
        for name in names:
            counts[index[name]] += 1
    return counts


def weighting(weights: np.ndarray, mode: int) -> torch.Tensor | None:
    if mode == 0:
        return None
    weights = np.sqrt(weights) if mode == 1 else weights
    return torch.as_tensor(weights, dtype=torch.float32)


def multiclass_criterion(hp: dict, labels: list[str], records) -> nn.Module:
    counts = np.maximum(class_counts(records, labels), 1.0)
    # Inverse frequency, scaled so a balanced set gets weight 1 for every class.
    inverse = counts.sum() / (len(labels) * counts)
    return nn.CrossEntropyLoss(weight=weighting(inverse, int(hp.get("weighted_loss", 0))))


def multilabel_criterion(hp: dict, labels: list[str], records) -> nn.Module:
    positives = np.maximum(class_counts(records, labels), 1.0)
    negatives = np.maximum(len(records) - positives, 1.0)
    # For independent sigmoids the class weight is the negative:positive ratio (BCE's pos_weight).
    return nn.BCEWithLogitsLoss(pos_weight=weighting(negatives / positives, int(hp.get("weighted_loss", 0))))


# ---- classification ----

def classification_losses(model, images, targets, criterion) -> dict:
    logits = model(images)
    return {"loss": criterion(logits.float(), targets)}


def multiclass_eval(model, images, targets, hp):
    probs = torch.softmax(model(images).float(), dim=1)
    return list(targets.cpu().numpy()), list(probs.cpu().numpy())


def multilabel_eval(model, images, targets, hp):
    probs = torch.sigmoid(model(images).float())
    return list(targets.cpu().numpy().astype(np.int64)), list(probs.cpu().numpy())


def stack_arrays(gt_items, pred_items):
    return np.stack(gt_items), np.stack(pred_items)


def tensors_to_device(images, targets, device):
    return images.to(device, non_blocking=True), targets.to(device, non_blocking=True)


# ---- detection and instance segmentation (torchvision's contract: lists in, dicts out) ----

def detection_losses(model, images, targets, criterion) -> dict:
    return {name: value.float() for name, value in model(images, targets).items()}


def detection_to_device(images, targets, device):
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
               for t in targets]
    return images, targets


def detection_eval(model, images, targets, hp):
    outputs = model(images)
    mask_threshold = float(hp.get("mask_pixel_score_threshold", 0.5))
    gts, preds = [], []
    for image, target, output in zip(images, targets, outputs):
        height, width = image.shape[-2:]
        # Detectors number classes from 1 (0 is background); metrics number them from 0.
        gt = {"height": int(height), "width": int(width),
              "boxes": target["boxes"].float().cpu().numpy(),
              "labels": (target["labels"] - 1).cpu().numpy(),
              "iscrowd": target.get("iscrowd", torch.zeros_like(target["labels"])).cpu().numpy()}
        pred = {"boxes": output["boxes"].float().cpu().numpy(),
                "scores": output["scores"].float().cpu().numpy(),
                "labels": (output["labels"] - 1).cpu().numpy()}
        if "masks" in target:
            gt["masks"] = target["masks"].bool().cpu().numpy()
            pred["masks"] = _rle((output["masks"][:, 0].float() >= mask_threshold).cpu().numpy())
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def _rle(masks: np.ndarray) -> list[dict]:
    """Predicted masks as COCO RLE: a few hundred bytes each instead of H*W, for gathering and metrics."""
    from pycocotools import mask as mask_utils

    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def keep_lists(gt_items, pred_items):
    return list(gt_items), list(pred_items)


def no_criterion(hp, labels, records):
    return None


_DETECTION = TaskAdapter(no_criterion, detection_losses, detection_eval, keep_lists, detection_to_device)

ADAPTERS: dict[str, TaskAdapter] = {
    MULTICLASS: TaskAdapter(multiclass_criterion, classification_losses, multiclass_eval,
                            stack_arrays, tensors_to_device),
    MULTILABEL: TaskAdapter(multilabel_criterion, classification_losses, multilabel_eval,
                            stack_arrays, tensors_to_device),
    DETECTION: _DETECTION,
    SEGMENTATION: _DETECTION,
}
