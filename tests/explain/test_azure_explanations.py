"""Explanations computed as Azure AutoML computes them (issue 20 item 3): integrated gradients and
guided backprop through captum's NoiseTunnel on the logit, Azure's multi-label selection, every
approximation method, and Azure's 2x2 figure (visionml's overlay kept as an option)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from visionml.errors import VisionMLError
from visionml.explain import explain, explain_arrays, parse_xai_parameters

ONLY_ATTRIBUTIONS = {"visualizations": False, "attributions": True}


def _captum_reference(method_cls, model, x, target, **kwargs):
    """Azure's call (explainability/methods.py): NoiseTunnel(method(model)) with smoothgrad, 5 samples,
    stdev 0.2, 5 per batch; the noise from torch's generator seeded as visionml seeds its own."""
    from captum.attr import NoiseTunnel

    torch.manual_seed(0)
    return NoiseTunnel(method_cls(model)).attribute(x, target=target, nt_type="smoothgrad", nt_samples=5, stdevs=0.2,
                                                    nt_samples_batch_size=5, **kwargs)[0].detach().numpy()


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_right", "gausslegendre"])
def test_integrated_gradients_are_azures_noise_tunnel_on_the_logit(multiclass_predictor, photo, method):
    from captum.attr import IntegratedGradients

    predictor = multiclass_predictor
    probs = predictor.probs(photo)
    target = int(np.argmax(probs))
    x = predictor.preprocess(photo)[None]
    expected = _captum_reference(IntegratedGradients, predictor.model, x, target, n_steps=4, method=method,
                                 internal_batch_size=5)
    _, attribution = explain(predictor, photo, probs, {"xai_algorithm": "integrated_gradients", "n_steps": 4,
                                                        "approximation_method": method, **ONLY_ATTRIBUTIONS})
    np.testing.assert_allclose(np.asarray(attribution), expected, rtol=1e-4, atol=1e-7 * np.abs(expected).max())


def test_guided_backprop_is_azures_noise_tunnel(multilabel_predictor, photo):
    from captum.attr import GuidedBackprop

    predictor = multilabel_predictor
    probs = np.array([0.9, 0.1, 0.2, 0.3])
    x = predictor.preprocess(photo)[None]
    expected = _captum_reference(GuidedBackprop, predictor.model, x, 0)
    _, (attribution,) = explain(predictor, photo, probs, {"xai_algorithm": "guided_backprop", **ONLY_ATTRIBUTIONS})
    np.testing.assert_allclose(np.asarray(attribution), expected, rtol=1e-4, atol=1e-7 * np.abs(expected).max())


def test_the_same_image_gets_the_same_explanation(multiclass_predictor, photo):
    probs = multiclass_predictor.probs(photo)
    params = {"xai_algorithm": "integrated_gradients", "n_steps": 3, **ONLY_ATTRIBUTIONS}
    first = explain(multiclass_predictor, photo, probs, params)[1]
    torch.manual_seed(123)  # the global generator does not drive the noise
    assert explain(multiclass_predictor, photo, probs, params)[1] == first


def test_multilabel_explains_classes_above_the_threshold_and_null_when_none(multilabel_predictor, photo):
    params = {"xai_algorithm": "guided_gradcam", "confidence_score_threshold_multilabel": 0.5, "attributions": True}
    probs = np.array([0.9, 0.5, 0.7, 0.1])  # 0.5 is not above 0.5 (Azure: probs > threshold)
    explanations = explain_arrays(multilabel_predictor, photo, probs, {**params, "visualizations": False})
    assert [e.label for e in explanations] == ["can", "milk"]
    assert explain(multilabel_predictor, photo, np.array([0.5, 0.2, 0.1, 0.0]), params) == (None, None)


def test_n_steps_from_two_and_every_approximation_method():
    for method in ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"):
        assert parse_xai_parameters({"approximation_method": method}, strict=True).approximation_method == method
    assert parse_xai_parameters({"n_steps": 2}).n_steps == 2
    with pytest.raises(VisionMLError, match="from 2"):
        parse_xai_parameters({"n_steps": 1})
    assert parse_xai_parameters({"n_steps": 5000}).n_steps == 5000  # no cap unless a server sets one
    with pytest.raises(VisionMLError, match="over 100, this server's limit"):
        parse_xai_parameters({"n_steps": 101}, strict=True, max_steps=100)


def test_requests_take_json_values_as_azure_does():
    with pytest.raises(VisionMLError, match='"8" is not valid'):
        parse_xai_parameters({"n_steps": "8"}, strict=True)
    with pytest.raises(VisionMLError, match='"XRAI" is not valid'):
        parse_xai_parameters({"xai_algorithm": "XRAI"}, strict=True)
    flags = parse_xai_parameters({"attributions": "True", "visualizations": "false", "xrai_fast": 0}, strict=True)
    assert (flags.attributions, flags.visualizations, flags.xrai_fast) == (True, False, False)
    assert parse_xai_parameters({"n_steps": "8", "xai_algorithm": "XRAI"}).n_steps == 8  # the CLI's strings


def _png(text) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def test_the_visualization_is_azures_figure_and_the_overlay_an_option(multiclass_predictor, photo):
    probs = multiclass_predictor.probs(photo)
    figure, _ = explain(multiclass_predictor, photo, probs, {"xai_algorithm": "guided_backprop"})
    overlay, _ = explain(multiclass_predictor, photo, probs, {"xai_algorithm": "guided_backprop",
                                                               "visualization_style": "overlay"})
    # Azure's 12x12 inch figure at 100 dpi, cropped to what is drawn; the overlay is the crop's own size
    assert 1000 <= _png(figure).width <= 1200 and 1000 <= _png(figure).height <= 1200
    assert _png(overlay).height < 400
    with pytest.raises(VisionMLError, match="figure, overlay"):
        explain(multiclass_predictor, photo, probs, {"visualization_style": "poster"})


def test_the_figure_has_azures_panels_and_title():
    from visionml.explain.render import azure_figure

    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    attribution = np.random.default_rng(1).standard_normal((3, 32, 32)).astype(np.float32)
    figure = azure_figure(image, "integrated_gradients", "milk bottle", 0.912345678, attribution)
    assert figure._suptitle.get_text() == "Predicted_label: milk bottle, Confidence_score: 0.9123"
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["Augmented Input Image", "integrated_gradients heatmap", "integrated_gradients on image",
                      "Top 30% attributions"]
    assert tuple(figure.get_size_inches()) == (12, 12)
    # the top-30% panel keeps the channel values whose attribution is above the 70th percentile, as Azure's
    top = figure.axes[3].get_images()[0].get_array()
    kept = np.transpose(attribution > np.percentile(attribution, 70), (1, 2, 0))
    np.testing.assert_array_equal(np.asarray(top) > 0, kept & (image > 0))
