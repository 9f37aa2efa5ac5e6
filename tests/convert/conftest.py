"""Small synthetic data sets for the converter tests, and the checks every round trip shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from visionml import geometry
from visionml.cli import main


def make_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def validate_ok(path: Path, task: str | None = None) -> None:
    """The converter's promise: whatever it writes, `visionml validate` accepts."""
    argv = ["validate", path] + (["--task", task] if task else [])
    assert cli(*argv) == 0


def boxes_by_image_abs(lines: list[dict]) -> dict[str, list[tuple]]:
    """{image file name: sorted [(label, x0, y0, x1, y1) in pixels]} from JSONL lines."""
    out = {}
    for line in lines:
        w, h = line["image_details"]["width"], line["image_details"]["height"]
        objs = []
        for o in line["label"]:
            if "polygon" in o:
                box = geometry.polygon_extent_norm(o["polygon"])
            else:
                box = (o["topX"], o["topY"], o["bottomX"], o["bottomY"])
            objs.append((o["label"], *geometry.xyxy_norm_to_abs(box, w, h)[0]))
        out[Path(line["image_url"]).name] = sorted(objs)
    return out


def areas_by_image_abs(lines: list[dict]) -> dict[str, list[tuple]]:
    """{image file name: sorted [(label, polygon area in px^2)]}."""
    out = {}
    for line in lines:
        w, h = line["image_details"]["width"], line["image_details"]["height"]
        out[Path(line["image_url"]).name] = sorted(
            (o["label"], geometry.polygon_area_abs(geometry.polygon_norm_to_abs(o["polygon"], w, h)))
            for o in line["label"])
    return out


def assert_boxes_close(a: dict, b: dict, tol_px: float = 0.5) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert len(a[name]) == len(b[name]), name
        for oa, ob in zip(a[name], b[name]):
            assert oa[0] == ob[0]
            assert np.abs(np.subtract(oa[1:], ob[1:])).max() <= tol_px, (name, oa, ob)


def assert_areas_close(a: dict, b: dict, rel: float = 0.01) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert [o[0] for o in a[name]] == [o[0] for o in b[name]]
        for oa, ob in zip(a[name], b[name]):
            assert oa[1] == pytest.approx(ob[1], rel=rel), (name, oa, ob)


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
