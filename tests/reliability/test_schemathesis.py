"""`visionml serve` fuzzed from its own ``/openapi.json`` with schemathesis (issue 18, item 1).

Every documented route is tried with the cases schemathesis derives from the served document
(schema-valid ones and schema-invalid ones), plus requests that carry real images of random sizes,
formats and modes in each body form Azure's clients send (``input_data`` rows as plain base64, with
``base64.encodebytes`` line breaks, as a JSON string, as an object, as a pandas row; ``{"image": ...}``;
the raw file), some asking for explanations or features. For every case:

* no 5xx, and every answer (status code, content type, body) conforms to the document;
* a body with real images is answered 200 with one answer per image;
* the server is still up: a valid request gets its 200 after every case.

Schemathesis' ``positive_data_acceptance`` check is left out: the document can say "a base64
string" but not "the base64 of a decodable image", so a schema-valid random string is rightly a 400
(what the real-image cases check instead is that real images are accepted).

`make test` runs a fixed number of cases per route (derandomised, so a failure reproduces);
``benchmarks/fuzz.py --groups score`` runs the same checks for ``FUZZ_SECONDS`` with fresh cases.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import ServeProcess, image_bytes, tiny_model_folder

from .fuzzing import TRIED, budget

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a test extra")

# Detectors score everything (a random network still returns boxes, so their schema is exercised).
SCORE_EVERYTHING = {"image_object_detection": {"box_score_threshold": 0.0, "box_detections_per_image": 3}}
REQUEST_TIMEOUT_S = 60.0


class FuzzedServer:
    """A running `visionml serve` of a tiny untrained model and the schemathesis schema it serves."""

    def __init__(self, proc: ServeProcess, task: str):
        from schemathesis import GenerationMode

        self.proc, self.task, self.url = proc, task, proc.url
        self.schema = schemathesis.openapi.from_url(self.url + "/openapi.json")
        self.operations = {(op.method.upper(), op.path): op
                           for op in (result.ok() for result in self.schema.get_all_operations())}
        self.score = self.operations["POST", "/score"]
        self.client = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S)
        # (case, None, None): no expectation beyond the document's; a real-image case also says how
        # many answers it gets and with which status.
        self.generated = st.one_of(*[op.as_strategy(mode).map(lambda case: (case, None, None))
                                     for op in self.operations.values()
                                     for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                                     if mode == GenerationMode.POSITIVE or _has_inputs(op)])
        featurizes = any(p.name == "featurize" for p in self.score.iter_parameters())
        self.with_images = _image_case(self.score, featurizes, explains=task.startswith("image_classification"))

    def close(self) -> None:
        self.client.close()


def _has_inputs(op) -> bool:
    """Whether schemathesis can make a schema-invalid case of ``op`` (GET / has nothing to break)."""
    return bool(op.body) or any(True for _ in op.iter_parameters())


@contextlib.contextmanager
def fuzzed_server(folder, task: str = "image_classification", *extra: str):
    """`visionml serve` of a tiny untrained ``task`` model made in ``folder``; stopped on failure too."""
    model = tiny_model_folder(folder / "model", task, **SCORE_EVERYTHING.get(task, {}))
    proc = ServeProcess(model, "--max-body-mb", "8", *extra)
    server = None
    try:
        proc.wait_ready()
        server = FuzzedServer(proc, task)
        yield server
    finally:
        if server is not None:
            server.close()
        proc.stop()


# ----------------------------------------------------------------------------- real images

def _picture(width: int, height: int, fmt: str, mode: str, seed: int) -> bytes:
    from PIL import Image

    picture = Image.open(io.BytesIO(image_bytes(width, height, "PNG", seed)))
    if mode != "RGB":
        picture = picture.convert(mode)
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


pictures = st.builds(_picture, width=st.integers(16, 200), height=st.integers(16, 200),
                     fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP"]),
                     mode=st.sampled_from(["RGB", "L", "RGBA", "P"]), seed=st.integers(0, 3))
flags = st.sampled_from([True, False, "True", "false", 1, 0])
xai_parameters = st.fixed_dictionaries({}, optional={
    "xai_algorithm": st.sampled_from(["integrated_gradients", "guided_backprop", "guided_gradcam"]),
    "n_steps": st.integers(2, 3), "visualizations": flags, "attributions": flags,
    "approximation_method": st.sampled_from(["riemann_right", "riemann_middle", "gausslegendre"])})
FAST_XAI = {"xai_algorithm": "guided_backprop"}  # XRAI, the default, takes seconds per image on 2 cores


@st.composite
def _explain(draw) -> dict:
    """``model_explainability`` (maybe) and ``xai_parameters`` of an item or an image body."""
    if not draw(st.booleans()):
        return {}
    return {"model_explainability": draw(flags), "xai_parameters": {**FAST_XAI, **draw(xai_parameters)}}


@st.composite
def _item(draw, picture: bytes):
    """(one ``input_data.data`` entry holding ``picture`` in a form Azure's clients send, its
    ``model_explainability`` or None)."""
    plain = base64.b64encode(picture).decode()
    form = draw(st.sampled_from(["plain", "encodebytes", "json text", "object", "pandas row"]))
    if form == "plain":
        return plain, None
    if form == "encodebytes":
        return base64.encodebytes(picture).decode(), None
    entry = {"image_base64": plain, **draw(_explain())}
    flag = entry.get("model_explainability")
    if form == "json text":
        return json.dumps(entry), flag
    return (entry if form == "object" else [entry]), flag


@st.composite
def _image_case(draw, operation, featurizes: bool, explains: bool):
    """(a schemathesis case of ``POST /score`` carrying 1-3 real images in a drawn body form, how
    many answers it gets, the status it gets: 200, or 400 for features and explanations at once)."""
    from visionml.predict.decode import parse_flag

    images = draw(st.lists(pictures, min_size=1, max_size=3))
    form = draw(st.sampled_from(["input_data", "image", "raw"]))
    query = {"featurize": draw(flags)} if featurizes and draw(st.integers(0, 4)) == 0 else {}
    if form == "raw":
        kind = draw(st.sampled_from(["image/png", "image/jpeg", "application/octet-stream"]))
        return operation.Case(body=images[0], media_type=kind, query=query), 1, 200
    if form == "image":
        images = images[:1]
        body = {"image": base64.b64encode(images[0]).decode(), **draw(_explain())}
        asked = [body.get("model_explainability")]
    else:
        items = [draw(_item(picture)) for picture in images]
        body = {"input_data": {"columns": ["image"], "data": [entry for entry, _ in items]}}
        asked = [flag for _, flag in items]
        asked = [asked[0] if flag is None else flag for flag in asked]  # the first item's flag is the default
    conflict = (explains and parse_flag(query.get("featurize", False), "featurize")
                and any(parse_flag(flag, "model_explainability") for flag in asked if flag is not None))
    return (operation.Case(body=body, media_type="application/json", query=query), len(images),
            400 if conflict else 200)


# ----------------------------------------------------------------------------- the checks

def check_case(server: FuzzedServer, case, images: int | None = None, status: int | None = None) -> None:
    """Send ``case``: no 5xx, and its answer conforms to the document; a case of real images gets
    ``status`` and, when 200, ``images`` answers; then the server answers a valid request."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    TRIED["score"] += 1
    response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}\n{case.as_curl_command()}"
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    if status is not None:
        assert response.status_code == status, f"{response.text[:2000]}\n{case.as_curl_command()[:3000]}"
        if status == 200:
            answer = response.json()
            assert len(answer) == images if isinstance(answer, list) else images == 1
    alive = server.client.post("/score", content=LIVENESS_IMAGE, headers={"content-type": "image/png"})
    assert alive.status_code == 200, f"after the case above the server answers {alive.status_code}: {alive.text}"
    assert server.proc.proc.poll() is None, server.proc.log()[-3000:]


