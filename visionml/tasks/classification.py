"""Multi-class and multi-label image classification.

Multi-label is multi-class with another activation (an independent sigmoid per class instead of
a softmax), another loss (BCE instead of cross-entropy), multi-hot targets and its own metrics.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter

import numpy as np

from .base import CLASS, CLASSES, EMPTY, Task

_PER_CLASS_CPU = {
    "model_name": "resnet18", "number_of_epochs": 10, "training_batch_size": 16, "validation_batch_size": 64,
    "optimizer": "adamw", "learning_rate": 0.001, "weight_decay": 0.01, "warmup_cosine_lr_warmup_epochs": 1,
    "warmup_cosine_lr_cycles": 0.5, "training_crop_size": 64, "validation_resize_size": 73,
    "validation_crop_size": 64, "early_stopping_delay": 6, "precision": "bf16",
}


class ClassificationTask(Task):
    """Multi-class: one class per image, softmax, cross-entropy, accuracy."""

    name = "image_classification"
    aliases = ("image-classification", "multiclass")
    primary_metric = "accuracy"
    label_shapes = frozenset({CLASS})
    inferred_from = CLASS
    param_groups = ("all", "classification")
    model_kind = "classifier"
    default_model = "seresnext"
    cpu_preset = dict(_PER_CLASS_CPU)
    headline_metrics = ("accuracy", "balanced_accuracy", "f1_score_macro", "AUC_macro", "log_loss")
    automode = {
        "cpu": [{"model_name": "choice('mobilenet_v3_large', 'resnet18', 'efficientnet_b0')",
                 "learning_rate": "uniform(0.0005, 0.005)", "optimizer": "choice('adamw', 'sgd')"}],
        "gpu": [{"model_name": "choice('vitb16r224', 'resnet50', 'seresnext')",
                 "learning_rate": "uniform(0.001, 0.01)", "optimizer": "choice('sgd', 'adamw')"}],
    }
    explainable = True
    # Azure's training augmentation (classification/common/transforms.py), for multi-class and
    # multi-label alike: RandomResizedCrop's default area range, a flip, and half the time a strong
    # colour jitter (brightness, contrast, saturation, hue).
    train_crop_scale = (0.08, 1.0)
    color_jitter = (0.4, 0.4, 0.4, 0.4)
    color_jitter_p = 0.5
    flip_p = 0.5

    # ---- labels ---------------------------------------------------------------------------
    def class_names(self, record) -> list[str]:
        return [record.label]

    def class_counts(self, records) -> Counter:
        return Counter(map(attrgetter("label"), records))

    def stratum(self, record):
        return record.label

    # ---- data -----------------------------------------------------------------------------
    def target(self, record, index, width, height, image_id):
        import torch

        return torch.tensor(index[record.label], dtype=torch.int64)

    def transforms(self, data_config, train: bool):
        from ..data.transforms import classification_train

        if train:
            return classification_train(data_config, self.train_crop_scale, self.color_jitter, self.color_jitter_p,
                                        self.flip_p)
        return data_config.eval_transform

    def apply_transform(self, transform, image, target):
        import torch

        return transform(image).as_subclass(torch.Tensor), target

    def collate(self, batch):
        from torch.utils.data import default_collate

        return default_collate([item for item in batch if item is not None])

    # ---- training -------------------------------------------------------------------------
    def criterion(self, hp, labels, records):
        from torch import nn

        counts = np.maximum(_class_frequencies(records, labels, self), 1.0)
        # Inverse frequency, scaled so a balanced set gets weight 1 for every class.
        inverse = counts.sum() / (len(labels) * counts)
        return nn.CrossEntropyLoss(weight=_weighting(inverse, int(hp["weighted_loss"])))

    def losses(self, model, images, targets, criterion) -> dict:
        return {"loss": criterion(model(images).float(), targets)}

    def to_device(self, images, targets, device):
        return images.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def activation(self, logits):
        import torch

        return torch.softmax(torch.as_tensor(logits).float(), dim=1)

    def eval_batch(self, model, images, targets, hp):
        probs = self.activation(model(images))
        return list(self._gt_array(targets)), list(probs.cpu().numpy())

    def validation_loss(self, model, images, targets, criterion) -> float:
        return float(criterion(model(images).float(), targets))

    def eval_batch_and_loss(self, model, images, targets, hp, criterion):
        logits = model(images)  # one forward pass for the predictions and the loss
        probs = self.activation(logits)
        loss = float(criterion(logits.float(), targets))
        return list(self._gt_array(targets)), list(probs.cpu().numpy()), loss

    def _gt_array(self, targets):
        return targets.cpu().numpy()

    def finish(self, gt_items, pred_items):
        return np.stack(gt_items), np.stack(pred_items)

    # ---- scoring --------------------------------------------------------------------------
    def preprocess(self, pil, data_config):
        import torch

        from ..predict.preprocess import classifier_input  # eval_transform's values, without its five torch calls

        return torch.from_numpy(classifier_input(pil, data_config))

    def batch(self, tensors):
        import torch

        return torch.stack(tensors)

    def postprocess(self, outputs, settings) -> list:
        return list(self.activation(outputs).numpy())

    def wire(self, raw, width, height, filename, labels, settings, explanation=None) -> dict:
        visualizations, attributions = explanation or (None, None)
        return {"filename": filename, "probs": [float(p) for p in raw], "labels": list(labels),
                "visualizations": visualizations, "attributions": attributions}

    def size_problem(self, width, height, settings, max_pixels):
        from ..data.sizes import classifier_size_problem

        return classifier_size_problem(width, height, int(settings["validation_resize_size"]), max_pixels)

    def explanation_targets(self, probs, threshold: float) -> list[int]:
        """The classes an explanation is made for: the predicted class."""
        return [int(np.argmax(probs))]

    def pack_explanations(self, items: list):
        """Per-class explanation values as the wire format holds them: the one class's value."""
        return items[0] if items else None

    # ---- metrics --------------------------------------------------------------------------
    def ground_truth(self, record, width, height, index):
        return index[record.label]

    def metric_prediction(self, raw):
        return np.asarray(raw, dtype=np.float64)

    def metrics(self, ground_truth, predictions, labels, hp) -> dict:
        from ..metrics.classification import multiclass_metrics

        return multiclass_metrics(ground_truth, predictions, labels)

    def plots(self, ground_truth, predictions, labels, metrics, out_dir) -> list:
        from ..metrics import plots

        return plots.save_classification_plots(out_dir, ground_truth, predictions, labels,
                                               multilabel=self.multilabel, threshold=float(metrics.get("threshold", 0.5)))

    multilabel = False


