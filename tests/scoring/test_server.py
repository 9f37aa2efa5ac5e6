"""`visionml serve` as an Azure AutoML client meets it: real uvicorn processes on loopback ports,
requests built the way the schema doc's Python sample builds them."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import LABELS, image_bytes

from .helpers import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def read_image(image_path):
    with open(image_path, "rb") as f:
        return f.read()


def doc_request(sample_image, tmp_path, xai: dict | None = None) -> bytes:
    """The request exactly as the schema doc's sample makes it: base64.encodebytes (with its line
    breaks), json.dumps of the XAI item, json.dump into a request file that the client sends."""
    encoded = base64.encodebytes(read_image(sample_image)).decode("utf-8")
    item = encoded if xai is None else json.dumps({"image_base64": encoded, "model_explainability": True,
                                                   "xai_parameters": xai})
    request_json = {"input_data": {"columns": ["image"], "data": [item]}}
    request_file_name = tmp_path / "sample_request_data.json"
    with open(request_file_name, "w") as request_file:
        json.dump(request_json, request_file)
    return request_file_name.read_bytes()


def score(server, body, headers=None, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/score", content=body, timeout=60,
                      headers={"Content-Type": "application/json", **(headers or {})}, **kwargs)


def check_box(box: dict, segmentation: bool) -> None:
    assert set(box) == ({"box", "label", "score", "polygon"} if segmentation else {"box", "label", "score"})
    assert set(box["box"]) == {"topX", "topY", "bottomX", "bottomY"}
    coords = box["box"]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in coords.values())
    assert coords["topX"] <= coords["bottomX"] and coords["topY"] <= coords["bottomY"]
    assert box["label"] in LABELS
    assert isinstance(box["score"], float) and 0.0 <= box["score"] <= 1.0
    if segmentation:
        assert isinstance(box["polygon"], list)
        for segment in box["polygon"]:
            assert len(segment) >= 6 and len(segment) % 2 == 0
            assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in segment)


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL, DETECTION, SEGMENTATION])
def test_schema_doc_request_gets_the_schema_doc_answer(servers, task, jpeg_file, tmp_path):
    response = score(servers[task], doc_request(jpeg_file, tmp_path), AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    predictions = json.loads(response.text)
    assert isinstance(predictions, list) and len(predictions) == 1
    answer = predictions[0]
    assert isinstance(answer["filename"], str) and answer["filename"]
    if task in (MULTICLASS, MULTILABEL):
        assert set(answer) == {"filename", "probs", "labels", "visualizations", "attributions"}
        assert answer["labels"] == LABELS
        assert len(answer["probs"]) == len(LABELS)
        assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in answer["probs"])
        if task == MULTICLASS:
            assert sum(answer["probs"]) == pytest.approx(1.0, abs=1e-5)
        assert answer["visualizations"] is None and answer["attributions"] is None
    else:
        assert set(answer) == {"filename", "boxes"}
        assert 1 <= len(answer["boxes"]) <= 5  # threshold 0 in the test model: boxes come back
        scores = [b["score"] for b in answer["boxes"]]
        assert scores == sorted(scores, reverse=True)
        for box in answer["boxes"]:
            check_box(box, task == SEGMENTATION)


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_schema_doc_xai_request(servers, task, jpeg_file, tmp_path):
    xai_parameters = {"xai_algorithm": "guided_backprop", "visualizations": True, "attributions": False}
    response = score(servers[task], doc_request(jpeg_file, tmp_path, xai_parameters), AUTH)
    assert response.status_code == 200, response.text
    answer = json.loads(response.text)[0]
    assert answer["labels"] == LABELS and answer["attributions"] is None
    pngs = [answer["visualizations"]] if task == MULTICLASS else answer["visualizations"]
    if task == MULTILABEL:
        assert len(pngs) == sum(p >= 0.5 for p in answer["probs"])
    for png in pngs:
        assert Image.open(io.BytesIO(base64.b64decode(png))).format == "PNG"


def test_xai_on_detection_returns_scores_only(servers, jpeg_file, tmp_path):
    response = score(servers[DETECTION], doc_request(jpeg_file, tmp_path, {"xai_algorithm": "xrai"}))
    assert response.status_code == 200
    assert set(json.loads(response.text)[0]) == {"filename", "boxes"}


def test_unknown_xai_algorithm_is_a_400_naming_the_item(servers, tmp_path, jpeg_file):
    good = base64.b64encode(image_bytes()).decode()
    bad = json.dumps({"image_base64": good, "model_explainability": True, "xai_parameters": {"xai_algorithm": "magic"}})
    body = json.dumps({"input_data": {"columns": ["image"], "data": [good, bad]}})
    response = score(servers[MULTICLASS], body, AUTH)
    assert response.status_code == 400
    assert response.json()["index"] == 1 and "xrai" in response.json()["error"]


def test_several_items_answer_in_order_and_match_single_requests(servers):
    images = [base64.b64encode(image_bytes(seed=s, width=60 + 20 * s)).decode() for s in range(3)]
    batch = score(servers[MULTICLASS], json.dumps({"input_data": {"columns": ["image"], "data": images}}), AUTH)
    assert batch.status_code == 200
    together = [o["probs"] for o in batch.json()]
    alone = [score(servers[MULTICLASS], json.dumps({"input_data": {"columns": ["image"], "data": [i]}}),
                   AUTH).json()[0]["probs"] for i in images]
    assert len({tuple(p) for p in together}) == 3  # three different images, three answers
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5)


def test_health_readiness_and_openapi(servers):
    server = servers[MULTICLASS]
    root = httpx.get(server.url + "/")
    assert root.status_code == 200 and root.text == "Healthy"
    assert httpx.get(server.url + "/ready").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/", "/ready", "/score"} <= set(spec["paths"])
    body_schema = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # Azure's two JSON bodies: the MLflow endpoint's input_data and the v1 script's {"image": ...}
    assert [option["required"] for option in body_schema["anyOf"]] == [["input_data"], ["image"]]


# -- bad input: each gets its status, and the server keeps answering ------------------------------

def _body(data=None, columns=("image",)) -> str:
    return json.dumps({"input_data": {"columns": list(columns), "data": data}})


def _bomb_png(width=30000, height=30000) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb), with valid CRCs."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


BAD_REQUESTS = {
    "malformed JSON": ('{"input_data": {"columns": ["image"], "data": [', None),
    "input_data missing": (json.dumps({"data": ["abc"]}), None),
    "input_data not an object": (json.dumps({"input_data": ["x"]}), None),
    "columns not image": (_body(["x"], columns=("img",)), None),
    "columns missing": (json.dumps({"input_data": {"data": ["x"]}}), None),
    "data not a list": (_body("aGVsbG8="), None),
    "empty list": (_body([]), None),
    "not base64": (_body([base64.b64encode(image_bytes()).decode(), "this is not base64!"]), 1),
    "base64 of text": (_body([base64.b64encode(b"just some text, not an image").decode()]), 0),
    "truncated JPEG": (_body([base64.b64encode(image_bytes()[:400]).decode()]), 0),
    "decompression bomb": (_body([base64.b64encode(_bomb_png()).decode()]), 0),
    "bomb under Pillow's own limit": (_body([base64.b64encode(_bomb_png(10000, 9000)).decode()]), 0),
    "XAI item without image_base64": (_body([json.dumps({"model_explainability": True})]), 0),
    "a number as item": (_body([42]), 0),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_400_with_the_index(servers, case):
    server = servers[MULTICLASS]
    body, index = BAD_REQUESTS[case]
    response = score(server, body, AUTH)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"error", "index"} and error["error"]
    assert error["index"] == index
    assert httpx.get(server.url + "/").text == "Healthy"


def test_api_key_wrong_or_missing_is_401(servers):
    server = servers[MULTICLASS]
    body = _body([base64.b64encode(image_bytes()).decode()])
    assert score(server, body).status_code == 401
    assert score(server, body, {"Authorization": "Bearer nope"}).status_code == 401
    assert score(server, body, {"Authorization": API_KEY}).status_code == 401  # no scheme
    assert score(server, body, AUTH).status_code == 200
    assert httpx.get(server.url + "/ready").status_code == 200  # probes need no key


def _raw_http(port: int, head: bytes, body_parts=()) -> bytes:
    """Send a request by hand (the body may be cut short) and read the whole answer back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_100_mb_body_is_413_before_it_is_read(servers):
    server = servers[MULTICLASS]
    head = (f"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {100 * 2**20}\r\n\r\n").encode()
    answer = _raw_http(server.port, head, [b"{" + b" " * 65535])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"index"' in answer
    assert httpx.get(server.url + "/").status_code == 200


