"""Model folders for scoring tests, made without training: a small randomly initialised network
from the registry, saved with modelio exactly as `visionml train` saves one."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from support import ThreadServer, free_port, make_untrained_model_folder

LABELS = ["can", "carton", "milk_bottle", "water_bottle"]

# Small and fast on a 2-core CPU. Detectors score everything (threshold 0) so a random network
# still returns boxes for the tests to check; at most 5 per image keeps polygons cheap.
TINY = {
    MULTICLASS: ("resnet18", {"validation_resize_size": 72, "validation_crop_size": 64}),
    MULTILABEL: ("resnet18", {"validation_resize_size": 72, "validation_crop_size": 64}),
    DETECTION: ("fasterrcnn_mobilenet_v3_large_fpn",
                {"min_size": 128, "max_size": 160, "box_score_threshold": 0.0, "box_detections_per_image": 5,
                 "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 20}),
    SEGMENTATION: ("maskrcnn_resnet18_fpn",
                   {"min_size": 96, "max_size": 128, "box_score_threshold": 0.0, "box_detections_per_image": 3,
                    "mask_pixel_score_threshold": 0.3, "max_number_of_polygon_points": 30,
                    "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 20}),
}


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    torch.set_num_threads(2)


def make_model_folder(path, task: str, **hp_overrides):
    name, hp = TINY[task]
    return make_untrained_model_folder(path, task, name, LABELS, {**hp, **hp_overrides})


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """One model folder per task, shared by the whole session."""
    root = tmp_path_factory.mktemp("models")
    return {task: make_model_folder(root / task, task) for task in TINY}


@pytest.fixture(scope="session")
def predictors(model_dirs):
    from visionml.predict import Predictor

    return {task: Predictor.from_folder(d) for task, d in model_dirs.items()}


def image_bytes(width=120, height=90, fmt="JPEG", seed=0) -> bytes:
    """A small picture with some structure (a bright rectangle on noise)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    pixels[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = (230, 200, 40)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture()
def jpeg_file(tmp_path):
    path = tmp_path / "test_image.jpg"
    path.write_bytes(image_bytes())
    return path


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("utf-8")


# -- servers ------------------------------------------------------------------------------------

API_KEY = "test-key-0123456789"


class ServeProcess:
    """`visionml serve` in its own process on a free loopback port; always stopped by the fixture."""

    def __init__(self, model_dir, *extra, env=None):
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = f"{model_dir}.serve-{self.port}.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "visionml", "serve", "--model", str(model_dir), "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})

    def wait_ready(self, timeout=120.0):
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"visionml serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"visionml serve not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as fp:
            return fp.read()

    def stop(self):
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def servers(model_dirs, predictors):
    """A server per task. Multi-class is `visionml serve` in its own process (API key from
    VISIONML_API_KEY, 8 MB body cap); the others are uvicorn in a thread of this process, which
    starts in a fraction of the time on a busy 2-core machine. All are stopped whatever happens."""
    from visionml.serve import create_app

    proc = ServeProcess(model_dirs[MULTICLASS], "--max-body-mb", "8", env={"VISIONML_API_KEY": API_KEY})
    threads = {}
    try:
        for task in (MULTILABEL, DETECTION, SEGMENTATION):
            threads[task] = ThreadServer(create_app(predictors[task])).__enter__()
        yield {MULTICLASS: proc.wait_ready(), **threads}
    finally:
        proc.stop()
        for server in threads.values():
            server.__exit__(None, None, None)
