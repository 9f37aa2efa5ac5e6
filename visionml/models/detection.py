"""Detection and instance-segmentation models from torchvision, heads sized to the labels.

Every detector follows torchvision's contract: images are a list of [3,H,W] tensors in
[0,1]; training returns a dict of losses, evaluation a list of
``{"boxes", "labels", "scores"[, "masks"]}`` with label 0 the background. ``num_classes``
arriving here already includes that background class (``registry.build_model`` adds it).
"""

from __future__ import annotations

from ..errors import UsageError
from .families import FASTERRCNN, MASKRCNN, RETINANET, SSDLITE
from .registry import register
from .weights import load_cached_state

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ASPECT_RATIOS = (0.5, 1.0, 2.0)

# Validation and `visionml evaluate` collect boxes down to this score to compute AP, as
# torchvision's references and COCO do; a deployment's higher box_score_threshold still decides
# precision and recall (metrics.detection_metrics(score_threshold=...)).
AP_SCORE_FLOOR = 0.05


def load_pretrained(model, spec, fetch: bool, into: str = "") -> None:
    """Fill ``model`` (or its submodule ``into``) from the cached weights file of ``spec``.

    ``fetch=False`` keeps the random weights: a model folder is rebuilt in the pretrained layout
    and then overwritten by its own weights, with no weights file needed.
    """
    if not fetch:
        return

    state = load_cached_state(spec.weights, spec.name)
    target = model.get_submodule(into) if into else model
    if into:  # an ImageNet classifier's weights into a detector's backbone body: drop its fc
        own = target.state_dict()
        state = {k: v for k, v in state.items() if k in own}
    target.load_state_dict(state)


def _norm(pretrained: bool):
    """FrozenBatchNorm2d to fine-tune pretrained statistics with tiny batches; real BatchNorm from
    scratch, because FrozenBatchNorm2d over random weights never normalises and does not train."""
    from torch import nn
    from torchvision.ops import FrozenBatchNorm2d

    return FrozenBatchNorm2d if pretrained else nn.BatchNorm2d


def _coco_v1_eps(model) -> None:
    # torchvision's V1 COCO R-CNN/RetinaNet weights were trained with BatchNorm eps 0.
    from torchvision.models.detection._utils import overwrite_eps

    overwrite_eps(model, 0.0)


def _rcnn_builder(backbone_name: str, with_masks: bool):
    def build(spec, task, num_classes, pretrained, hp, fetch):
        from torchvision.models import detection as tvd
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        kwargs = spec.family.build_kwargs(hp)
        model_class = tvd.MaskRCNN if with_masks else tvd.FasterRCNN
        coco = pretrained and backbone_name == "resnet50"
        backbone = resnet_fpn_backbone(backbone_name=backbone_name, weights=None, norm_layer=_norm(pretrained),
                                       trainable_layers=3 if pretrained else 5)
        # The COCO detector is built at its published 91 classes, loaded, then re-headed.
        model = model_class(backbone, num_classes=91 if coco else num_classes, **kwargs)
        if coco:
            load_pretrained(model, spec, fetch)
            _coco_v1_eps(model)
            _rehead_rcnn(model, num_classes)
        elif pretrained:
            load_pretrained(model, spec, fetch, into="backbone.body")
        _set_fpn_anchors(model, spec, hp, levels=5)
        return model

    return build


def _rehead_rcnn(model, num_classes: int) -> None:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    box_in = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_in, num_classes)
    if model.roi_heads.mask_predictor is not None:
        mask_in = model.roi_heads.mask_predictor.conv5_mask.in_channels
        hidden = model.roi_heads.mask_predictor.conv5_mask.out_channels
        model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_in, hidden, num_classes)


def _anchor_sizes(spec, hp, levels: int | None):
    sizes = hp.get("anchor_sizes")
    if sizes is None:
        return None
    sizes = tuple(int(s) for s in sizes)
    if levels is not None and len(sizes) != levels:
        raise UsageError(f"anchor_sizes for {spec.name} needs {levels} values, one per feature-pyramid level "
                         f"(e.g. 16,32,64,128,256), got {len(sizes)}: {','.join(map(str, sizes))}")
    return sizes


