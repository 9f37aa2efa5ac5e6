"""YOLO txt <-> JSONL through the CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from .helpers import (areas_by_image_abs, assert_areas_close, assert_boxes_close,
                      boxes_by_image_abs, cli, make_image, read_jsonl, validate_ok)

from visionml import geometry
from visionml.convert.yolo import merge_segments_norm


def make_yolo(root, names, files, *, split=None, names_as_dict=False):
    """files: {image name: (width, height, [label lines])}; Ultralytics layout under root."""
    sub = f"/{split}" if split else ""
    for i, (name, (w, h, lines)) in enumerate(files.items()):
        make_image(root / f"images{sub}" / name, w, h, seed=i)
        label = (root / f"labels{sub}" / name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(lines) + "\n")
    names_value = dict(enumerate(names)) if names_as_dict else names
    spec = {"path": str(root), "train": f"images{sub}", "val": f"images{sub}",
            "names": names_value}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def test_yolo_detect_to_jsonl(tmp_path):
    src = make_yolo(tmp_path / "ds", ["cat", "dog"], {
        "a.jpg": (200, 100, ["0 0.5 0.5 0.2 0.4", "1 0.1 0.1 0.2 0.2"]),
        "b.jpg": (64, 64, []),
    }, names_as_dict=True)
    out = tmp_path / "out.jsonl"
    assert cli("convert", src, "--from", "yolo", "--to", "jsonl", "-o", out) == 0
    lines = read_jsonl(out)
    assert len(lines) == 2  # 'val' is the same folder as 'train': each image once
    cat, dog = lines[0]["label"]
    assert (cat["label"], cat["topX"], cat["topY"], cat["bottomX"], cat["bottomY"]) == \
        ("cat", 0.4, 0.3, 0.6, 0.7)
    assert (dog["topX"], dog["bottomX"]) == (0.0, 0.2)
    assert lines[1]["label"] == []
    validate_ok(out)


def test_yolo_problems_name_label_file_and_line(tmp_path, capsys):
    src = make_yolo(tmp_path / "ds", ["cat"], {
        "a.jpg": (100, 100, ["0 0.5 0.5 0.2 0.2", "3 0.5 0.5 0.1 0.1", "0 0.5 0.5 0 0.3",
                             "0 1.5 0.5 0.4 0.4", "0 0.1 0.2 0.3"]),
    })
    out = tmp_path / "out.jsonl"
    assert cli("convert", src, "--from", "yolo", "--to", "jsonl", "-o", out) == 1
    err = capsys.readouterr().err
    label = tmp_path / "ds" / "labels" / "a.txt"
    assert f"{label}:2: class 3 is not in the names (0..0)" in err
    assert f"{label}:3: box" in err and "zero area" in err
    assert f"{label}:4: box" in err and "outside" in err
    assert f"{label}:5: 3 coordinates" in err
    assert not out.exists()
    assert cli("convert", src, "--from", "yolo", "--to", "jsonl", "-o", out, "--skip-invalid") == 0
    assert len(read_jsonl(out)[0]["label"]) == 1


def test_yolo_splits_and_folder_without_yaml(tmp_path):
    root = tmp_path / "ds"
    make_yolo(root, ["a"], {"t.jpg": (50, 50, ["0 0.5 0.5 0.5 0.5"])}, split="train")
    make_yolo(root, ["a"], {"v.jpg": (50, 50, ["0 0.5 0.5 0.2 0.2"])}, split="val")
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("a\n")
    out = tmp_path / "val.jsonl"
    assert cli("convert", root, "--from", "yolo", "--to", "jsonl", "-o", out, "--split", "val") == 0
    assert [os.path.basename(ln["image_url"]) for ln in read_jsonl(out)] == ["v.jpg"]
    both = tmp_path / "both.jsonl"
    assert cli("convert", root, "--from", "yolo", "--to", "jsonl", "-o", both) == 0
    assert len(read_jsonl(both)) == 2


def test_jsonl_yolo_jsonl_round_trip_detection(detection_jsonl, tmp_path):
    out = tmp_path / "yolo"
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "yolo", "-o", out) == 0
    spec = yaml.safe_load((out / "data.yaml").read_text())
    assert spec["names"] == {0: "bird", 1: "cat", 2: "dog"} and spec["train"] == "images/train"
    linked = out / "images" / "train" / "a.jpg"
    assert linked.is_file() and os.path.samefile(linked, detection_jsonl.parent / "images/a.jpg")
    assert (out / "labels" / "train" / "c.txt").read_text() == ""
    back = tmp_path / "back.jsonl"
    assert cli("convert", out, "--from", "yolo", "--to", "jsonl", "-o", back) == 0
    assert_boxes_close(boxes_by_image_abs(read_jsonl(detection_jsonl)),
                       boxes_by_image_abs(read_jsonl(back)))
    validate_ok(back)


def test_jsonl_yolo_jsonl_round_trip_segmentation(segmentation_jsonl, tmp_path):
    out = tmp_path / "yolo"
    assert cli("convert", segmentation_jsonl, "--from", "jsonl", "--to", "yolo", "-o", out) == 0
    back = tmp_path / "back.jsonl"
    assert cli("convert", out / "data.yaml", "--from", "yolo", "--to", "jsonl", "-o", back) == 0
    original, again = read_jsonl(segmentation_jsonl), read_jsonl(back)
    assert_areas_close(areas_by_image_abs(original), areas_by_image_abs(again))
    assert_boxes_close(boxes_by_image_abs(original), boxes_by_image_abs(again))
    # The two-part object is one YOLO line whose polygon fills the same pixels.
    w, h = 150, 100
    stone_before = [o for o in original[0]["label"] if o["label"] == "stone"][0]["polygon"]
    stone_after = [o for o in again[0]["label"] if o["label"] == "stone"][0]["polygon"]
    m0 = geometry.polygons_abs_to_mask(geometry.polygon_norm_to_abs(stone_before, w, h), h, w)
    m1 = geometry.polygons_abs_to_mask(geometry.polygon_norm_to_abs(stone_after, w, h), h, w)
    assert (m0 & m1).sum() / (m0 | m1).sum() > 0.97
    validate_ok(back)


def test_yolo_jsonl_yolo_round_trip(tmp_path):
    lines = ["1 0.31 0.42 0.2 0.3", "0 0.7 0.7 0.123456 0.2"]
    src = make_yolo(tmp_path / "ds", ["x", "y"], {"a.png": (321, 123, lines)})
    mid, out = tmp_path / "mid.jsonl", tmp_path / "yolo2"
    assert cli("convert", src, "--from", "yolo", "--to", "jsonl", "-o", mid) == 0
    assert cli("convert", mid, "--from", "jsonl", "--to", "yolo", "-o", out) == 0
    got = sorted((out / "labels" / "train" / "a.txt").read_text().splitlines())
    want = sorted(lines)
    for g, w in zip(got, want):
        g, w = np.array(g.split(), float), np.array(w.split(), float)
        assert g[0] == w[0]
        assert np.abs((g[1:] - w[1:]) * [321, 123, 321, 123]).max() <= 0.5


def test_yolo_segment_to_detection_uses_polygon_extent(tmp_path):
    src = make_yolo(tmp_path / "ds", ["a"], {"a.jpg": (100, 100, ["0 0.1 0.1 0.5 0.2 0.3 0.6"])})
    out = tmp_path / "o.jsonl"
    assert cli("convert", src, "--from", "yolo", "--to", "jsonl", "-o", out,
               "--task", "image_object_detection") == 0
    (obj,) = read_jsonl(out)[0]["label"]
    assert (obj["topX"], obj["topY"], obj["bottomX"], obj["bottomY"]) == (0.1, 0.1, 0.5, 0.6)


@pytest.mark.parametrize("flip_second", [False, True])
def test_merge_segments_keeps_the_union_area(flip_second):
    a = [0.1, 0.1, 0.3, 0.1, 0.3, 0.3, 0.1, 0.3]
    b = [0.6, 0.6, 0.9, 0.6, 0.9, 0.9]
    if flip_second:
        b = np.asarray(b).reshape(-1, 2)[::-1].reshape(-1).tolist()
    merged = merge_segments_norm([a, b])
    assert geometry.polygon_area_abs([merged]) == pytest.approx(0.04 + 0.045)
