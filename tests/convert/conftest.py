"""Small synthetic data sets for the converter tests (helpers.py builds them)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from .helpers import make_image


@pytest.fixture
def detection_jsonl(tmp_path) -> Path:
    """Three images of different sizes; boxes at awkward sub-pixel positions, one empty image."""
    data = tmp_path / "det"
    lines = []
    specs = [
        ("a.jpg", 160, 120, [("cat", 10.3, 5.7, 80.25, 60.1), ("dog", 0, 0, 160, 120)]),
        ("b.png", 97, 131, [("dog", 3, 4, 50.5, 77.75), ("bird", 90, 120, 97, 131)]),
        ("c.jpg", 64, 64, []),
    ]
    for i, (name, w, h, objs) in enumerate(specs):
        make_image(data / "images" / name, w, h, seed=i)
        label = [{"label": n, "topX": x0 / w, "topY": y0 / h, "bottomX": x1 / w, "bottomY": y1 / h,
                  "isCrowd": 0} for n, x0, y0, x1, y1 in objs]
        lines.append({"image_url": f"images/{name}", "image_details": {"width": w, "height": h},
                      "label": label})
    path = data / "train.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


@pytest.fixture
def segmentation_jsonl(tmp_path) -> Path:
    """Polygons, one object with two parts (segments) and one concave."""
    data = tmp_path / "seg"
    w, h = 150, 100
    specs = {
        "p.jpg": [("leaf", [[10, 10, 60, 12, 55, 70, 12, 65]]),
                  ("stone", [[80, 20, 100, 20, 100, 40, 80, 40], [110, 60, 140, 60, 125, 90]])],
        "q.jpg": [("leaf", [[20, 20, 120, 20, 120, 80, 70, 40, 20, 80]])],
    }
    lines = []
    for i, (name, objs) in enumerate(specs.items()):
        make_image(data / name, w, h, seed=i)
        label = [{"label": n, "isCrowd": 0,
                  "polygon": [[v / (w if k % 2 == 0 else h) for k, v in enumerate(seg)]
                              for seg in segs]} for n, segs in objs]
        lines.append({"image_url": name, "image_details": {"width": w, "height": h},
                      "label": label})
    path = data / "seg.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path
