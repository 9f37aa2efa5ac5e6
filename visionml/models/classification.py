"""Classification models: torchvision and timm backbones with a head sized to the labels.

Multi-class and multi-label share the same networks; only the loss and the output
activation differ (the training and predict modules own those).
"""

from __future__ import annotations

from .families import CLASSIFIER
from .registry import register
from .weights import ensure_cached

VIT_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _torchvision_classifier(builder_name: str, head: str):
    """A builder for torchvision's ``builder_name`` whose final Linear lives at ``head``."""

    def build(spec, task, num_classes, pretrained, hp, fetch):
        import torch
        import torchvision.models

        model = getattr(torchvision.models, builder_name)(weights=None)
        if pretrained and fetch:
            path = ensure_cached(spec.weights, spec.name)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        _replace_linear(model, head, num_classes)
        return model

    return build


def _replace_linear(model, path: str, num_classes: int) -> None:
    """Swap the Linear at dotted ``path`` for a fresh one with ``num_classes`` outputs."""
    from torch import nn

    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, leaf) if not leaf.isdigit() else parent[int(leaf)]
    new = nn.Linear(old.in_features, num_classes)
    if leaf.isdigit():
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


def _timm_classifier(timm_name: str):
    def build(spec, task, num_classes, pretrained, hp, fetch):
        import timm

        if not (pretrained and fetch):
            return timm.create_model(timm_name, pretrained=False, num_classes=num_classes)
        # timm reads the file we cached instead of reaching for the Hugging Face Hub itself,
        # and drops the ImageNet classifier when num_classes differs.
        overlay = {"file": str(ensure_cached(spec.weights, spec.name))}
        return timm.create_model(timm_name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=overlay)

    return build


_TORCHVISION = [
    # name, torchvision builder, head, weights, gradcam layer
    ("mobilenetv2", "mobilenet_v2", "classifier.1", "MobileNet_V2_Weights.IMAGENET1K_V2", "features.18"),
    ("resnet18", "resnet18", "fc", "ResNet18_Weights.IMAGENET1K_V1", "layer4"),
    ("resnet34", "resnet34", "fc", "ResNet34_Weights.IMAGENET1K_V1", "layer4"),
    ("resnet50", "resnet50", "fc", "ResNet50_Weights.IMAGENET1K_V2", "layer4"),
    ("resnet101", "resnet101", "fc", "ResNet101_Weights.IMAGENET1K_V2", "layer4"),
    ("resnet152", "resnet152", "fc", "ResNet152_Weights.IMAGENET1K_V2", "layer4"),
    ("mobilenet_v3_large", "mobilenet_v3_large", "classifier.3", "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
     "features.16"),
    ("mobilenet_v3_small", "mobilenet_v3_small", "classifier.3", "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
     "features.12"),
    ("efficientnet_b0", "efficientnet_b0", "classifier.1", "EfficientNet_B0_Weights.IMAGENET1K_V1", "features.8"),
]

for _name, _builder, _head, _weights, _cam in _TORCHVISION:
    register(_name, CLASSIFIER, input_size=224, gradcam_layer=_cam, cpu_cost=(0.1, 224) if _name == "resnet18" else None,
             weights=f"torchvision:{_weights}", description=f"torchvision {_builder}")(
        _torchvision_classifier(_builder, _head))

# Azure's per-model defaults: batch sizes that fit a 12 GiB GPU for the ViTs.
_VIT_DEFAULTS = {
    "vits16r224": {"training_batch_size": 128, "validation_batch_size": 128},
    "vitb16r224": {"training_batch_size": 48, "validation_batch_size": 48},
    "vitl16r224": {"training_batch_size": 10, "validation_batch_size": 10},
}

# ViTs take a fixed 224 crop (position embeddings); Grad-CAM needs a conv layer, so none.
register("vitb16r224", CLASSIFIER, input_size=224, fixed_input_size=True, hp_defaults=_VIT_DEFAULTS["vitb16r224"],
         weights="torchvision:ViT_B_16_Weights.IMAGENET1K_V1", description="torchvision vit_b_16")(
    _torchvision_classifier("vit_b_16", "heads.head"))
register("vitl16r224", CLASSIFIER, input_size=224, fixed_input_size=True, hp_defaults=_VIT_DEFAULTS["vitl16r224"],
         weights="torchvision:ViT_L_16_Weights.IMAGENET1K_V1", description="torchvision vit_l_16")(
    _torchvision_classifier("vit_l_16", "heads.head"))

# torchvision has no ViT-S/16, SE-ResNeXt or ResNeSt: timm (Apache-2.0) provides them.
_TIMM = [
    # name, timm model, pretrained tag, gradcam layer, fixed size, mean/std or None for ImageNet's
    ("vits16r224", "vit_small_patch16_224", "augreg_in21k_ft_in1k", None, True, VIT_MEAN_STD),
    ("seresnext", "seresnext50_32x4d", "racm_in1k", "layer4", False, None),
    ("resnest50", "resnest50d", "in1k", "layer4", False, None),
    ("resnest101", "resnest101e", "in1k", "layer4", False, None),
]

for _name, _timm, _tag, _cam, _fixed, _norm in _TIMM:
    _extra = {"mean": _norm[0], "std": _norm[1]} if _norm else {}
    register(_name, CLASSIFIER, source="timm", input_size=224, fixed_input_size=_fixed,
             gradcam_layer=_cam, weights=f"timm:{_timm}.{_tag}", description=f"timm {_timm}",
             hp_defaults=_VIT_DEFAULTS.get(_name, {}), **_extra)(
        _timm_classifier(_timm))
