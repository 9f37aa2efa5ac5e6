"""Settings and fixtures every test package shares: no network, torch's thread count for a 2-core
machine, and the tiny data sets and model folders that several packages use (made once per
session, into tmp_path_factory; shared, so a test that changes one copies it first)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support import LABELS, task_name, tiny_model_folder

# Tests must never reach the network for weights or data.
os.environ.setdefault("VISIONML_OFFLINE", "1")
# A shell starts a background job (`make test &`, nohup, CI runners without a terminal) with SIGINT
# ignored, and every process the tests start inherits that: the Ctrl-C tests (a sweep, predict,
# convert, evaluate, export) would then send a signal their command never sees, and hang or pass
# without testing anything. The test process takes Ctrl-C back, so its children get it too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Under pytest-xdist each worker already takes a core: the processes tests start (CLI runs, servers,
# sweep workers) get one thread too, instead of each starting one per core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """Two intra-op threads at most; one per worker under pytest-xdist (`make test` runs two
    workers), whose processes already take both cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, before))
    yield
    torch.set_num_threads(before)


# Under pytest-xdist with --dist loadgroup (`make test`): a file's tests run on one worker, so its
# module fixtures are made once; a package listed here runs on one worker as a whole, because its
# files share session fixtures that take long to make (export: four models exported to ONNX).
ONE_WORKER_PACKAGES = {"export"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path = item.nodeid.split("::")[0]
            parts = path.split("/")
            group = parts[1] if len(parts) > 2 and parts[1] in ONE_WORKER_PACKAGES else path
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """``sample_data(task, n=10, seed=0, size=(160, 120))`` -> {"train", "val"} JSONL paths of
    `visionml sample-data` images (n=10: 8 train, 2 val), made once per session per arguments;
    ``task`` may be an alias. sample-data's smallest images: one epoch of any task at
    support.FAST_TRAINING's sizes takes seconds."""
    from visionml.data.sample import make_sample_data

    made = {}

    def get(task: str, n: int = 10, seed: int = 0, size: tuple[int, int] = (160, 120)) -> dict:
        key = (task_name(task), n, seed, tuple(size))
        if key not in made:
            made[key] = make_sample_data(key[0], tmp_path_factory.mktemp(key[0]), n=n, seed=seed, size=size)
        return made[key]

    return get


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory):
    """``model_folder(task, model_name=None, labels=LABELS, adjust=None, **hp)`` -> a model folder
    saved as training saves one, holding an untrained registry network at support.TINY's sizes
    (``hp`` on top): made once per session for each distinct set of arguments."""
    made = {}

    def get(task: str, model_name: str | None = None, labels=LABELS, adjust=None, **hp):
        key = (task_name(task), model_name, tuple(labels), adjust, tuple(sorted(hp.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{key[1] or key[0]}") / "model"
            made[key] = tiny_model_folder(folder, key[0], model_name, labels, adjust, **hp)
        return made[key]

    return get
