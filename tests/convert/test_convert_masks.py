"""Instance-mask PNGs (Penn-Fudan layout) -> polygon JSONL."""

from __future__ import annotations

import numpy as np
import pytest
from .helpers import cli, make_image, read_jsonl, validate_ok
from PIL import Image

from visionml import geometry


def penn_fudan(root, ids: np.ndarray, mode="P"):
    h, w = ids.shape
    make_image(root / "PNGImages" / "FudanPed00001.png", w, h)
    (root / "PedMasks").mkdir(parents=True)
    Image.fromarray(ids.astype(np.uint8), mode="L").convert(mode).save(
        root / "PedMasks" / "FudanPed00001_mask.png")
    return root


@pytest.fixture
def ids():
    ids = np.zeros((80, 120), dtype=np.uint8)
    ids[10:50, 10:40] = 1
    ids[20:30, 20:30] = 0  # a hole in instance 1
    ids[5:25, 60:80] = 2  # instance 2 in two parts
    ids[50:70, 90:115] = 2
    return ids


def test_masks_to_polygons(tmp_path, ids, capsys):
    src = penn_fudan(tmp_path / "PennFudanPed", ids)
    out = tmp_path / "o.jsonl"
    assert cli("convert", src, "--from", "masks", "--to", "jsonl", "-o", out, "--mask-label",
               "person") == 0
    assert "1 instance(s) had holes, which were filled in" in capsys.readouterr().out
    (line,) = read_jsonl(out)
    one, two = line["label"]
    assert one["label"] == two["label"] == "person"
    assert len(one["polygon"]) == 1 and len(two["polygon"]) == 2
    for inst, obj in ((1, one), (2, two)):
        poly = geometry.polygon_norm_to_abs(obj["polygon"], 120, 80)
        back = geometry.polygons_abs_to_mask(poly, 80, 120)
        want = ids == inst
        if inst == 1:
            want[20:30, 20:30] = True  # the hole comes back filled
        assert (back == want).all()
    validate_ok(out, "image_instance_segmentation")


def test_masks_point_budget_and_detection(tmp_path):
    yy, xx = np.mgrid[:100, :100]
    ids = (((yy - 50) ** 2 + (xx - 50) ** 2) < 40 ** 2).astype(np.uint8)
    src = penn_fudan(tmp_path / "ds", ids, mode="L")
    out = tmp_path / "o.jsonl"
    assert cli("convert", src, "--from", "masks", "--to", "jsonl", "-o", out,
               "--max-polygon-points", "12") == 0
    (obj,) = read_jsonl(out)[0]["label"]
    assert len(obj["polygon"][0]) // 2 <= 12
    area = geometry.polygon_area_abs(geometry.polygon_norm_to_abs(obj["polygon"], 100, 100))
    assert area == pytest.approx(ids.sum(), rel=0.05)
    boxes = tmp_path / "boxes.jsonl"
    assert cli("convert", tmp_path / "ds" / "PedMasks", "--from", "masks", "--to", "jsonl",
               "-o", boxes, "--images", tmp_path / "ds" / "PNGImages",
               "--task", "image_object_detection") == 0
    (box,) = read_jsonl(boxes)[0]["label"]
    # The circle covers columns and rows 11..89: pixel edges 11 and 90.
    assert (box["topX"], box["topY"], box["bottomX"], box["bottomY"]) == (0.11, 0.11, 0.9, 0.9)
    validate_ok(boxes, "image_object_detection")


def test_rgb_mask_is_refused(tmp_path, ids, capsys):
    src = penn_fudan(tmp_path / "ds", ids, mode="RGB")
    assert cli("convert", src, "--from", "masks", "--to", "jsonl", "-o", tmp_path / "o") == 1
    assert "single-channel PNG" in capsys.readouterr().err
