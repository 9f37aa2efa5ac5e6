"""Fixtures for the data-layer tests (helpers to build files are in jsonl_testdata.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from .jsonl_testdata import write_image


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Downloads go to a per-test cache, and a datastore map in the caller's shell cannot leak in."""
    monkeypatch.setenv("VISIONML_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("VISIONML_DATASTORES", raising=False)


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """Three small JPEGs in tmp_path/images (a.jpg, b.jpg, c.jpg)."""
    for name in ("a", "b", "c"):
        write_image(tmp_path / "images" / f"{name}.jpg")
    return tmp_path / "images"
