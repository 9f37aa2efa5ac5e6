"""Classification models: torchvision and timm backbones with a head sized to the labels.

Multi-class and multi-label share the same networks; only the loss and the output
activation differ (the training and predict modules own those).

ViTs take any crop size, as in Azure: the network is built for ``validation_crop_size`` (training
uses the same crop), pretrained position embeddings are resized to it when the weights load, and a
built ViT given another square size (a deployment that changes ``validation_crop_size``) resizes its
position embeddings on the fly, as Azure does when it loads a model for another crop size.
"""

from __future__ import annotations

import math

from .families import CLASSIFIER
from .registry import CLIP_BY_NORM, register
from .weights import ensure_cached, load_cached_state

VIT_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _torchvision_classifier(builder_name: str, head: str):
    """A builder for torchvision's ``builder_name`` whose final Linear lives at ``head``."""

    def build(spec, task, num_classes, pretrained, hp, fetch):
        import torchvision.models

        model = getattr(torchvision.models, builder_name)(weights=None)
        if pretrained and fetch:
            model.load_state_dict(load_cached_state(spec.weights, spec.name))
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

        size = {"img_size": _vit_size(spec, hp)} if spec.patch_size else {}
        if not (pretrained and fetch):
            model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, **size)
        else:
            # timm reads the file we cached instead of reaching for the Hugging Face Hub itself, drops
            # the ImageNet classifier when num_classes differs, and resamples a ViT's position
            # embeddings to img_size.
            overlay = {"file": str(ensure_cached(spec.weights, spec.name))}
            model = timm.create_model(timm_name, pretrained=True, num_classes=num_classes,
                                      pretrained_cfg_overlay=overlay, **size)
        if spec.patch_size:
            _timm_any_size(model)
        return model

    return build


def _vit_size(spec, hp) -> int:
    """The square side a ViT is built for: ``validation_crop_size`` (training uses the same crop)."""
    return int(hp["validation_crop_size"]) if "validation_crop_size" in hp else int(spec.input_size)


def _torchvision_vit(builder_name: str):
    """torchvision's ViT at ``validation_crop_size``: ImageNet position embeddings interpolated to it
    (torchvision's own ``interpolate_embeddings``), then any input size accepted (``_AnySizeViT``)."""

    def build(spec, task, num_classes, pretrained, hp, fetch):
        import torchvision.models
        from torchvision.models.vision_transformer import interpolate_embeddings

        size = _vit_size(spec, hp)
        model = getattr(torchvision.models, builder_name)(weights=None, image_size=size)
        if pretrained and fetch:
            state = load_cached_state(spec.weights, spec.name)
            model.load_state_dict(interpolate_embeddings(size, spec.patch_size, state))
        _replace_linear(model, "heads.head", num_classes)
        model.__class__ = _any_size_torchvision_classes()[0]
        model.encoder.__class__ = _any_size_torchvision_classes()[1]
        return model

    return build


def _resized_positions(table, tokens: int, prefix: int = 1):
    """A ``(1, prefix + g*g, D)`` position table resized (bicubic) to ``prefix + tokens`` entries."""
    from torchvision.models.vision_transformer import interpolate_embeddings

    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"a ViT needs a square input: got {tokens} patches")
    # image_size // patch_size is the new grid side: with patch_size 1 it is `side` itself.
    return interpolate_embeddings(side, 1, {"encoder.pos_embedding": table})["encoder.pos_embedding"]


_ANY_SIZE_CLASSES: list = []


def _any_size_torchvision_classes():
    """Subclasses of torchvision's VisionTransformer and Encoder that add no state: the first drops
    the input-size assertion, the second resizes the position table when the sequence differs (only
    then: a traced or exported model at its own size has no resize in it)."""
    if not _ANY_SIZE_CLASSES:
        from torchvision.models.vision_transformer import Encoder, VisionTransformer

        class AnySizeViT(VisionTransformer):
            def _process_input(self, x):
                return self.conv_proj(x).flatten(2).transpose(1, 2)  # (n, patches, hidden)

        class AnySizeEncoder(Encoder):
            def forward(self, input):
                positions = self.pos_embedding
                if input.shape[1] != positions.shape[1]:
                    positions = _resized_positions(positions, input.shape[1] - 1)
                return self.ln(self.layers(self.dropout(input + positions)))

        _ANY_SIZE_CLASSES.extend([AnySizeViT, AnySizeEncoder])
    return _ANY_SIZE_CLASSES


