"""The request bodies of Azure's scoring scripts, against real uvicorn servers, and /openapi.json held
against what those servers accept and answer (issue 20 item 2)."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import ThreadServer, image_bytes

from .helpers import SCORE_EVERYTHING
from .schema_check import errors as schema_errors

JPEG = image_bytes()
B64 = base64.b64encode(JPEG).decode()
GUIDED = {"xai_algorithm": "guided_backprop", "visualization_style": "overlay"}  # the cheapest explanation


@pytest.fixture(scope="module")
def served(model_folder):
    """A server per task, uvicorn in a thread (stopped whatever happens); multi-class caps n_steps at 30."""
    import contextlib

    from visionml.predict import Predictor
    from visionml.serve import create_app

    with contextlib.ExitStack() as stack:
        urls = {}
        for task in (MULTICLASS, MULTILABEL, DETECTION, SEGMENTATION):
            predictor = Predictor.from_folder(model_folder(task, **SCORE_EVERYTHING.get(task, {})))
            app = create_app(predictor, max_xai_steps=30 if task == MULTICLASS else 1000)
            urls[task] = stack.enter_context(ThreadServer(app)).url
        yield urls


def post(url, body=None, *, content=None, content_type="application/json", params=None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    data = content if content is not None else json.dumps(body).encode()
    return httpx.post(url + "/score", content=data, headers=headers, params=params, timeout=120)


def input_data(*items) -> dict:
    return {"input_data": {"columns": ["image"], "data": list(items)}}


def item(**fields) -> str:
    return json.dumps({"image_base64": B64, **fields})


def test_raw_image_bytes_get_the_one_object_the_list_body_gets(served):
    listed = post(served[MULTICLASS], input_data(B64)).json()[0]
    for content_type in ("image/jpeg", "application/octet-stream", None):  # Azure's v1 script: any non-JSON body
        response = post(served[MULTICLASS], content=JPEG, content_type=content_type)
        assert response.status_code == 200, response.text
        assert response.json() == listed  # one object, not a list


def test_image_body_with_string_explainability(served):
    answer = post(served[MULTICLASS], {"image": B64, "model_explainability": "True", "xai_parameters": GUIDED}).json()
    assert isinstance(answer, dict) and isinstance(answer["visualizations"], str)
    plain = post(served[MULTICLASS], {"image": B64, "model_explainability": "false", "xai_parameters": GUIDED}).json()
    assert plain["visualizations"] is None and plain["probs"] == answer["probs"]


@pytest.mark.parametrize("flag, explains", [(True, True), ("True", True), ("true", True), ("yes", True), (1, True),
                                            (False, False), ("false", False), ("False", False), (0, False)])
def test_model_explainability_as_bool_or_string(served, flag, explains):
    response = post(served[MULTICLASS], input_data(item(model_explainability=flag, xai_parameters=GUIDED)))
    assert response.status_code == 200, response.text
    assert (response.json()[0]["visualizations"] is not None) == explains


def test_first_row_parameters_apply_to_rows_that_do_not_set_them(served):
    """Azure's MLflow model reads model_explainability and xai_parameters from the first row only."""
    first = item(model_explainability=True, xai_parameters={**GUIDED, "attributions": True, "visualizations": False})
    rows = [first, item(), B64, item(model_explainability=False), item(xai_parameters={**GUIDED})]
    answers = post(served[MULTICLASS], input_data(*rows)).json()
    explained = [(a["visualizations"] is not None, a["attributions"] is not None) for a in answers]
    # rows 1 and 2 inherit everything; row 3 says no itself; row 4 inherits "explain" but has its own parameters
    assert explained == [(False, True), (False, True), (False, True), (False, False), (True, False)]


def test_every_approximation_method_and_the_step_cap(served):
    for method in ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"):
        params = {"xai_algorithm": "integrated_gradients", "n_steps": 2, "approximation_method": method,
                  "visualizations": False, "attributions": True}
        response = post(served[MULTICLASS], {"image": B64, "model_explainability": True, "xai_parameters": params})
        assert response.status_code == 200, (method, response.text)
    too_many = post(served[MULTICLASS], input_data(item(model_explainability=True, xai_parameters={"n_steps": 31})))
    assert too_many.status_code == 400 and too_many.json()["index"] == 0
    assert "over 30" in too_many.json()["error"] and "--max-xai-steps" in too_many.json()["error"]
    one = post(served[MULTILABEL], input_data(item(model_explainability=True, xai_parameters={"n_steps": 1})))
    assert one.status_code == 400 and "from 2" in one.json()["error"]
    allowed = post(served[MULTILABEL], input_data(item(model_explainability=True, xai_parameters={
        "n_steps": 31, "xai_algorithm": "integrated_gradients", "visualizations": False})))
    assert allowed.status_code == 200  # the cap is the server's setting, not a constant


