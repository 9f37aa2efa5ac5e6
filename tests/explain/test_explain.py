"""explain() per algorithm and classification task, through the interface the server uses."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from visionml.errors import VisionMLError
from visionml.explain import explain, round_significant
from visionml.tasks import DETECTION, SEGMENTATION

from .helpers import TinyPredictor, random_resnet18

ALGORITHMS = ["xrai", "integrated_gradients", "guided_gradcam", "guided_backprop"]
FAST = {"n_steps": 8}  # few IG steps: the shapes and checks are the same as with 50


def _check_png(text, crop):
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    assert image.format == "PNG"
    assert image.width > 2 * crop and image.height > crop  # the input beside its heat map, plus a title


def _check_attribution(nested, crop):
    values = np.asarray(nested, dtype=np.float64)
    assert values.shape == (3, crop, crop)
    assert np.isfinite(values).all()
    assert np.abs(values).sum() > 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_multiclass_explains_the_top_class(algorithm, multiclass_predictor, photo):
    probs = multiclass_predictor.probs(photo)
    params = {"xai_algorithm": algorithm, "visualizations": True, "attributions": True, **FAST}
    visualization, attribution = explain(multiclass_predictor, photo, probs, params)
    assert isinstance(visualization, str)
    _check_png(visualization, 64)
    _check_attribution(attribution, 64)
    json.dumps({"visualizations": visualization, "attributions": attribution})  # the wire format is plain JSON


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_multilabel_explains_each_class_over_the_threshold(algorithm, multilabel_predictor, photo):
    probs = multilabel_predictor.probs(photo)
    # the model's two most probable classes (Azure explains those above the threshold): Grad-CAM is zero
    # (ReLU'd) for a class with no positive evidence
    threshold = float(np.sort(probs)[-3] + np.sort(probs)[-2]) / 2
    params = {"xai_algorithm": algorithm, "attributions": True, "confidence_score_threshold_multilabel": threshold,
              **FAST}
    visualizations, attributions = explain(multilabel_predictor, photo, probs, params)
    assert len(visualizations) == len(attributions) == 2
    for text, nested in zip(visualizations, attributions):
        _check_png(text, 64)
        _check_attribution(nested, 64)
    # one explanation per class: class 0's and class 2's differ
    assert not np.allclose(attributions[0], attributions[1])


def test_multilabel_threshold_selects_classes(multilabel_predictor, photo):
    probs = np.array([0.9, 0.2, 0.5, 0.49])
    params = {"xai_algorithm": "guided_backprop", "confidence_score_threshold_multilabel": 0.95}
    assert explain(multilabel_predictor, photo, probs, params) == (None, None)  # none above: null, as Azure
    params["attributions"] = True
    assert explain(multilabel_predictor, photo, probs, params) == (None, None)
    params["confidence_score_threshold_multilabel"] = 0.5  # Azure's `>`: the class at exactly 0.5 is left out
    visualizations, attributions = explain(multilabel_predictor, photo, probs, params)
    assert len(visualizations) == len(attributions) == 1
    params["confidence_score_threshold_multilabel"] = 0.1
    visualizations, _ = explain(multilabel_predictor, photo, probs, params)
    assert len(visualizations) == 4


def test_xrai_picture_and_no_attributions_by_default(multiclass_predictor, photo):
    visualization, attribution = explain(multiclass_predictor, photo, multiclass_predictor.probs(photo), FAST)
    _check_png(visualization, 64)
    assert attribution is None


def test_attributions_only(multiclass_predictor, photo):
    params = {"xai_algorithm": "integrated_gradients", "visualizations": False, "attributions": True, **FAST}
    visualization, attribution = explain(multiclass_predictor, photo, multiclass_predictor.probs(photo), params)
    assert visualization is None
    _check_attribution(attribution, 64)


def test_integrated_gradients_are_complete(multiclass_predictor, photo):
    """IG's defining property: attributions sum to p(image) - p(baseline) for the explained class."""
    probs = multiclass_predictor.probs(photo)
    top = int(np.argmax(probs))
    params = {"xai_algorithm": "integrated_gradients", "visualizations": False, "attributions": True,
              "n_steps": 64, "approximation_method": "gausslegendre"}
    _, attribution = explain(multiclass_predictor, photo, probs, params)
    with torch.no_grad():
        baseline = torch.softmax(multiclass_predictor.model(torch.zeros(1, 3, 64, 64)), 1)[0, top].item()
    assert np.sum(attribution) == pytest.approx(probs[top] - baseline, abs=0.02 + 0.1 * abs(float(probs[top]) - baseline))


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_detection_and_segmentation_have_no_explanations(task, photo):
    predictor = TinyPredictor(random_resnet18(2), task, ["a", "b"], crop=64)
    assert explain(predictor, photo, np.array([0.5, 0.5]), {"attributions": True}) == (None, None)


