"""How images become network inputs, derived once from the model and the hyperparameters (as
timm's ``resolve_data_config`` and torchvision's weight transforms do).

The training and validation transforms, the model folder's manifest, the predictor's
preprocessing, the size check and ONNX export all read one ``DataConfig``, so a model is served
on exactly the input distribution it was trained on (a ViT normalised with 0.5/0.5 in training is
normalised with 0.5/0.5 when it answers a request).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from .images import DEFAULT_MAX_PIXELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataConfig:
    """Classifiers: ``train_crop_size`` (random resized crop), ``resize_size`` (evaluation resize of
    the shorter side) and ``crop_size`` (centre crop), then ``mean``/``std``. Detectors resize
    inside the network: the shorter side to ``min_size`` unless the longer would pass ``max_size``,
    or to ``fixed_size`` (SSD's square); they normalise with ``mean``/``std`` inside too."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train_crop_size: int | None = None
    resize_size: int | None = None
    crop_size: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    fixed_size: tuple[int, int] | None = None

    @property
    def classifier(self) -> bool:
        """Cropped to a square before the network (else a detector that resizes itself)."""
        return self.crop_size is not None

    def replace(self, **changes) -> DataConfig:
        return replace(self, **changes)

    def to_manifest(self) -> dict:
        """The model folder's ``preprocessing`` block."""
        if self.classifier:
            return {"resize_size": self.resize_size, "crop_size": self.crop_size, "mean": list(self.mean),
                    "std": list(self.std)}
        out = {"min_size": self.min_size, "max_size": self.max_size, "mean": list(self.mean), "std": list(self.std)}
        if self.fixed_size is not None:
            out["fixed_size"] = list(self.fixed_size)
        return out

    def size_problem(self, width: int, height: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
        """Why a network fed through this config cannot take a ``width`` x ``height`` image (None: it can)."""
        from .sizes import classifier_size_problem, detector_size_problem

        if width < 1 or height < 1:
            return f"image is {width}x{height} pixels: it has no area"
        if self.classifier:
            return classifier_size_problem(width, height, int(self.resize_size), max_pixels)
        if self.fixed_size is not None:
            return None  # resized to a fixed square whatever its shape
        return detector_size_problem(width, height, int(self.min_size), int(self.max_size))

    @cached_property
    def eval_transform(self):
        """The deterministic classification pipeline: PIL image -> normalised ``[3, crop, crop]``.
        Validation during training and the predictor both use exactly this (built once per config)."""
        from .transforms import classification_eval

        return classification_eval(self)


def resolve_data_config(model_name: str, hp, preprocessing: dict | None = None) -> DataConfig:
    """The config of registry model ``model_name`` under hyperparameters (or inference settings)
    ``hp``; ``preprocessing`` (a model folder's manifest block) supplies the normalisation the
    folder was trained with."""
    from ..models.registry import get_spec

    spec = get_spec(model_name)
    config = spec.family.data_config(spec, hp)
    if preprocessing and preprocessing.get("mean") and preprocessing.get("std"):
        config = config.replace(mean=tuple(float(v) for v in preprocessing["mean"]),
                                std=tuple(float(v) for v in preprocessing["std"]))
    return config
