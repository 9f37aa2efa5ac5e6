"""The schema doc's XAI request against a real uvicorn server serving a model folder."""

import base64
import contextlib
import io
import json

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from visionml.tasks import MULTICLASS, MULTILABEL

from tests.support import ThreadServer

from .helpers import LABELS


@pytest.fixture(scope="module")
def served(model_folder):
    """One uvicorn server per classification task, in threads of this process; always stopped."""
    from visionml.predict import Predictor
    from visionml.serve import create_app

    with contextlib.ExitStack() as stack:
        urls = {}
        for task in (MULTICLASS, MULTILABEL):
            predictor = Predictor.from_folder(model_folder(task, labels=LABELS))
            urls[task] = stack.enter_context(ThreadServer(create_app(predictor))).url
        yield urls


def _request(xai_parameters, explain=True):
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).resize((120, 80)).save(buffer, format="JPEG")
    # exactly as the schema doc builds it: encodebytes (with newlines) inside a JSON string
    item = json.dumps({"image_base64": base64.encodebytes(buffer.getvalue()).decode("utf-8"),
                       "model_explainability": explain, "xai_parameters": xai_parameters})
    return {"input_data": {"columns": ["image"], "data": [item, item]}}


def test_schema_doc_xai_request_multiclass(served):
    body = _request({"xai_algorithm": "xrai", "visualizations": True, "attributions": True, "n_steps": 8})
    response = httpx.post(served[MULTICLASS] + "/score", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer) == 2
    for obj in answer:
        assert obj["labels"] == LABELS and len(obj["probs"]) == 4
        Image.open(io.BytesIO(base64.b64decode(obj["visualizations"]))).verify()
        attribution = np.asarray(obj["attributions"])
        assert attribution.shape == (3, 64, 64) and np.isfinite(attribution).all()


def test_schema_doc_xai_request_multilabel(served):
    body = _request({"xai_algorithm": "integrated_gradients", "attributions": True, "n_steps": 8,
                     "confidence_score_threshold_multilabel": 0.0})
    response = httpx.post(served[MULTILABEL] + "/score", json=body, timeout=120)
    assert response.status_code == 200, response.text
    obj = response.json()[0]
    assert len(obj["visualizations"]) == len(obj["attributions"]) == 4  # every class is > 0.0
    assert np.asarray(obj["attributions"]).shape == (4, 3, 64, 64)


def test_unknown_algorithm_is_400_naming_the_valid_ones(served):
    response = httpx.post(served[MULTICLASS] + "/score", json=_request({"xai_algorithm": "lime"}), timeout=60)
    assert response.status_code == 400
    assert "xrai, integrated_gradients, guided_gradcam, guided_backprop" in response.json()["error"]


def test_without_explainability_only_scores(served):
    response = httpx.post(served[MULTICLASS] + "/score", json=_request({}, explain=False), timeout=60)
    assert response.status_code == 200
    obj = response.json()[0]
    assert obj["visualizations"] is None and obj["attributions"] is None


def test_no_class_above_the_threshold_answers_null_as_azure(served):
    body = _request({"xai_algorithm": "guided_backprop", "attributions": True,
                     "confidence_score_threshold_multilabel": 1.0})
    response = httpx.post(served[MULTILABEL] + "/score", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert [(o["visualizations"], o["attributions"]) for o in response.json()] == [(None, None)] * 2


def test_served_integrated_gradients_are_azures_noise_tunnel_and_figure(served, model_folder):
    """What a client gets over HTTP is captum's NoiseTunnel(IntegratedGradients) on the logit with
    Azure's settings (seeded as visionml seeds its noise), drawn as Azure's 12x12-inch figure."""
    from captum.attr import IntegratedGradients, NoiseTunnel

    from visionml.predict import Predictor

    body = _request({"xai_algorithm": "integrated_gradients", "attributions": True, "n_steps": 4,
                     "approximation_method": "riemann_trapezoid"})
    response = httpx.post(served[MULTICLASS] + "/score", json=body, timeout=120)
    assert response.status_code == 200, response.text
    obj = response.json()[0]
    figure = Image.open(io.BytesIO(base64.b64decode(obj["visualizations"])))
    assert figure.width > 900 and figure.height > 900  # 1200 px at 100 dpi, cropped to what is drawn

    predictor = Predictor.from_folder(model_folder(MULTICLASS, labels=LABELS))
    item = json.loads(body["input_data"]["data"][0])
    x = predictor.preprocess(Image.open(io.BytesIO(base64.b64decode(item["image_base64"]))).convert("RGB"))[None]
    torch.manual_seed(0)
    expected = NoiseTunnel(IntegratedGradients(predictor.model)).attribute(
        x, target=int(np.argmax(obj["probs"])), n_steps=4, method="riemann_trapezoid", internal_batch_size=5,
        nt_type="smoothgrad", nt_samples=5, stdevs=0.2, nt_samples_batch_size=5)[0].detach().numpy()
    got = np.asarray(obj["attributions"])
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
