"""Model folders for export tests, made without training: small randomly initialised networks
from the registry, saved with modelio exactly as `visionml train` saves them, and their ONNX
exports (made once per session: tracing a detector takes seconds)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from visionml.data.sample import CLASSES
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from support import make_untrained_model_folder

LABELS = list(CLASSES)  # the sample data's classes

# The box head runs once per proposal: 1000 by default, far more work than these tests need.
FEW_PROPOSALS = {"rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100}
# Small and fast on a 2-core CPU, with the inference settings a trained model would carry.
# Random detectors score almost nothing above 0.3, so parity tests lower the threshold with
# overrides (as a deployment's --set would) to get boxes to compare.
TINY = {
    MULTICLASS: ("resnet18", {"validation_resize_size": 72, "validation_crop_size": 64}),
    MULTILABEL: ("resnet18", {"validation_resize_size": 80, "validation_crop_size": 64}),
    DETECTION: ("fasterrcnn_resnet18_fpn",
                {"min_size": 128, "max_size": 160, "box_score_threshold": 0.3, "box_detections_per_image": 20, **FEW_PROPOSALS}),
    SEGMENTATION: ("maskrcnn_resnet18_fpn",
                   {"min_size": 96, "max_size": 128, "box_score_threshold": 0.3, "box_detections_per_image": 4, **FEW_PROPOSALS,
                    "mask_pixel_score_threshold": 0.5, "max_number_of_polygon_points": 30}),
}
LOW_THRESHOLD = {"box_score_threshold": "0.05"}


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    torch.set_num_threads(2)


def _spread_box_scores(model) -> None:
    if hasattr(model, "roi_heads"):
        # A random box classifier gives every class about 1/5: scores that tie across boxes, so the
        # detection cap would cut between equal scores. Larger weights spread the scores out, as
        # training does, and make "the same boxes" a well-defined test.
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.weight.mul_(4)


def make_model_folder(path, task: str, **hp_overrides):
    name, hp = TINY[task]
    return make_untrained_model_folder(path, task, name, LABELS, {**hp, **hp_overrides},
                                       adjust=_spread_box_scores)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {task: make_model_folder(root / task, task) for task in TINY}


@pytest.fixture(scope="session")
def onnx_dirs(model_dirs, tmp_path_factory):
    """Each model folder exported through the CLI, as a user would."""
    from visionml.cli import main

    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for task, model_dir in model_dirs.items():
        out[task] = root / task
        assert main(["export", "--model", str(model_dir), "--format", "onnx", "-o", str(out[task])]) == 0
    return out


def image_bytes(width=120, height=90, fmt="JPEG", seed=0) -> bytes:
    """A small picture with some structure (bright rectangles on noise)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    pixels[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = (230, 200, 40)
    pixels[height // 8: height // 3, width // 8: width // 4] = (40, 90, 220)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    """Two images of the synthetic sample data (224x168 shapes on textured backgrounds) and one
    of another size and aspect, so detectors are checked off the size they were traced at."""
    from visionml.data.sample import make_sample_data

    root = tmp_path_factory.mktemp("sample")
    make_sample_data(DETECTION, root, n=2, seed=1)
    odd = root / "odd.png"
    odd.write_bytes(image_bytes(width=150, height=210, fmt="PNG", seed=3))
    return [*sorted((root / "images").glob("*.jpg")), odd]


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


def _calibrate_batch_norm(model, images) -> None:
    """Set the BatchNorm statistics of the backbone (and of SSD's head) from ``images`` (an
    untrained network's are 0 and 1, which shrinks its activations layer by layer until every
    image looks the same)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch
    model.eval()
    batch = model.transform(images)[0].tensors
    model.train()
    with torch.no_grad():
        features = model.backbone(batch)
        if hasattr(model, "head"):  # one-stage detectors: the head sees every pyramid level
            model.head(list(features.values()))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


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


def _read(path):
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


@pytest.fixture(scope="session")
def detection_images(tmp_path_factory):
    """(folder, images with objects, images without): three sample-data images, and a flat grey
    picture and pixel noise, in one folder as a user would pass it to predict."""
    from visionml.data.sample import make_sample_data

    root = tmp_path_factory.mktemp("detection-images")
    make_sample_data(DETECTION, root, n=3, seed=1)
    images = root / "images"
    with_objects = sorted(images.glob("*.jpg"))
    Image.new("RGB", (150, 210), (128, 128, 128)).save(images / "flat.png")
    noise = np.random.default_rng(5).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "noise.png")
    return images, with_objects, [images / "flat.png", images / "noise.png"]


@pytest.fixture(scope="session")
def gated_detectors(detection_images, tmp_path_factory):
    """{model name: model folder} for GATED: models that find boxes on the sample images of
    ``detection_images`` and none on the others."""
    _, with_objects, without_objects = detection_images
    root = tmp_path_factory.mktemp("gated")
    out = {}
    for name, (task, gate, sizes) in GATED.items():
        hp = {**sizes, "box_score_threshold": 0.3, "box_detections_per_image": 20, **FEW_PROPOSALS}

        def adjust(model, gate=gate, min_size=sizes["min_size"]):
            _colour_stem(model)
            found = [_read(p) for p in with_objects]
            empty = [_read(p) for p in without_objects] + [old_trace_noise(min_size)]
            _calibrate_batch_norm(model, found + empty)
            _spread_box_scores(model)
            _gate(model, gate, found, empty)

        out[name] = make_untrained_model_folder(root / name, task, name, LABELS, hp, adjust=adjust)
    return out


# One-stage detectors, untrained: RetinaNet's classes all score about its prior (0.01), so larger
# classifier weights spread the scores out as training does; SSDlite's activations die out
# layer by layer until its BatchNorm statistics are set from images.
ONE_STAGE = {"retinanet_resnet50_fpn": {"min_size": 96, "max_size": 128},
             "ssdlite320_mobilenet_v3_large": {}}


def _adjust_one_stage(model, images) -> None:
    head = model.head.classification_head
    if hasattr(head, "cls_logits"):  # RetinaNet
        with torch.no_grad():
            head.cls_logits.weight.mul_(10)
    else:
        _calibrate_batch_norm(model, [_read(p) for p in images])


@pytest.fixture(scope="session")
def one_stage_detectors(detection_images, tmp_path_factory):
    """{model name: model folder} for ONE_STAGE."""
    _, with_objects, without_objects = detection_images
    root = tmp_path_factory.mktemp("one-stage")
    return {name: make_untrained_model_folder(root / name, DETECTION, name, LABELS,
                                              {**sizes, "box_detections_per_image": 20},
                                              adjust=lambda m: _adjust_one_stage(m, [*with_objects, *without_objects]))
            for name, sizes in ONE_STAGE.items()}
