"""Model families: what every model of one architecture family shares, as one object on each
registry entry (``ModelSpec.family``), so that nothing in visionml falls into another family's
``else``. A new family is one object here plus its registry entries.

A family knows: which tasks' models it makes (``kind``), how many head outputs a label set needs,
its data config (how images become inputs), the torchvision constructor keywords taken from
Azure's hyperparameters, how a deployment's thresholds are pushed into a built model, how to keep
low-scoring boxes for AP, what a training image costs on a CPU, and (classifiers) where the
penultimate-layer embedding is.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..data.dataconfig import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from ..errors import VisionMLError


class ModelFamily:
    name = ""
    kind = ""  # the Task.model_kind it serves: classifier, detector or segmenter
    cpu_seconds = 0.3
    """Training seconds per image on a 2-core CPU in fp32 at ``cpu_reference_size`` (measured, docs/models.md)."""
    cpu_reference_size = 224
    cpu_reference_model: str | None = None
    """The model ``cpu_seconds`` was measured on; others scale by parameter count."""

    def __repr__(self) -> str:
        return f"<model family {self.name}>"

    def head_classes(self, num_labels: int) -> int:
        """Outputs of the head for ``num_labels`` classes."""
        return num_labels

    def data_config(self, spec, hp) -> DataConfig:
        raise NotImplementedError

    def build_kwargs(self, hp) -> dict:
        """Constructor keywords from the resolved hyperparameters."""
        return {}

    def apply_settings(self, model, settings) -> None:
        """Push a deployment's inference settings into a built model."""

    @contextmanager
    def score_floor(self, model, threshold: float):
        """Inside the block the model keeps outputs down to ``threshold`` (detectors, for AP)."""
        yield

    def cpu_size(self, hp) -> int:
        """The image side that drives the training cost."""
        return self.cpu_reference_size

    def describe_input(self, spec) -> str:
        """The input size, for ``visionml models``."""
        return ""

    def featurizer(self, model):
        """A module mapping the model's input batch to its penultimate-layer embeddings ``[B, D]``
        (``visionml featurize``); families without one say so."""
        raise VisionMLError(f"featurization gives the penultimate-layer embedding of a classification model; "
                            f"this is a {self.kind} ({self.name}) model. Featurize with an image_classification "
                            f"or image_classification_multilabel model folder")


class ClassifierFamily(ModelFamily):
    """torchvision and timm classifiers: a square crop, normalised with the weights' statistics."""

    name = kind = "classifier"
    cpu_seconds, cpu_reference_size, cpu_reference_model = 0.3, 224, "resnet50"

    def data_config(self, spec, hp) -> DataConfig:
        return DataConfig(mean=tuple(spec.mean), std=tuple(spec.std), train_crop_size=int(hp["training_crop_size"]),
                          resize_size=int(hp["validation_resize_size"]), crop_size=int(hp["validation_crop_size"]))

    def cpu_size(self, hp) -> int:
        return int(hp["training_crop_size"])

    def describe_input(self, spec) -> str:
        return f"{spec.input_size} (fixed)" if spec.fixed_input_size else f"{spec.input_size} crop (any)"

    def featurizer(self, model):
        """A copy of ``model`` whose head (its last ``nn.Linear``: every registered classifier's
        classification layer) is an Identity, so it outputs what the head takes: the pooled
        embedding (resnet 512/2048, mobilenet 1280, a ViT's class token). The copy shares the
        model's weights (no memory) but not its modules, so it never disturbs a concurrent predict."""
        import copy

        from torch import nn

        heads = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
        if not heads:
            raise VisionMLError(f"{type(model).__name__} has no linear classification layer to take the "
                                f"embedding before")
        shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
        featurizer = copy.deepcopy(model, memo=shared)
        parent, _, leaf = heads[-1].rpartition(".")
        holder = featurizer.get_submodule(parent) if parent else featurizer
        if leaf.isdigit():
            holder[int(leaf)] = nn.Identity()
        else:
            setattr(holder, leaf, nn.Identity())
        return featurizer.eval()