LIVENESS_IMAGE = image_bytes(64, 48, "PNG", seed=1)


# ----------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory):
    with fuzzed_server(tmp_path_factory.mktemp("schemathesis")) as server:
        yield server


@pytest.mark.slow
def test_every_documented_route_survives_schemathesis_cases(classifier_server):
    """The cases schemathesis makes from /openapi.json, schema-valid and schema-invalid, for every
    route the document lists (/, /ready, /score with its JSON and image bodies and ?featurize)."""
    assert set(classifier_server.operations) == {("GET", "/"), ("GET", "/ready"), ("POST", "/score")}

    @budget(60, deadline_s=2 * REQUEST_TIMEOUT_S)
    @given(case=classifier_server.generated)
    def run(case):
        check_case(classifier_server, *case)

    run()


@pytest.mark.slow
def test_real_images_in_every_body_form_are_answered_as_the_document_says(classifier_server):
    """The success path: real images (PNG, JPEG, WebP, GIF, BMP; RGB, grey, RGBA, palette) in each
    body form, some asking for explanations (``model_explainability`` as a bool, 0/1 or a string)
    or ``?featurize``: each a 200 whose answer conforms to the document."""

    @budget(20, deadline_s=2 * REQUEST_TIMEOUT_S)
    @given(case=classifier_server.with_images)
    def run(case):
        check_case(classifier_server, *case)

    run()


@pytest.mark.slow
def test_a_detector_endpoint_survives_schemathesis_cases(tmp_path):
    """The detector's document (boxes instead of probabilities) against its answers, real images
    included. It lists no ``?featurize``: a detector answers that with a 400 (it gives no features)."""
    with fuzzed_server(tmp_path, "image_object_detection") as server:
        assert [p.name for p in server.score.iter_parameters()] == []

        @budget(20, deadline_s=2 * REQUEST_TIMEOUT_S)
        @given(case=st.one_of(server.generated, server.with_images))
        def run(case):
            check_case(server, *case)

        run()
