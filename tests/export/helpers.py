"""Model settings and the weight adjustments that make untrained detectors answer as trained ones
do, for the export tests (fixtures are in conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

from visionml.geometry import polygon_norm_to_abs, polygons_abs_to_mask
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import calibrate_batch_norm

# The box head runs once per proposal: 1000 by default, far more work than these tests need.
FEW_PROPOSALS = {"rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100}
# On top of tests/support.py's TINY: the inference settings a trained model would carry, and for
# detection another backbone than the scoring tests' (fasterrcnn_mobilenet_v3_large_fpn is
# exported in test_export_onnx_detections.py). Random detectors score almost nothing above 0.3,
# so parity tests lower the threshold with overrides (as a deployment's --set would) to get boxes
# to compare.
EXPORTED = {
    MULTICLASS: {},
    MULTILABEL: {"validation_resize_size": 80},
    DETECTION: {"model_name": "fasterrcnn_resnet18_fpn", "min_size": 128, "max_size": 160,
                "box_score_threshold": 0.3, "box_detections_per_image": 20, **FEW_PROPOSALS},
    SEGMENTATION: {"box_score_threshold": 0.3, "box_detections_per_image": 4, **FEW_PROPOSALS,
                   "mask_pixel_score_threshold": 0.5},
}
LOW_THRESHOLD = {"box_score_threshold": "0.05"}


def spread_box_scores(model) -> None:
    if hasattr(model, "roi_heads"):
        # A random box classifier gives every class about 1/5: scores that tie across boxes, so the
        # detection cap would cut between equal scores. Larger weights spread the scores out, as
        # training does, and make "the same boxes" a well-defined test.
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.weight.mul_(4)
    solid_masks(model)


def solid_masks(model) -> None:
    """A random mask head answers pixel noise at its 28x28 resolution, which a mask pasted at
    another resolution (an ONNX graph's, at its input size) cannot reproduce pixel for pixel; a
    trained one answers solid shapes. Small weights and a positive bias: each box's mask is
    solid, with soft edges from the head's features."""
    predictor = getattr(getattr(model, "roi_heads", None), "mask_predictor", None)
    if predictor is not None:
        with torch.no_grad():
            predictor.mask_fcn_logits.weight.mul_(0.05)
            predictor.mask_fcn_logits.bias.fill_(3.0)


# -- detectors that, like trained ones, find nothing on noise or a flat image ----------------

# Models for the README's ONNX step (issue 13 item 4), small enough to export in seconds.
GATED = {
    # The README's detector: its RPN keeps proposals scoring 0.05 or more, so a trained one
    # proposes nothing at all on an image without objects.
    "fasterrcnn_mobilenet_v3_large_fpn": (DETECTION, "rpn", {"min_size": 128, "max_size": 160}),
    "maskrcnn_resnet18_fpn": (SEGMENTATION, "box", {"min_size": 96, "max_size": 128}),
}


def _colour_stem(model) -> None:
    """Make the first convolution average a 3x3 (7x7) window of one colour mix per channel, as
    trained first layers mostly do, so pixel noise reaches the deeper layers weak, and the
    sample data's flat coloured shapes strong."""
    body = model.backbone.body
    stem = body["0"][0] if "0" in body else body.conv1
    with torch.no_grad():
        mean = stem.weight.mean(dim=(2, 3), keepdim=True)
        stem.weight.copy_(mean.expand_as(stem.weight))


def _gate(model, gate: str, with_objects, without_objects) -> None:
    """Make the detector's output depend on one feature that is higher, somewhere in the image,
    on every image in ``with_objects`` than anywhere on ``without_objects``. ``rpn``: the RPN's
    objectness, so that nothing reaches its 0.05 threshold without objects (no proposals, as in
    a trained fasterrcnn_mobilenet_v3_large_fpn); ``box``: the box classifier, whose foreground
    scores are then exactly 0 without objects (no detections)."""
    module = model.rpn.head.conv if gate == "rpn" else model.roi_heads.box_head
    seen = []
    hook = module.register_forward_hook(lambda _module, _inputs, output: seen.append(output))

    def peaks(image):  # per channel, its highest value anywhere in the image
        seen.clear()
        model([image])
        if gate == "rpn":  # one [1, C, H, W] map per pyramid level
            return torch.stack([level[0].amax(dim=(1, 2)) for level in seen]).amax(0)
        return seen[0].amax(0)  # [proposals, C]

    with torch.no_grad():
        low = torch.stack([peaks(x) for x in with_objects]).amin(0)
        high = torch.stack([peaks(x) for x in without_objects]).amax(0)
    hook.remove()
    margin, channel = (low - high).max(0)
    assert margin > 0, "no feature tells these images apart; change the images or the seed"
    with torch.no_grad():
        if gate == "rpn":
            # Objectness logits -3.5 at most without objects (sigmoid 0.03), +1 at least with them,
            # and not much more: a sigmoid that rounds to 1.0 ties boxes, which onnxruntime and
            # PyTorch then order differently.
            gain = 4.5 / float(margin)
            logits = model.rpn.head.cls_logits
            logits.weight[:, channel] += gain
            logits.bias -= gain * float(high[channel]) + 3.5
        else:
            middle = float(low[channel] + high[channel]) / 2
            # foreground logits 300 below the background's: their softmax underflows to 0
            gain = 600 / float(margin)
            scores = model.roi_heads.box_predictor.cls_score
            scores.weight[1:, channel] += gain
            scores.bias[1:] -= gain * middle


def old_trace_noise(min_size: int):
    """The random image the exporter traced on before issue 13: a trained detector finds
    nothing there, which made the exported graph fail on every image with an object."""
    height = min(min_size, 512)
    return torch.rand(3, height, height * 5 // 4, generator=torch.Generator().manual_seed(0))


def read_image(path):
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


# One-stage detectors, untrained: RetinaNet's classes all score about its prior (0.01), so larger
# classifier weights spread the scores out as training does; SSDlite's activations die out
# layer by layer until its BatchNorm statistics are set from images.
ONE_STAGE = {"retinanet_resnet50_fpn": {"min_size": 96, "max_size": 128},
             "ssdlite320_mobilenet_v3_large": {}}


def adjust_one_stage(model, images) -> None:
    """RetinaNet: larger classifier weights; SSDlite: BatchNorm statistics from ``images``."""
    head = model.head.classification_head
    if hasattr(head, "cls_logits"):  # RetinaNet
        with torch.no_grad():
            head.cls_logits.weight.mul_(10)
    else:
        calibrate_batch_norm(model, [read_image(p) for p in images])


def gate_detector(model, gate: str, min_size: int, with_objects, without_objects) -> None:
    """Make an untrained GATED detector find boxes on the images ``with_objects`` and none on
    ``without_objects`` (nor on the noise the exporter once traced on)."""
    _colour_stem(model)
    found = [read_image(p) for p in with_objects]
    empty = [read_image(p) for p in without_objects] + [old_trace_noise(min_size)]
    calibrate_batch_norm(model, found + empty)
    spread_box_scores(model)
    _gate(model, gate, found, empty)


# -- comparing answers ------------------------------------------------------------------------

def _boxes(obj) -> np.ndarray:
    return np.array([[b["box"][k] for k in ("topX", "topY", "bottomX", "bottomY")] for b in obj["boxes"]]).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou

    return box_iou(torch.as_tensor(a), torch.as_tensor(b)).numpy()


# ONNX masks against the torch model's: an exported Mask R-CNN pastes its masks at its input's
# size (Azure's layout), which the onnx backend resizes to the image, while the torch model pastes
# them at the image's size; so a mask's edge may lie up to an input pixel away from the torch
# model's (more image pixels than one where the image is larger than the input), and one more for
# the polygons each side simplifies; so may a mask cut by the image's border, where its box runs
# past it. Everywhere else the masks agree.

def mask_band(size, min_size: int, max_size: int) -> int:
    """Image pixels per input pixel of a Mask R-CNN run on an image of ``size`` (width, height)
    (torchvision's resize by ``min_size``/``max_size``), rounded up, plus one for the polygons."""
    width, height = size
    scale = min(min_size / min(width, height), max_size / max(width, height))
    return max(1, int(np.ceil(1 / scale - 1e-9))) + 1


def assert_masks_close(expected: np.ndarray, got: np.ndarray, band: int) -> None:
    """``got`` lies within ``band`` pixels of ``expected`` and covers it but for a ``band`` wide
    rim: they differ only near ``expected``'s edge (or the image's)."""
    from scipy.ndimage import binary_dilation, binary_erosion

    assert expected.any() and got.any()
    square = np.ones((3, 3), dtype=bool)
    outside = got & ~binary_dilation(expected, square, iterations=band)
    # The image's border counts as an edge: a box running past it has its mask's soft edge there.
    missing = binary_erosion(expected, square, iterations=band, border_value=0) & ~got
    assert not outside.any() and not missing.any(), (
        f"masks differ farther than {band} px from the edge: {int(outside.sum())} px outside, "
        f"{int(missing.sum())} px missing of {int(expected.sum())}")


def assert_same_detections(expected: dict, got: dict, polygons: bool = False, size=None, band: int = 2) -> int:
    """Boxes matched 1:1 (Hungarian on IoU) with IoU >= 0.99, the same label and scores within
    1e-3; with ``polygons``, each pair's polygons rasterise to masks that differ only within
    ``band`` pixels of the edge (``mask_band``)."""
    assert len(got["boxes"]) == len(expected["boxes"])
    if not expected["boxes"]:
        return 0
    iou = _iou(_boxes(expected), _boxes(got))
    rows, cols = linear_sum_assignment(-iou)
    for i, j in zip(rows, cols):
        a, b = expected["boxes"][i], got["boxes"][j]
        assert iou[i, j] >= 0.99, (a, b)
        assert a["label"] == b["label"]
        assert abs(a["score"] - b["score"]) <= 1e-3
        if polygons:
            width, height = size
            masks = [polygons_abs_to_mask(polygon_norm_to_abs(x["polygon"], width, height), height, width)
                     for x in (a, b)]
            assert_masks_close(*masks, band)
    return len(rows)