class DetectorFamily(ModelFamily):
    """torchvision detectors: images in [0, 1] of any size, resized and normalised inside the
    network; class 0 is the background. ``keys`` maps Azure's names to the family's keywords;
    ``holder`` names the submodule keeping score/NMS thresholds ("" for the model itself)."""

    kind = "detector"
    holder = ""
    keys: dict[str, str] = {}
    sizes_settable = True  # min_size/max_size apply (SSD resizes to a fixed square instead)

    def head_classes(self, num_labels: int) -> int:
        return num_labels + 1

    def data_config(self, spec, hp) -> DataConfig:
        return DataConfig(mean=IMAGENET_MEAN, std=IMAGENET_STD, min_size=int(hp["min_size"]),
                          max_size=int(hp["max_size"]))

    def build_kwargs(self, hp) -> dict:
        return {kw: hp[key] for key, kw in self.keys.items() if hp.get(key) is not None}

    def _holder(self, model):
        return model.get_submodule(self.holder) if self.holder else model

    def apply_settings(self, model, settings) -> None:
        holder = self._holder(model)
        holder.score_thresh = float(settings["box_score_threshold"])
        holder.nms_thresh = float(settings["nms_iou_threshold"])
        holder.detections_per_img = int(settings["box_detections_per_image"])
        if self.sizes_settable:
            model.transform.min_size = (int(settings["min_size"]),)
            model.transform.max_size = int(settings["max_size"])

    @contextmanager
    def score_floor(self, model, threshold: float):
        holder = self._holder(model)
        saved = holder.score_thresh
        holder.score_thresh = min(float(saved), float(threshold))
        try:
            yield
        finally:
            holder.score_thresh = saved

    def cpu_size(self, hp) -> int:
        return int(hp["min_size"])

    def describe_input(self, spec) -> str:
        return "min_size 600, max_size 1333"


_RCNN_KEYS = {
    "min_size": "min_size",
    "max_size": "max_size",
    "box_score_threshold": "box_score_thresh",
    "nms_iou_threshold": "box_nms_thresh",
    "box_detections_per_image": "box_detections_per_img",
    # visionml extensions (config.py): proposal budgets that dominate R-CNN's CPU time.
    "rpn_pre_nms_top_n_train": "rpn_pre_nms_top_n_train",
    "rpn_post_nms_top_n_train": "rpn_post_nms_top_n_train",
    "rpn_pre_nms_top_n_test": "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_test": "rpn_post_nms_top_n_test",
    "box_batch_size_per_image": "box_batch_size_per_image",
}
_ONE_STAGE_KEYS = {
    "min_size": "min_size",
    "max_size": "max_size",
    "box_score_threshold": "score_thresh",
    "nms_iou_threshold": "nms_thresh",
    "box_detections_per_image": "detections_per_img",
}


class FasterRCNNFamily(DetectorFamily):
    name = "fasterrcnn"
    holder = "roi_heads"
    keys = _RCNN_KEYS
    cpu_seconds, cpu_reference_size, cpu_reference_model = 1.7, 800, "fasterrcnn_resnet50_fpn"


class MaskRCNNFamily(FasterRCNNFamily):
    name = "maskrcnn"
    kind = "segmenter"
    cpu_seconds, cpu_reference_size, cpu_reference_model = 2.0, 800, "maskrcnn_resnet50_fpn"


class RetinaNetFamily(DetectorFamily):
    name = "retinanet"
    keys = _ONE_STAGE_KEYS
    cpu_seconds, cpu_reference_size, cpu_reference_model = 1.8, 800, None


class SSDLiteFamily(DetectorFamily):
    """SSDlite resizes every image to a fixed 320x320: min_size/max_size do not apply."""

    name = "ssdlite"
    keys = {k: v for k, v in _ONE_STAGE_KEYS.items() if k not in ("min_size", "max_size")}
    sizes_settable = False
    fixed_size = (320, 320)
    cpu_seconds, cpu_reference_size, cpu_reference_model = 0.1, 320, None

    def data_config(self, spec, hp) -> DataConfig:
        return super().data_config(spec, hp).replace(fixed_size=self.fixed_size)

    def cpu_size(self, hp) -> int:
        return self.cpu_reference_size

    def describe_input(self, spec) -> str:
        return "320x320 (fixed)"


CLASSIFIER = ClassifierFamily()
FASTERRCNN = FasterRCNNFamily()
MASKRCNN = MaskRCNNFamily()
RETINANET = RetinaNetFamily()
SSDLITE = SSDLiteFamily()
FAMILIES = {f.name: f for f in (CLASSIFIER, FASTERRCNN, MASKRCNN, RETINANET, SSDLITE)}
