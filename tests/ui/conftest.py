"""Data and model folders for the page tests, made once per session: sample-data images, a
detector that finds boxes with spread-out scores, a classifier, and data with planted faults."""

from __future__ import annotations

import json

import pytest

from tests.support import make_untrained_model_folder

from .helpers import LABELS, calibrated_detector

DETECTOR = ("fasterrcnn_mobilenet_v3_large_fpn",
            {"min_size": 128, "max_size": 160, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 20,
             "box_score_threshold": 0.3, "box_detections_per_image": 12})
CLASSIFIER = ("resnet18", {"validation_resize_size": 72, "validation_crop_size": 64})


@pytest.fixture(scope="session")
def det_data(tmp_path_factory):
    """`visionml sample-data` detection data: {"train", "val"} JSONL paths (10 images)."""
    from visionml.data.sample import make_sample_data

    return make_sample_data("image_object_detection", tmp_path_factory.mktemp("det-data"), n=10, seed=0,
                            size=(160, 120))


@pytest.fixture(scope="session")
def cls_data(tmp_path_factory):
    from visionml.data.sample import make_sample_data

    return make_sample_data("image_classification", tmp_path_factory.mktemp("cls-data"), n=10, seed=0,
                            size=(160, 120))


@pytest.fixture(scope="session")
def detector(det_data, tmp_path_factory):
    """A model folder holding an untrained detector calibrated on the training images (it answers
    up to 12 boxes per image, scores from about 0.3 to 0.97, deployed at box_score_threshold 0.3)."""
    images = sorted((det_data["train"].parent / "images").glob("*.jpg"))[:6]
    name, hp = DETECTOR
    return make_untrained_model_folder(tmp_path_factory.mktemp("detector") / "model", "image_object_detection",
                                       name, LABELS, hp, adjust=calibrated_detector(images))


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    name, hp = CLASSIFIER
    return make_untrained_model_folder(tmp_path_factory.mktemp("classifier") / "model", "image_classification",
                                       name, LABELS, hp)


def with_bad_line(src, dst):
    """A copy of the JSONL ``src`` at ``dst`` in which the first line with several objects has a box
    outside [0, 1] (the reader drops that object, the rest of the line trains: a problem on
    FILE:LINE of a kept image), plus a last line that is not JSON (left out). Returns
    ``(dst, the line with the bad box, the bad line)``."""
    lines = src.read_text(encoding="utf-8").splitlines()
    number = next(n for n, line in enumerate(lines, 1) if len(json.loads(line)["label"]) > 1)
    obj = json.loads(lines[number - 1])
    obj["label"][0]["bottomX"] = 1.7
    lines[number - 1] = json.dumps(obj)
    lines.append('{"image_url": "images/missing.jpg", "label": [')
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst, number, len(lines)
