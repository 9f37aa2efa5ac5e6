"""Shared test settings: small thread counts so the suite behaves on a 2-core machine."""

import os

import pytest

# Tests must never reach the network for weights or data.
os.environ.setdefault("VISIONML_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)
