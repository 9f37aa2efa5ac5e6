"""visionml's tests. Every folder under tests/ is a package, so pytest imports each test module
and conftest by its dotted name (tests.scoring.conftest, ...) whatever is on sys.path; shared
helpers are imported as ``from tests.support import ...``."""

import pytest

# Plain helper modules (support.py, each package's helpers.py) get pytest's assertion messages too.
pytest.register_assert_rewrite("tests.support", *(f"tests.{name}" for name in (
    "convert", "data", "explain", "export", "metrics", "models", "scoring", "sweep", "train")))
