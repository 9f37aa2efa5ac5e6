"""Model folders for export tests, made without training (tests/conftest.py's untrained registry
networks, saved as `visionml train` saves them), their ONNX exports (made once per session:
tracing a detector takes seconds), images, and detectors made to answer as trained ones do."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionml.tasks import DETECTION

from tests.support import image_bytes

from .helpers import EXPORTED, GATED, FEW_PROPOSALS, ONE_STAGE, adjust_one_stage, gate_detector, spread_box_scores


@pytest.fixture(scope="session")
def model_dirs(model_folder):
    """{task: model folder}; detectors' box scores spread apart (helpers.spread_box_scores)."""
    out = {}
    for task, hp in EXPORTED.items():
        adjust = spread_box_scores if "box_score_threshold" in hp else None
        out[task] = model_folder(task, adjust=adjust, **hp)
    return out


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


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    """Two images of the synthetic sample data (224x168 shapes on textured backgrounds) and one
    of another size and aspect, so detectors are checked off the size they were traced at."""
    from visionml.data.sample import make_sample_data

    root = tmp_path_factory.mktemp("sample-images")
    make_sample_data(DETECTION, root, n=2, seed=1)
    odd = root / "odd.png"
    odd.write_bytes(image_bytes(width=150, height=210, fmt="PNG", seed=3))
    return [*sorted((root / "images").glob("*.jpg")), odd]


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
def gated_detectors(detection_images, model_folder):
    """{model name: model folder} for GATED: models that find boxes on the sample images of
    ``detection_images`` and none on the others."""
    _, with_objects, without_objects = detection_images
    out = {}
    for name, (task, gate, sizes) in GATED.items():
        def adjust(model, gate=gate, min_size=sizes["min_size"]):
            gate_detector(model, gate, min_size, with_objects, without_objects)

        out[name] = model_folder(task, name, adjust=adjust, **sizes, box_score_threshold=0.3,
                                 box_detections_per_image=20, **FEW_PROPOSALS)
    return out


@pytest.fixture(scope="session")
def one_stage_detectors(detection_images, model_folder):
    """{model name: model folder} for ONE_STAGE."""
    _, with_objects, without_objects = detection_images
    return {name: model_folder(DETECTION, name, adjust=lambda m: adjust_one_stage(m, [*with_objects, *without_objects]),
                               **sizes, box_detections_per_image=20)
            for name, sizes in ONE_STAGE.items()}
