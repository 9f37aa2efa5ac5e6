"""The predictor from Python: `visionml.load_model(DIR).predict([...])` and the arrays evaluate uses."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from PIL import Image

import visionml
from visionml.data.transforms import build_transforms
from visionml.errors import UsageError, VisionMLError
from visionml.predict import Predictor
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import LABELS, image_bytes


def test_every_input_kind_gives_the_same_answer(predictors, tmp_path):
    data = image_bytes(seed=3)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    predictor = predictors[MULTICLASS]
    outputs = predictor.predict([data, base64.encodebytes(data).decode(), str(path), Image.open(path)])
    assert [o["filename"] for o in outputs][:3] == ["image_0", "image_1", str(path)]
    assert all(o["probs"] == pytest.approx(outputs[0]["probs"], abs=1e-6) for o in outputs)


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_probabilities_are_softmax_or_sigmoid_of_the_trainers_eval_input(predictors, task):
    predictor = predictors[task]
    image = Image.open(__import__("io").BytesIO(image_bytes(150, 100, seed=5)))
    x = build_transforms(task, predictor.settings, train=False)(image.convert("RGB"))
    assert torch.allclose(predictor.preprocess(image.convert("RGB")), x, atol=1e-5)
    with torch.inference_mode():
        logits = predictor.model(x[None]).float()
    expected = torch.sigmoid(logits) if task == MULTILABEL else torch.softmax(logits, 1)
    (probs,) = predictor.raw_predict([image.convert("RGB")])
    assert probs.dtype == np.float32 and probs.shape == (len(LABELS),)
    np.testing.assert_allclose(probs, expected[0].numpy(), atol=1e-6)
    assert predictor.predict([image])[0]["probs"] == pytest.approx(probs.tolist(), abs=1e-6)


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_raw_detections_are_in_original_pixels(predictors, task):
    predictor = predictors[task]
    image = Image.open(__import__("io").BytesIO(image_bytes(200, 120))).convert("RGB")
    (raw,) = predictor.raw_predict([image])
    n = len(raw["scores"])
    assert 1 <= n <= predictor.settings["box_detections_per_image"]
    assert raw["boxes"].shape == (n, 4)
    assert (raw["boxes"][:, [0, 2]] <= 200 + 1e-3).all() and (raw["boxes"][:, [1, 3]] <= 120 + 1e-3).all()
    assert raw["labels"].min() >= 0 and raw["labels"].max() < len(LABELS)
    if task == SEGMENTATION:
        assert raw["masks"].dtype == bool and raw["masks"].shape == (n, 120, 200)
    wire = predictor.to_output(raw, image, "a.jpg")
    assert wire["boxes"][0]["box"]["bottomX"] == pytest.approx(min(1.0, raw["boxes"][0, 2] / 200), abs=1e-6)


def test_polygons_respect_max_points(predictors):
    outputs = predictors[SEGMENTATION].predict([image_bytes(200, 160, seed=s) for s in range(2)])
    segments = [seg for o in outputs for box in o["boxes"] for seg in box["polygon"]]
    assert segments, "the test model should produce at least one polygon"
    for o in outputs:
        for box in o["boxes"]:
            assert sum(len(seg) for seg in box["polygon"]) // 2 <= 30


def test_deployment_overrides(model_dirs):
    strict = visionml.load_model(model_dirs[DETECTION], box_score_threshold=0.999)
    assert strict.settings["box_score_threshold"] == 0.999
    assert strict.model.roi_heads.score_thresh == 0.999
    assert strict.predict([image_bytes()])[0]["boxes"] == []
    two = Predictor.from_folder(model_dirs[DETECTION], overrides={"box_detections_per_image": "2"})
    assert len(two.predict([image_bytes()])[0]["boxes"]) == 2


@pytest.mark.parametrize("overrides, message", [
    ({"box_score_treshold": "0.5"}, "Did you mean box_score_threshold"),
    ({"model_name": "resnet50"}, "cannot be set at inference"),
    ({"box_score_threshold": "1.5"}, "box_score_threshold"),
    ({"box_score_threshold": "high"}, "box_score_threshold"),
])
def test_bad_overrides_are_usage_errors(model_dirs, overrides, message):
    with pytest.raises(UsageError, match=message):
        Predictor.from_folder(model_dirs[DETECTION], overrides=overrides)


def test_classification_crop_override_changes_the_input(model_dirs):
    predictor = Predictor.from_folder(model_dirs[MULTICLASS], overrides={"validation_crop_size": "48"})
    assert predictor.preprocess(Image.new("RGB", (90, 80))).shape == (3, 48, 48)


def test_onnx_backend_needs_an_exported_model(model_dirs):
    with pytest.raises(VisionMLError, match="visionml export"):
        Predictor.from_folder(model_dirs[MULTICLASS], backend="onnx")
    with pytest.raises(UsageError, match="unknown backend"):
        Predictor.from_folder(model_dirs[MULTICLASS], backend="tensorrt")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(VisionMLError, match="visionml.json"):
        Predictor.from_folder(tmp_path)


def test_unreadable_image_names_its_index(predictors):
    with pytest.raises(VisionMLError, match="not a readable image") as info:
        predictors[MULTICLASS].predict([image_bytes(), b"garbage"])
    assert info.value.index == 1


def test_detection_ignores_explainability(predictors):
    out = predictors[DETECTION].predict([image_bytes()], xai={"xai_algorithm": "xrai"})
    assert set(out[0]) == {"filename", "boxes"}
