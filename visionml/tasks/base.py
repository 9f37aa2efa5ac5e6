"""The interface every task implements: one object per task that knows its labels, targets,
transforms, loss, outputs and metrics, so that the rest of visionml asks the task instead of
branching on its name.

Tasks share by composition and inheritance of small methods: multi-label classification is
multi-class with another activation, loss and metrics; instance segmentation is detection plus
masks. A new task subclasses the closest one (or ``Task``), sets the class attributes and calls
``visionml.tasks.register_task(MyTask())``; nothing else in the package needs editing.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from typing import ClassVar

# The shapes a JSONL ``label`` can have, as the reader classifies each line.
CLASS = "class"          # "cat"
CLASSES = "classes"      # ["cat", "dog"]
BOXES = "boxes"          # [{label, topX, topY, bottomX, bottomY}]
POLYGONS = "polygons"    # [{label, polygon: [[x1, y1, ...]]}]
EMPTY = "empty"          # []: fits every list-shaped task

SHAPE_WORDS = {
    CLASS: "a class name (multi-class classification; a string, or an integer as Azure allows)",
    CLASSES: "a list of class names (multi-label classification)",
    BOXES: "a list of {label, topX, topY, bottomX, bottomY} objects (object detection)",
    POLYGONS: "a list of {label, polygon} objects (instance segmentation)",
    EMPTY: "an empty list",
}


class Task(str):
    """What visionml knows about one task. Subclasses set the class attributes and override the
    methods; instances are registered once in ``visionml.tasks.TASKS``.

    A task is also the string of its name (``MULTICLASS == "image_classification"``), so it goes
    into manifests, configs and JSON as the name Azure uses, and compares equal to it.
    """

    def __new__(cls):
        if not cls.name:
            raise TypeError(f"{cls.__name__} needs a name")
        return super().__new__(cls, cls.name)

    def __reduce__(self):
        from . import get_task

        return get_task, (str(self),)

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[str] = ""
    label_shapes: ClassVar[frozenset] = frozenset()
    """The label shapes a line may have for this task (see ``SHAPE_WORDS``)."""
    inferred_from: ClassVar[str | None] = None
    """The label shape from which this task is inferred when no ``--task`` is given (None: never)."""
    param_groups: ClassVar[tuple[str, ...]] = ("all",)
    """Which groups of ``visionml.config.PARAMS`` apply (``all``, ``classification``, ``detection``, ``segmentation``)."""
    hp_defaults: ClassVar[dict] = {}
    """Defaults of this task that differ from its groups' (Azure's per-task values)."""
    model_kind: ClassVar[str] = ""
    """Which registry models can learn it: ``classifier``, ``detector`` or ``segmenter``."""
    default_model: ClassVar[str] = ""
    """The model trained when none is named (Azure's default where visionml has it)."""
    cpu_preset: ClassVar[dict] = {}
    """``--preset cpu``: settings that train from scratch on a laptop CPU in minutes."""
    automode: ClassVar[dict] = {"cpu": [], "gpu": []}
    """AutoMode's built-in search spaces (Azure's spelling) when a job gives no ``search_space``:
    ``cpu`` models that train in minutes on a CPU, ``gpu`` Azure's larger ones."""
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    """The metrics ``visionml evaluate`` prints first."""
    explainable: ClassVar[bool] = False
    """Whether ``model_explainability`` applies (classification only)."""
    objects: ClassVar[bool] = False
    """Whether records carry objects (boxes, polygons) rather than image-level classes."""
    stop_beyond_patience: ClassVar[bool] = False
    """Early stopping, as Azure's trainer for this task: False stops once the evaluations without
    improvement reach ``early_stopping_patience`` (classification), True once they exceed it (detection)."""
    ties_make_best: ClassVar[bool] = True
    """A score equal to the best so far makes that later epoch the best one (Azure: ``score >= best``);
    only a higher score resets early stopping's count."""

    # ---- labels ---------------------------------------------------------------------------
    def expected_label(self) -> str:
        """How this task's ``label`` looks, for error messages."""
        return " or ".join(SHAPE_WORDS[s] for s in sorted(self.label_shapes) if s != EMPTY)

    def class_names(self, record) -> list[str]:
        """The class names a record carries (one per object, or the image's classes)."""
        raise NotImplementedError

    def class_counts(self, records) -> Counter:
        """How often each class occurs in ``records`` (images or objects, as ``class_names`` counts)."""
        return Counter(chain.from_iterable(map(self.class_names, records)))

    def stratum(self, record):
        """What a seeded train/validation split keeps balanced for this record (None: a plain split)."""
        return None

    def empty_label(self, record) -> None:
        """Fill ``record`` whose JSONL label is ``[]`` (an image with nothing in it)."""

    def summary_key(self) -> str:
        """What ``validate`` counts per class: ``images``, ``boxes`` or ``polygons``."""
        return "images"

    # ---- data -----------------------------------------------------------------------------
    def target(self, record, index: dict[str, int], width: int, height: int, image_id: int):
        """The training target of ``record``, for its image decoded at ``width`` x ``height``."""
        raise NotImplementedError

    def transforms(self, data_config, train: bool):
        """The ``torchvision.transforms.v2`` pipeline for training (augmenting) or evaluation."""
        raise NotImplementedError

    def apply_transform(self, transform, image, target):
        """``(image tensor, target)`` after ``transform``."""
        raise NotImplementedError

    def collate(self, batch):
        """A DataLoader batch (items a skipping dataset dropped are ``None``)."""
        raise NotImplementedError

    # ---- training -------------------------------------------------------------------------
    def criterion(self, hp, labels: list[str], records):
        """The loss module, or None when the model computes its own losses (detectors)."""
        return None

    def losses(self, model, images, targets, criterion) -> dict:
        """Named scalar losses of one training batch (summed for backward)."""
        raise NotImplementedError

    def to_device(self, images, targets, device):
        raise NotImplementedError

    def eval_batch(self, model, images, targets, hp):
        """``(ground-truth items, prediction items)`` of one validation batch."""
        raise NotImplementedError

    def finish(self, gt_items, pred_items):
        """All validation items -> ``(ground_truth, predictions)`` as ``metrics`` takes them."""
        raise NotImplementedError

    def computes_metrics(self, hp) -> bool:
        """Whether validation computes metrics (detection's ``validation_metric_type: none`` does not:
        each evaluated epoch's model then replaces the last, as in Azure)."""
        return True

    def stops_early(self, evals_without_improvement: int, patience: int) -> bool:
        """Azure's early-stopping rule for this task (``stop_beyond_patience``)."""
        if self.stop_beyond_patience:
            return evals_without_improvement > patience
        return evals_without_improvement >= patience

    def validation_loss(self, model, images, targets, criterion) -> float:
        """The mean training loss of one validation batch (``log_validation_loss``)."""
        raise NotImplementedError

    def eval_batch_and_loss(self, model, images, targets, hp, criterion):
        """``eval_batch`` plus the batch's ``validation_loss``; a task may share one forward pass."""
        gts, preds = self.eval_batch(model, images, targets, hp)
        return gts, preds, self.validation_loss(model, images, targets, criterion)

    # ---- scoring --------------------------------------------------------------------------
    def preprocess(self, pil, data_config):
        """One RGB PIL image as the network's input tensor."""
        raise NotImplementedError

    def batch(self, tensors: list):
        """Preprocessed images as one network input (a stacked tensor, or a list for detectors)."""
        raise NotImplementedError

    def infer(self, run, tensors: list, settings):
        """The network's outputs for preprocessed images, in ``run``'s form: ``run(self.batch(tensors))``
        (``run`` is a model or a backend's ``run``). Detection runs tiles as well (``tiling``)."""
        return run(self.batch(tensors))

    def tiling(self, hp):
        """The ``visionml.tiling.TileGrid`` training and inference use under ``hp``; None: no tiling."""
        return None

    def postprocess(self, outputs, settings) -> list:
        """A backend's outputs for one batch -> one raw result per image (arrays, for metrics)."""
        raise NotImplementedError

    def wire(self, raw, width: int, height: int, filename: str, labels: list[str], settings,
             explanation: tuple | None = None) -> dict:
        """One raw result -> the object Azure's endpoint answers for that image."""
        raise NotImplementedError

    def size_problem(self, width: int, height: int, settings, max_pixels: int | None) -> str | None:
        """Why the model cannot take an image of this size (None when it can)."""
        return None

    # ---- metrics --------------------------------------------------------------------------
    def ground_truth(self, record, width: int, height: int, index: dict[str, int]):
        """The record as the metrics take ground truth, in pixels of the decoded image."""
        raise NotImplementedError

    def metric_prediction(self, raw):
        """A raw result as the metrics take a prediction."""
        raise NotImplementedError

    def metrics(self, ground_truth, predictions, labels: list[str], hp) -> dict:
        raise NotImplementedError

    def plots(self, ground_truth, predictions, labels: list[str], metrics: dict, out_dir) -> list:
        return []
