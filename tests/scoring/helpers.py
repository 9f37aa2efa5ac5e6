"""Settings the scoring tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from visionml.tasks import DETECTION, SEGMENTATION

# Detectors score everything (threshold 0), so a random network still returns boxes for the tests
# to check; a few per image keeps polygons cheap.
SCORE_EVERYTHING = {
    DETECTION: {"box_score_threshold": 0.0, "box_detections_per_image": 5},
    SEGMENTATION: {"box_score_threshold": 0.0, "box_detections_per_image": 3, "mask_pixel_score_threshold": 0.3},
}

API_KEY = "test-key-0123456789"