def _timm_any_size(model) -> None:
    """A timm ViT that takes any square input: its patch embedding stops asserting the size and the
    position table is resampled (timm's ``resample_abs_pos_embed``) when the patch count differs."""
    from timm.layers import resample_abs_pos_embed

    base = type(model)

    def _pos_embed(self, x):
        grid = tuple(self.patch_embed.grid_size)
        if x.shape[1] == grid[0] * grid[1]:
            return base._pos_embed(self, x)
        side = math.isqrt(x.shape[1])
        prefix = 0 if self.no_embed_class else self.num_prefix_tokens
        positions = resample_abs_pos_embed(self.pos_embed, [side, side], old_size=list(grid),
                                           num_prefix_tokens=prefix)
        tokens = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, getattr(self, "reg_token", None))
                  if t is not None]
        if self.no_embed_class:
            x = _cat(tokens + [x + positions]) if tokens else x + positions
        else:
            x = (_cat(tokens + [x]) if tokens else x) + positions
        return self.pos_drop(x)

    model.patch_embed.strict_img_size = False
    model.__class__ = _timm_class(base, _pos_embed)


_TIMM_CLASSES: dict = {}


def _timm_class(base, pos_embed):
    if base not in _TIMM_CLASSES:
        name = f"AnySize{base.__name__}"
        _TIMM_CLASSES[base] = type(name, (base,), {"_pos_embed": pos_embed})
    return _TIMM_CLASSES[base]


def _cat(parts):
    import torch

    return torch.cat(parts, dim=1)


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

# Azure's per-model defaults (classification/common/constants.py): batch sizes that fit a 12 GiB GPU
# and learning rates per size and task for the ViTs.
def _vit(batch: int, multiclass_lr: float, multilabel_lr: float) -> dict:
    return {"training_batch_size": batch, "validation_batch_size": batch,
            "image_classification": {"learning_rate": multiclass_lr},
            "image_classification_multilabel": {"learning_rate": multilabel_lr}}


_VIT_DEFAULTS = {
    "vits16r224": _vit(128, 0.0125, 0.025),
    "vitb16r224": _vit(48, 0.0125, 0.025),
    "vitl16r224": _vit(10, 0.001, 0.002),
}
# ViTs train at the validation crop (any size), clip gradients by norm as Azure's do, and have no
# conv layer for Grad-CAM.
_VIT = {"input_size": 224, "same_crop_sizes": True, "patch_size": 16, "grad_clip": CLIP_BY_NORM}

register("vitb16r224", CLASSIFIER, hp_defaults=_VIT_DEFAULTS["vitb16r224"], **_VIT,
         weights="torchvision:ViT_B_16_Weights.IMAGENET1K_V1", description="torchvision vit_b_16")(
    _torchvision_vit("vit_b_16"))
register("vitl16r224", CLASSIFIER, hp_defaults=_VIT_DEFAULTS["vitl16r224"], **_VIT,
         weights="torchvision:ViT_L_16_Weights.IMAGENET1K_V1", description="torchvision vit_l_16")(
    _torchvision_vit("vit_l_16"))

# torchvision has no ViT-S/16, SE-ResNeXt or ResNeSt: timm (Apache-2.0) provides them.
_TIMM = [
    # name, timm model, pretrained tag, gradcam layer, ViT, mean/std or None for ImageNet's
    ("vits16r224", "vit_small_patch16_224", "augreg_in21k_ft_in1k", None, True, VIT_MEAN_STD),
    ("seresnext", "seresnext50_32x4d", "racm_in1k", "layer4", False, None),
    ("resnest50", "resnest50d", "in1k", "layer4", False, None),
    ("resnest101", "resnest101e", "in1k", "layer4", False, None),
]

for _name, _timm, _tag, _cam, _is_vit, _norm in _TIMM:
    _extra = {"mean": _norm[0], "std": _norm[1]} if _norm else {}
    _extra.update(_VIT if _is_vit else {"input_size": 224})
    register(_name, CLASSIFIER, source="timm", gradcam_layer=_cam, weights=f"timm:{_timm}.{_tag}",
             description=f"timm {_timm}", hp_defaults=_VIT_DEFAULTS.get(_name, {}), **_extra)(
        _timm_classifier(_timm))
