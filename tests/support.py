"""Helpers shared by the test packages, imported as ``from tests.support import ...``: ``tests`` and
every folder below it are packages, so nothing depends on which folder pytest puts on sys.path.
Fixtures live in conftest files (those several packages use in tests/conftest.py); plain
functions, tables and context managers live here or in a package's helpers.py, so that no test
imports a conftest."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time

# The sample data's classes, sorted as training sorts them: a tiny model folder with these labels
# can be evaluated on `visionml sample-data` output.
LABELS = ["circle", "square", "star", "triangle"]

# The box head runs once per proposal: torchvision's 1000 are far more work than a test needs.
FEW_PROPOSALS = {"rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 20}
# Per task, a registry network and the settings it runs fast at on a 2-core CPU. Tests add what
# they need on top: `model_folder(task, box_score_threshold=0.0)` (tests/conftest.py).
TINY = {
    "image_classification": ("resnet18", {"validation_resize_size": 72, "validation_crop_size": 64}),
    "image_classification_multilabel": ("resnet18", {"validation_resize_size": 72, "validation_crop_size": 64}),
    "image_object_detection": ("fasterrcnn_mobilenet_v3_large_fpn",
                               {"min_size": 128, "max_size": 160, **FEW_PROPOSALS}),
    "image_instance_segmentation": ("maskrcnn_resnet18_fpn",
                                    {"min_size": 96, "max_size": 128, "max_number_of_polygon_points": 30,
                                     **FEW_PROPOSALS}),
}

# Training at sample-data's smallest sizes, shrunk further inside the models: one fp32 epoch of
# any task takes seconds on 2 cores (`visionml train --set` spelling).
FAST_TRAINING = {
    "image_classification": ["training_crop_size=64", "validation_resize_size=64", "validation_crop_size=64",
                             "training_batch_size=4"],
    "image_classification_multilabel": ["training_crop_size=64", "validation_resize_size=64",
                                        "validation_crop_size=64", "training_batch_size=4"],
    "image_object_detection": ["min_size=64", "max_size=96", "training_batch_size=4"],
    "image_instance_segmentation": ["min_size=64", "max_size=96", "training_batch_size=4"],
}


def task_name(task: str) -> str:
    """The canonical (Azure) name of a task given by name or alias."""
    from visionml.tasks import get_task

    return get_task(task).name


def fast_settings(task: str) -> dict[str, str]:
    """FAST_TRAINING[task] as {key: value} (TrainOptions.overrides, job YAML)."""
    return dict(item.split("=", 1) for item in FAST_TRAINING[task_name(task)])


def train_args(task: str, data: dict, output, *extra: str) -> list[str]:
    """A `visionml train` command line: one fp32 epoch from scratch with the cpu preset, tiny sizes."""
    sets = [item for s in ["number_of_epochs=1", *FAST_TRAINING[task_name(task)]] for item in ("--set", s)]
    return ["train", "--task", task, "--training-data", str(data["train"]), "--validation-data", str(data["val"]),
            "--output", str(output), "--no-pretrained", "--preset", "cpu", "--seed", "0", "--precision", "fp32",
            *sets, *extra]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_bytes(width=120, height=90, fmt="JPEG", seed=0) -> bytes:
    """A small picture with some structure: bright rectangles on noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    pixels[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = (230, 200, 40)
    pixels[height // 8: height // 3, width // 8: width // 4] = (40, 90, 220)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def make_untrained_model_folder(path, task: str, model_name: str, labels: list[str], hp: dict | None = None,
                                adjust=None):
    """A model folder saved exactly as `visionml train` saves one, holding a randomly initialised
    registry network (seed 0): what scoring, export, explain and evaluate tests need without
    training. ``adjust(model)`` may change the weights before they are saved."""
    import torch

    from visionml.config import resolve_hyperparameters
    from visionml.modelio import make_manifest, save_model_folder
    from visionml.models.registry import build_model

    hp = resolve_hyperparameters(task, {"model_name": model_name, **(hp or {})})
    torch.manual_seed(0)
    model = build_model(model_name, task, len(labels), pretrained=False, hp=hp)
    if adjust is not None:
        adjust(model)
    save_model_folder(path, model, make_manifest(task, model_name, labels, hp))
    return path


def tiny_model_folder(path, task: str, model_name: str | None = None, labels=LABELS, adjust=None, **hp):
    """make_untrained_model_folder with TINY's network and settings for ``task`` and ``hp`` on top,
    or, given a ``model_name``, that network with the caller's ``hp`` only."""
    task = task_name(task)
    default_name, settings = TINY[task]
    base = settings if model_name is None else {}
    return make_untrained_model_folder(path, task, model_name or default_name, list(labels), {**base, **hp},
                                       adjust=adjust)


def stop_process(proc) -> None:
    """Terminate ``proc`` (a Popen) if it still runs; kill it when it does not stop within 15 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def loopback_http_server(handler):
    """A ``http.server`` with ``handler`` (a BaseHTTPRequestHandler class or factory) on a free
    loopback port, in a thread; yields its base URL and stops it on failure too."""
    import http.server

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def calibrate_batch_norm(model, images) -> None:
    """Set the BatchNorm statistics of the backbone (and of SSD's head) from ``images`` (an
    untrained network's are 0 and 1, which shrinks its activations layer by layer until every
    image looks the same). ``images``: [3, H, W] float tensors in [0, 1]."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch
    model.eval()
    batch = model.transform(images)[0].tensors
    model.train()
    with torch.no_grad():
        features = model.backbone(batch)
        if hasattr(model, "head"):  # one-stage detectors: the head sees every pyramid level
            model.head(list(features.values()))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


class ThreadServer:
    """uvicorn serving an app in a thread of the test process on a free loopback port; use it as
    a context manager so it stops on failure too."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)


class ServeProcess:
    """`visionml serve` in its own process on a free loopback port, its output in a log file beside
    the model folder. Stop it in a ``finally`` (or a fixture) so it stops on failure too."""

    def __init__(self, model_dir, *extra, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = f"{model_dir}.serve-{self.port}.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "visionml", "serve", "--model", str(model_dir), "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})

    def wait_ready(self, timeout=120.0):
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
        stop_process(self.proc)
        self._log.close()
