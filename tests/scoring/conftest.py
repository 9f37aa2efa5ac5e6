"""Model folders, predictors and servers for the scoring tests: tests/conftest.py's tiny untrained
networks, saved as `visionml train` saves them."""

from __future__ import annotations

import contextlib

import pytest

from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import ServeProcess, ThreadServer, image_bytes

from .helpers import API_KEY, SCORE_EVERYTHING


@pytest.fixture(scope="session")
def model_dirs(model_folder):
    """One model folder per task, shared by the whole session."""
    return {task: model_folder(task, **SCORE_EVERYTHING.get(task, {}))
            for task in (MULTICLASS, MULTILABEL, DETECTION, SEGMENTATION)}


@pytest.fixture(scope="session")
def predictors(model_dirs):
    from visionml.predict import Predictor

    return {task: Predictor.from_folder(d) for task, d in model_dirs.items()}


@pytest.fixture()
def jpeg_file(tmp_path):
    path = tmp_path / "test_image.jpg"
    path.write_bytes(image_bytes())
    return path


@pytest.fixture(scope="session")
def servers(model_dirs, predictors):
    """A server per task. Multi-class is `visionml serve` in its own process (API key from
    VISIONML_API_KEY, 8 MB body cap); the others are uvicorn in a thread of this process, which
    starts in a fraction of the time on a busy 2-core machine. All are stopped whatever happens."""
    from visionml.serve import create_app

    proc = ServeProcess(model_dirs[MULTICLASS], "--max-body-mb", "8", env={"VISIONML_API_KEY": API_KEY})
    try:
        with contextlib.ExitStack() as stack:
            threads = {task: stack.enter_context(ThreadServer(create_app(predictors[task])))
                       for task in (MULTILABEL, DETECTION, SEGMENTATION)}
            yield {MULTICLASS: proc.wait_ready(), **threads}
    finally:
        proc.stop()
