"""Detection and instance-segmentation models from torchvision, heads sized to the labels.

Every detector follows torchvision's contract: images are a list of [3,H,W] tensors in
[0,1]; training returns a dict of losses, evaluation a list of
``{"boxes", "labels", "scores"[, "masks"]}`` with label 0 the background. ``num_classes``
arriving here already includes that background class (``registry.build_model`` adds it).
"""

from __future__ import annotations

from ..errors import UsageError
from ..tasks import DETECTION, SEGMENTATION
from .registry import register
from .weights import ensure_cached, torchvision_weights

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ASPECT_RATIOS = (0.5, 1.0, 2.0)

# Azure hyperparameter -> the torchvision keyword of each family (R-CNN vs one-stage).
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


def detector_kwargs(family: str, hp: dict) -> dict:
    """The torchvision constructor keywords for ``family`` taken from resolved hyperparameters."""
    if family in ("fasterrcnn", "maskrcnn"):
        table = _RCNN_KEYS
    elif family == "retinanet":
        table = _ONE_STAGE_KEYS
    else:  # ssdlite resizes to a fixed 320x320: min_size/max_size do not apply
        table = {k: v for k, v in _ONE_STAGE_KEYS.items() if k not in ("min_size", "max_size")}
    return {tv: hp[key] for key, tv in table.items() if hp.get(key) is not None}


def _imagenet_backbone(spec, pretrained: bool, backbone_name: str):
    """An FPN over a torchvision ResNet: ImageNet weights frozen-BN, or trainable BatchNorm from scratch."""
    from torch import nn
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    if pretrained:
        ensure_cached(spec.weights, spec.name)
        return resnet_fpn_backbone(backbone_name=backbone_name, weights=torchvision_weights(
            spec.weights.partition(":")[2]), norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    # FrozenBatchNorm2d (resnet_fpn_backbone's default) never normalises freshly initialised
    # weights: from scratch the backbone needs real BatchNorm to train at all.
    return resnet_fpn_backbone(backbone_name=backbone_name, weights=None, norm_layer=nn.BatchNorm2d,
                               trainable_layers=5)


def _coco_weights(spec, pretrained: bool):
    if not pretrained:
        return None
    ensure_cached(spec.weights, spec.name)
    return torchvision_weights(spec.weights.partition(":")[2])


def _rcnn_builder(backbone_name: str, with_masks: bool):
    def build(spec, task, num_classes, pretrained, hp):
        from torchvision.models import detection as tvd

        kwargs = detector_kwargs(spec.family, hp)
        model_class = tvd.MaskRCNN if with_masks else tvd.FasterRCNN
        if backbone_name == "resnet50" and pretrained:
            # COCO-trained detector: built at 91 classes as published, then re-headed.
            builder = tvd.maskrcnn_resnet50_fpn if with_masks else tvd.fasterrcnn_resnet50_fpn
            model = builder(weights=_coco_weights(spec, True), weights_backbone=None, **kwargs)
            _rehead_rcnn(model, num_classes)
        else:
            model = model_class(_imagenet_backbone(spec, pretrained, backbone_name), num_classes=num_classes,
                                **kwargs)
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
    register(f"fasterrcnn_{_backbone}_fpn", (DETECTION,), "fasterrcnn", gradcam_layer=None, weights=_weights,
             description=f"Faster R-CNN, {_backbone} FPN backbone")(_rcnn_builder(_backbone, with_masks=False))
    _mask_weights = ("torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1" if _backbone == "resnet50" else _weights)
    register(f"maskrcnn_{_backbone}_fpn", (SEGMENTATION,), "maskrcnn", gradcam_layer=None, weights=_mask_weights,
             description=f"Mask R-CNN, {_backbone} FPN backbone")(_rcnn_builder(_backbone, with_masks=True))


@register("fasterrcnn_mobilenet_v3_large_fpn", (DETECTION,), "fasterrcnn",
          weights="torchvision:FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1",
          description="Faster R-CNN, MobileNetV3-Large FPN backbone (fast on CPU)")
def _fasterrcnn_mobilenet(spec, task, num_classes, pretrained, hp):
    from torchvision.models import detection as tvd

    kwargs = detector_kwargs(spec.family, hp)
    if pretrained:
        model = tvd.fasterrcnn_mobilenet_v3_large_fpn(weights=_coco_weights(spec, True), weights_backbone=None,
                                                      **kwargs)
        _rehead_rcnn(model, num_classes)
    else:
        model = tvd.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                                      num_classes=num_classes, **kwargs)
    _set_fpn_anchors(model, spec, hp, levels=None)
    return model


@register("retinanet_resnet50_fpn", (DETECTION,), "retinanet",
          weights="torchvision:RetinaNet_ResNet50_FPN_Weights.COCO_V1", description="RetinaNet, ResNet-50 FPN")
def _retinanet(spec, task, num_classes, pretrained, hp):
    from torchvision.models import detection as tvd
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead

    kwargs = detector_kwargs(spec.family, hp)
    if pretrained:
        model = tvd.retinanet_resnet50_fpn(weights=_coco_weights(spec, True), weights_backbone=None, **kwargs)
        anchors = model.anchor_generator.num_anchors_per_location()[0]
        model.head.classification_head = RetinaNetClassificationHead(model.backbone.out_channels, anchors,
                                                                     num_classes)
    else:
        model = tvd.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    sizes = _anchor_sizes(spec, hp, levels=5)
    if sizes is not None:
        # RetinaNet's three octave scales per level, as torchvision builds them (9 anchors, head unchanged).
        per_level = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in sizes)
        model.anchor_generator = AnchorGenerator(per_level, (ASPECT_RATIOS,) * 5)
    return model


@register("ssdlite320_mobilenet_v3_large", (DETECTION,), "ssdlite",
          weights="torchvision:SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
          description="SSDlite 320x320, MobileNetV3-Large (fastest, least accurate)")
def _ssdlite(spec, task, num_classes, pretrained, hp):
    from functools import partial

    from torch import nn
    from torchvision.models import detection as tvd
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

    if hp.get("anchor_sizes") is not None:
        raise UsageError("anchor_sizes does not apply to ssdlite320_mobilenet_v3_large (its default boxes are "
                         "relative to the 320x320 input); remove it or pick a Faster R-CNN model")
    kwargs = detector_kwargs(spec.family, hp)
    if not pretrained:
        return tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes,
                                                 **kwargs)
    model = tvd.ssdlite320_mobilenet_v3_large(weights=_coco_weights(spec, True), weights_backbone=None, **kwargs)
    out_channels = det_utils.retrieve_out_channels(model.backbone, (320, 320))
    anchors = model.anchor_generator.num_anchors_per_location()
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)  # as torchvision's builder
    model.head.classification_head = SSDLiteClassificationHead(out_channels, anchors, num_classes, norm_layer)
    return model