def test_vit_has_no_layer_for_gradcam(photo):
    predictor = TinyPredictor(random_resnet18(2), "image_classification", ["a", "b"], 64, model_name="vitb16r224")
    with pytest.raises(VisionMLError, match="guided_gradcam needs a convolutional layer.*vitb16r224"):
        explain(predictor, photo, np.array([0.6, 0.4]), {"xai_algorithm": "guided_gradcam"})
    visualization, _ = explain(predictor, photo, np.array([0.6, 0.4]), {"xai_algorithm": "guided_backprop"})
    _check_png(visualization, 64)


def test_unregistered_model_uses_its_last_conv_layer(photo):
    from visionml.explain.methods import gradcam_layer

    model = random_resnet18(2)
    assert gradcam_layer(model, "someone_elses_net") == "layer4.1.conv2"
    predictor = TinyPredictor(model, "image_classification", ["a", "b"], 64, model_name="someone_elses_net")
    _, attribution = explain(predictor, photo, np.array([0.6, 0.4]),
                             {"xai_algorithm": "guided_gradcam", "attributions": True})
    _check_attribution(attribution, 64)


def test_bad_parameters_fail_before_any_work(multiclass_predictor, photo):
    with pytest.raises(VisionMLError, match="valid"):
        explain(multiclass_predictor, photo, np.array([1.0, 0, 0]), {"xai_algorithm": "shap"})


def test_the_served_model_is_left_untouched(photo):
    """Guided methods hook ReLUs; they must do so on a private copy, never on the served model."""
    model = random_resnet18(3, seed=3).eval()
    predictor = TinyPredictor(model, "image_classification", ["a", "b", "c"], 64)
    x = predictor.preprocess(photo)[None]
    with torch.no_grad():
        before = model(x)
    inplace_before = [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    for algorithm in ("guided_backprop", "guided_gradcam", "integrated_gradients"):
        explain(predictor, photo, predictor.probs(photo), {"xai_algorithm": algorithm, **FAST})
    assert inplace_before == [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_segments_match_saliencys_own():
    from saliency.core import xrai as saliency_xrai
    from skimage import data

    from visionml.explain.methods import felzenszwalb_segments

    image = data.astronaut()[::4, ::4].astype(np.float64) / 127.5 - 1.0  # 128x128, values as XRAI sees them
    expected = saliency_xrai._get_segments_felzenszwalb(image)
    ours = felzenszwalb_segments(image)
    assert len(ours) == len(expected) > 10
    assert all(np.array_equal(a, b) for a, b in zip(ours, expected))


def test_round_significant_keeps_five_digits_and_prints_short():
    values = np.array([-4.29691234e-04, 1.30901e-03, 0.0, 123456.7, 7.7791e-12], dtype=np.float32)
    rounded = round_significant(values)
    assert rounded.tolist()[:3] == [-0.00042969, 0.001309, 0.0]
    assert rounded[3] == 123457.0
    assert json.dumps(rounded[4].item()) == "7.7791e-12"


def test_xrai_top_regions_are_whole_regions():
    from visionml.explain.render import top_regions_mask

    xrai_map = np.zeros((10, 10))
    xrai_map[:2, :5] = 3.0   # 10% best region
    xrai_map[5:, :] = 1.0    # 50% region: does not fit in 30% with the first
    xrai_map[2:5, :] = 2.0   # 30% region: 10% + 30% > 30%, left out too
    assert top_regions_mask(xrai_map).sum() == 10
    assert top_regions_mask(xrai_map, 0.4).sum() == 40
    assert top_regions_mask(np.ones((4, 4))).all()  # one region: it is the top one