def test_chunked_body_over_the_cap_is_413_while_streaming(servers):
    server = servers[MULTICLASS]
    head = (f"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b" " * 2**20
    frames = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 9  # 9 MB against the 8 MB cap, never finished
    answer = _raw_http(server.port, head, frames)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert httpx.get(server.url + "/").status_code == 200


def test_50_concurrent_requests_all_answered(servers):
    server = servers[MULTICLASS]
    bodies = [_body([base64.b64encode(image_bytes(seed=i)).decode()]) for i in range(50)]
    bodies[7] = _body(["not base64 at all!"])  # one bad request among them fails alone
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda b: client.post(server.url + "/score", content=b, headers=AUTH), bodies))
    statuses = [r.status_code for r in responses]
    assert statuses[7] == 400
    assert statuses[:7] + statuses[8:] == [200] * 49
    assert all(len(r.json()) == 1 for i, r in enumerate(responses) if i != 7)
    assert httpx.get(server.url + "/ready").status_code == 200


def test_one_log_line_per_request(servers):
    server = servers[MULTICLASS]
    before = server.log().count("POST /score")
    score(server, _body([base64.b64encode(image_bytes()).decode()] * 2), AUTH)
    score(server, "{", AUTH)
    deadline = time.monotonic() + 10
    while len(lines := [x for x in server.log().splitlines() if "POST /score" in x][before:]) < 2:
        assert time.monotonic() < deadline, "the log lines did not appear"
        time.sleep(0.05)
    assert len(lines) == 2
    assert "200 items=2 ms=" in lines[0] and "400 items=0 ms=" in lines[1]