class MultilabelTask(ClassificationTask):
    """Multi-label: any number of classes per image, a sigmoid per class, BCE, IoU."""

    name = "image_classification_multilabel"
    aliases = ("image-classification-multilabel", "multilabel")
    primary_metric = "iou"
    label_shapes = frozenset({CLASSES, EMPTY})
    inferred_from = CLASSES
    hp_defaults = {"learning_rate": 0.035}
    cpu_preset = {**_PER_CLASS_CPU, "number_of_epochs": 14}
    headline_metrics = ("iou", "f1_score_macro", "precision_score_micro", "recall_score_micro", "hamming_loss",
                        "AUC_macro")
    automode = {
        "cpu": ClassificationTask.automode["cpu"],
        "gpu": [{"model_name": "choice('vitb16r224', 'resnet50', 'seresnext')",
                 "learning_rate": "uniform(0.005, 0.05)", "optimizer": "choice('sgd', 'adamw')"}],
    }
    multilabel = True

    def class_names(self, record) -> list[str]:
        return list(record.label or [])

    class_counts = Task.class_counts  # every class of every image

    def stratum(self, record):
        return None

    def empty_label(self, record) -> None:
        record.label = []  # an image with no class at all

    def target(self, record, index, width, height, image_id):
        import torch

        hot = torch.zeros(len(index), dtype=torch.float32)
        hot[[index[name] for name in record.label or []]] = 1.0
        return hot

    def criterion(self, hp, labels, records):
        from torch import nn

        positives = np.maximum(_class_frequencies(records, labels, self), 1.0)
        negatives = np.maximum(len(records) - positives, 1.0)
        # For independent sigmoids the class weight is the negative:positive ratio (BCE's pos_weight).
        return nn.BCEWithLogitsLoss(pos_weight=_weighting(negatives / positives, int(hp["weighted_loss"])))

    def activation(self, logits):
        import torch

        return torch.sigmoid(torch.as_tensor(logits).float())

    def _gt_array(self, targets):
        return targets.cpu().numpy().astype(np.int64)

    def explanation_targets(self, probs, threshold: float) -> list[int]:
        """Each class whose probability is above ``threshold`` (Azure's ``probs > threshold``)."""
        return [i for i, p in enumerate(probs) if p > threshold]

    def pack_explanations(self, items: list):
        """A list with one value per class above the threshold; None (null) when none is, as Azure."""
        return list(items) if items else None

    def ground_truth(self, record, width, height, index):
        hot = np.zeros(len(index), dtype=np.int64)
        hot[[index[name] for name in record.label or []]] = 1
        return hot

    def metrics(self, ground_truth, predictions, labels, hp) -> dict:
        from ..metrics.classification import multilabel_metrics

        return multilabel_metrics(ground_truth, predictions, labels)


# ---- class weights (Azure's weighted_loss: 1 = sqrt of the class weights, 2 = the weights) ----

def _class_frequencies(records, labels: list[str], task: Task) -> np.ndarray:
    """Images per class (a multi-label image counts once for each of its classes)."""
    index = {name: i for i, name in enumerate(labels)}
    counts = np.zeros(len(labels), dtype=np.float64)
    for record in records:
        for name in task.class_names(record):
            counts[index[name]] += 1
    return counts


def _weighting(weights: np.ndarray, mode: int):
    import torch

    if mode == 0:
        return None
    weights = np.sqrt(weights) if mode == 1 else weights
    return torch.as_tensor(weights, dtype=torch.float32)