# Bad bodies, each refused with 400, and each refused by the served schema too.
BAD_BODIES = {
    "no columns": {"input_data": {"columns": [], "data": [B64]}},
    "two columns": {"input_data": {"columns": ["image", "image"], "data": [B64]}},
    "other column": {"input_data": {"columns": ["img"], "data": [B64]}},
    "columns missing": {"input_data": {"data": [B64]}},
    "data empty": input_data(),
    "data not a list": {"input_data": {"columns": ["image"], "data": B64}},
    "item a number": input_data(42),
    "item object without image": input_data({"model_explainability": True}),
    "flag not a flag": input_data({"image_base64": B64, "model_explainability": "maybe"}),
    "xai not an object": input_data({"image_base64": B64, "xai_parameters": [1]}),
    "xai unknown key": input_data({"image_base64": B64, "xai_parameters": {"n_step": 10}}),
    "xai n_steps a string": input_data({"image_base64": B64, "xai_parameters": {"n_steps": "10"}}),
    "xai n_steps 1": input_data({"image_base64": B64, "xai_parameters": {"n_steps": 1}}),
    "xai algorithm in capitals": input_data({"image_base64": B64, "xai_parameters": {"xai_algorithm": "XRAI"}}),
    "xai approximation unknown": input_data({"image_base64": B64, "xai_parameters": {"approximation_method": "simpson"}}),
    "image not a string": {"image": 5},
    "image with input_data": {"image": B64, "input_data": 5},
    "neither": {"picture": B64},
    "an array": [B64],
}
# Python's way of showing values: quotes around strings, None/True/False, object addresses.
PYTHON_REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|'\]|<\w[\w.]* object|at 0x[0-9a-f]+")


@pytest.fixture(scope="module")
def openapi(served):
    return {task: httpx.get(url + "/openapi.json", timeout=30).json() for task, url in served.items()}


def _request_schema(spec) -> dict:
    return spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body_is_400_refused_by_the_schema_and_plainly_worded(served, openapi, case):
    response = post(served[MULTICLASS], BAD_BODIES[case])
    assert response.status_code == 400, response.text
    error = response.json()
    assert schema_errors(error, openapi[MULTICLASS]["paths"]["/score"]["post"]["responses"]["400"]["content"][
        "application/json"]["schema"]) == []
    assert not PYTHON_REPR.search(error["error"]), error["error"]
    assert schema_errors(BAD_BODIES[case], _request_schema(openapi[MULTICLASS])), f"the schema allows {case}"


def test_the_schema_takes_every_body_the_server_takes(openapi):
    schema = _request_schema(openapi[MULTICLASS])
    bodies = [input_data(B64), input_data([B64]), input_data(item(model_explainability="True", xai_parameters=GUIDED)),
              input_data({"image_base64": B64, "model_explainability": 1, "xai_parameters": None}),
              {"input_data": {"columns": ["image"], "data": [B64], "index": [0]}},
              {"image": B64}, {"image": B64, "model_explainability": "false", "xai_parameters": {"n_steps": 30}}]
    for body in bodies:
        assert schema_errors(body, schema) == [], body
    steps = schema["anyOf"][1]["properties"]["xai_parameters"]["properties"]["n_steps"]
    assert (steps["minimum"], steps["maximum"]) == (2, 30)  # the server's own cap
    content = openapi[MULTICLASS]["paths"]["/score"]["post"]["requestBody"]["content"]
    assert {"application/json", "image/*", "application/octet-stream"} <= set(content)


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL, DETECTION, SEGMENTATION])
def test_every_answer_matches_the_served_schema(served, openapi, task):
    schema = openapi[task]["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    explain = {"model_explainability": True, "xai_parameters": {**GUIDED, "attributions": True,
                                                                "confidence_score_threshold_multilabel": 0.0}}
    answers = [post(served[task], input_data(B64, item(**explain))).json(),
               post(served[task], content=JPEG, content_type="image/png").json(),
               post(served[task], {"image": B64, **explain}).json()]
    if task in (MULTICLASS, MULTILABEL):
        answers.append(post(served[task], input_data(B64), params={"featurize": "true"}).json())
    for answer in answers:
        assert schema_errors(answer, schema) == []
    # and the schema is the task's: another task's answer does not pass
    other = {"filename": "x", "boxes": []} if task in (MULTICLASS, MULTILABEL) else {"filename": "x", "probs": [1.0]}
    assert schema_errors([other], schema)


def test_featurize_over_http(served, model_folder, tmp_path):
    from visionml.cli import main

    response = post(served[MULTICLASS], input_data(B64, B64), params={"featurize": "true"})
    assert response.status_code == 200, response.text
    vectors = response.json()
    assert [set(v) for v in vectors] == [{"filename", "feature_vector"}] * 2
    assert len(vectors[0]["feature_vector"]) == 512  # resnet18's pooled features, the fc layer's input
    image = tmp_path / "a.jpg"
    image.write_bytes(JPEG)
    out = tmp_path / "features.jsonl"
    assert main(["featurize", "--model", str(model_folder(MULTICLASS)), str(image), "--output", str(out)]) == 0
    cli = json.loads(out.read_text())["feature_vector"]
    assert cli == pytest.approx(vectors[0]["feature_vector"], abs=1e-5)
    refused = post(served[DETECTION], input_data(B64), params={"featurize": "true"})
    assert refused.status_code == 400 and "classification" in refused.json()["error"]
    both = post(served[MULTICLASS], input_data(item(model_explainability=True)), params={"featurize": "1"})
    assert both.status_code == 400 and "featurize" in both.json()["error"]