def _set_fpn_anchors(model, spec, hp, levels: int | None) -> None:
    """Apply ``anchor_sizes``: one size per level (ResNet FPN) or all sizes on every level (MobileNet)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RPNHead

    sizes = _anchor_sizes(spec, hp, levels)
    if sizes is None:
        return
    if levels is not None:
        per_level = tuple((s,) for s in sizes)
    else:
        per_level = (sizes,) * len(model.rpn.anchor_generator.sizes)
    generator = AnchorGenerator(per_level, (ASPECT_RATIOS,) * len(per_level))
    model.rpn.anchor_generator = generator
    count = generator.num_anchors_per_location()[0]
    if model.rpn.head.cls_logits.out_channels != count:
        # A different anchor count per location needs a fresh RPN head (its last convs are per anchor).
        model.rpn.head = RPNHead(model.backbone.out_channels, count)


for _backbone in RESNETS:
    _weights = ("torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1" if _backbone == "resnet50"
                else f"torchvision:{_backbone.replace('resnet', 'ResNet')}_Weights.IMAGENET1K_V1")
    register(f"fasterrcnn_{_backbone}_fpn", FASTERRCNN, weights=_weights,
             description=f"Faster R-CNN, {_backbone} FPN backbone")(_rcnn_builder(_backbone, with_masks=False))
    _mask_weights = ("torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1" if _backbone == "resnet50" else _weights)
    register(f"maskrcnn_{_backbone}_fpn", MASKRCNN, weights=_mask_weights,
             cpu_cost=(0.7, 160) if _backbone == "resnet18" else None,
             description=f"Mask R-CNN, {_backbone} FPN backbone")(_rcnn_builder(_backbone, with_masks=True))


@register("fasterrcnn_mobilenet_v3_large_fpn", FASTERRCNN, cpu_cost=(0.29, 240),
          weights="torchvision:FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1",
          description="Faster R-CNN, MobileNetV3-Large FPN backbone (fast on CPU)")
def _fasterrcnn_mobilenet(spec, task, num_classes, pretrained, hp, fetch):
    from torchvision.models import detection as tvd
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    # As torchvision's fasterrcnn_mobilenet_v3_large_fpn, built here so that the normalisation
    # follows ``pretrained`` and the weights come from our cache check.
    backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                  norm_layer=_norm(pretrained), trainable_layers=3 if pretrained else 6)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, (ASPECT_RATIOS,) * 3)
    kwargs = {"rpn_score_thresh": 0.05, **spec.family.build_kwargs(hp)}
    model = tvd.FasterRCNN(backbone, 91 if pretrained else num_classes, rpn_anchor_generator=anchors, **kwargs)
    if pretrained:
        load_pretrained(model, spec, fetch)
        _rehead_rcnn(model, num_classes)
    _set_fpn_anchors(model, spec, hp, levels=None)
    return model


@register("retinanet_resnet50_fpn", RETINANET,
          weights="torchvision:RetinaNet_ResNet50_FPN_Weights.COCO_V1", description="RetinaNet, ResNet-50 FPN")
def _retinanet(spec, task, num_classes, pretrained, hp, fetch):
    from torchvision.models import detection as tvd
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    # As torchvision's retinanet_resnet50_fpn: P3-P7, no P2 (too many anchors).
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=_norm(pretrained),
                                   trainable_layers=3 if pretrained else 5, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    model = tvd.RetinaNet(backbone, 91 if pretrained else num_classes, **spec.family.build_kwargs(hp))
    if pretrained:
        load_pretrained(model, spec, fetch)
        _coco_v1_eps(model)
        count = model.anchor_generator.num_anchors_per_location()[0]
        model.head.classification_head = RetinaNetClassificationHead(backbone.out_channels, count, num_classes)
    sizes = _anchor_sizes(spec, hp, levels=5)
    if sizes is not None:
        # RetinaNet's three octave scales per level, as torchvision builds them (9 anchors, head unchanged).
        per_level = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in sizes)
        model.anchor_generator = AnchorGenerator(per_level, (ASPECT_RATIOS,) * 5)
    return model


@register("ssdlite320_mobilenet_v3_large", SSDLITE,
          weights="torchvision:SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
          description="SSDlite 320x320, MobileNetV3-Large (fastest, least accurate)")
def _ssdlite(spec, task, num_classes, pretrained, hp, fetch):
    from functools import partial

    from torch import nn
    from torchvision.models import detection as tvd
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

    if hp.get("anchor_sizes") is not None:
        raise UsageError("anchor_sizes does not apply to ssdlite320_mobilenet_v3_large (its default boxes are "
                         "relative to the 320x320 input); remove it or pick a Faster R-CNN model")
    kwargs = spec.family.build_kwargs(hp)
    # Same layout with or without COCO weights (BatchNorm, reduced tail), so only the head differs.
    model = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                              num_classes=91 if pretrained else num_classes, **kwargs)
    if pretrained:
        load_pretrained(model, spec, fetch)
        out_channels = det_utils.retrieve_out_channels(model.backbone, (320, 320))
        anchors = model.anchor_generator.num_anchors_per_location()
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)  # as torchvision's builder
        model.head.classification_head = SSDLiteClassificationHead(out_channels, anchors, num_classes, norm_layer)
    return model
