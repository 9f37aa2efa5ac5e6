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
