"""`visionml serve --workers N`: N model processes on one port, each answering as the single-process
server does; stopping the server stops them all (issue 21 item 4)."""

from __future__ import annotations

import base64
import os
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from visionml.predict import Predictor
from visionml.tasks import MULTICLASS

from tests.support import ServeProcess, image_bytes

from .helpers import API_KEY


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_answer_as_one_process_and_stop_together(model_dirs):
    images = [image_bytes(120, 90, seed=seed) for seed in range(6)]
    expected = Predictor.from_folder(model_dirs[MULTICLASS]).predict(images)
    server = ServeProcess(model_dirs[MULTICLASS], "--workers", "2", "--threads", "1",
                          env={"VISIONML_API_KEY": API_KEY})
    pids = []
    try:
        server.wait_ready(timeout=240)
        headers = {"Authorization": f"Bearer {API_KEY}"}

        def score(data: bytes):
            body = {"input_data": {"columns": ["image"], "data": [base64.b64encode(data).decode()]}}
            return httpx.post(server.url + "/score", json=body, headers=headers, timeout=120)

        assert httpx.post(server.url + "/score", json={}, timeout=60).status_code == 401  # the key reached them
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(score, images * 2))
        assert [r.status_code for r in responses] == [200] * len(responses)
        for response, want in zip(responses, expected * 2):
            assert response.json()[0]["probs"] == pytest.approx(want["probs"], abs=1e-5)
        pids = [int(p) for p in re.findall(r"Started server process \[(\d+)\]", server.log())]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    finally:
        server.stop()
    assert not any(_alive(pid) for pid in pids)
