"""Building small images and JSONL files for the converter tests, and the checks every round trip
shares (fixtures are in conftest.py)."""

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
