"""The training tests use tests/conftest.py's ``sample_data`` fixture and tests/support.py's
``train_args`` and FAST_TRAINING."""

from __future__ import annotations

# Still imported from here by a test written before tests/support.py held it; new tests import
# it from tests.support.
from tests.support import train_args  # noqa: F401
