"""Server behaviour that needs control over the model: readiness while loading, a full queue,
micro-batching of concurrent requests. uvicorn serves create_app() in a thread of the test."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from visionml.serve import MicroBatcher, create_app
from visionml.tasks import MULTICLASS

from tests.support import ThreadServer, image_bytes

BODY = json.dumps({"input_data": {"columns": ["image"], "data": [base64.b64encode(image_bytes()).decode()]}})


class SlowPredictor:
    """The real predictor, with each model call held for ``delay`` seconds and batch sizes recorded."""

    def __init__(self, predictor, delay: float):
        self.inner, self.delay, self.batches = predictor, delay, []

    def raw_predict(self, images, batch_size=None):
        self.batches.append(len(images))
        time.sleep(self.delay)
        return self.inner.raw_predict(images, batch_size)

    def __getattr__(self, name):  # task, labels, settings, size_problem ...: the real predictor's
        return getattr(self.inner, name)


def test_ready_is_503_until_the_loader_returns(predictors):
    release = threading.Event()

    def loader():
        release.wait(30)
        return predictors[MULTICLASS]

    with ThreadServer(create_app(loader=loader)) as server:
        assert httpx.get(server.url + "/").text == "Healthy"
        assert httpx.get(server.url + "/ready").status_code == 503
        early = httpx.post(server.url + "/score", content=BODY)
        assert early.status_code == 503 and "loading" in early.json()["error"]
        release.set()
        deadline = time.monotonic() + 10
        while httpx.get(server.url + "/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.post(server.url + "/score", content=BODY).status_code == 200


def test_full_queue_is_503_and_the_server_recovers(predictors):
    slow = SlowPredictor(predictors[MULTICLASS], delay=1.0)
    with ThreadServer(create_app(slow, max_queue=1, max_batch=1)) as server, httpx.Client(timeout=60) as client:
        with ThreadPoolExecutor(6) as pool:
            statuses = sorted(r.status_code for r in pool.map(
                lambda _: client.post(server.url + "/score", content=BODY), range(6)))
        # at most one running and one queued: the rest are refused at once, not left waiting
        assert set(statuses) == {200, 503} and statuses.count(503) >= 4, statuses
        assert client.post(server.url + "/score", content=BODY).status_code == 200


def test_concurrent_requests_share_a_batch(predictors):
    slow = SlowPredictor(predictors[MULTICLASS], delay=0.3)
    with ThreadServer(create_app(slow, max_batch=16)) as server, httpx.Client(timeout=60) as client:
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda _: client.post(server.url + "/score", content=BODY), range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    assert sum(slow.batches) == 12
    assert max(slow.batches) > 1  # requests that waited while the model ran went in together


def test_a_failing_model_answers_500_and_the_worker_lives(predictors, caplog):
    """The client learns which item failed; the exception's own text (which may hold tensors, paths
    or reprs) goes to the server's log, not to the client."""
    class Flaky(SlowPredictor):
        def raw_predict(self, images, batch_size=None):
            self.batches.append(len(images))
            if len(self.batches) == 1:
                raise RuntimeError("out of memory")
            return self.inner.raw_predict(images, batch_size)

    with ThreadServer(create_app(Flaky(predictors[MULTICLASS], 0))) as server:
        first = httpx.post(server.url + "/score", content=BODY)
        assert first.status_code == 500, first.text
        assert first.json() == {"error": "the model failed on this image (RuntimeError); the server's log has "
                                         "the details", "index": 0}
        assert "out of memory" in caplog.text
        assert httpx.post(server.url + "/score", content=BODY).status_code == 200


def test_batcher_stops_cleanly(predictors):
    batcher = MicroBatcher(predictors[MULTICLASS])
    batcher.start()
    batcher.stop()
    assert not batcher._thread.is_alive()
