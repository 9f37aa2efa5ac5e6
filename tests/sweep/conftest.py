"""The sweep tests use tests/conftest.py's ``sample_data`` and helpers.py's job settings."""

from __future__ import annotations

import pytest

# Still imported from here by a test written before helpers.py held them; new tests import them
# from .helpers.
from .helpers import FAST, write_job  # noqa: F401


@pytest.fixture(scope="session")
def sweep_data(sample_data):
    """The older name of tests/conftest.py's ``sample_data``."""
    return sample_data
