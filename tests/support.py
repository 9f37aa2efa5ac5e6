"""Helpers shared by several test packages (importable as ``support``: pytest puts ``tests/`` on
the path for the packages below it). Fixtures stay in the conftest files; plain functions and
context managers live here so that no test imports a conftest from another folder."""

from __future__ import annotations

import socket
import threading
import time


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
