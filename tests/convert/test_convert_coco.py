"""COCO JSON <-> JSONL through the CLI, as a user runs it."""

from __future__ import annotations

import numpy as np
import orjson
from .helpers import (areas_by_image_abs, assert_areas_close, assert_boxes_close,
                      boxes_by_image_abs, cli, make_image, read_jsonl, validate_ok)
from pycocotools import mask as mask_utils

from visionml import geometry


def write_coco(path, images, annotations, categories):
    path.write_bytes(orjson.dumps({"images": images, "annotations": annotations,
                                   "categories": categories}))
    return path


def test_coco_boxes_to_jsonl(tmp_path):
    make_image(tmp_path / "images" / "x.jpg", 200, 100)
    make_image(tmp_path / "images" / "empty.jpg", 50, 40)
    src = write_coco(tmp_path / "instances.json",
                     [{"id": 7, "file_name": "x.jpg", "width": 200, "height": 100},
                      {"id": 8, "file_name": "empty.jpg", "width": 50, "height": 40}],
                     [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [20, 10, 50, 40],
                       "iscrowd": 0},
                      {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0, 0, 200, 100],
                       "iscrowd": 1}],
                     [{"id": 3, "name": "car"}, {"id": 5, "name": "crowd"}])
    out = tmp_path / "out" / "data.jsonl"
    assert cli("convert", src, "--from", "coco", "--to", "jsonl", "-o", out) == 0
    lines = read_jsonl(out)
    assert [ln["image_url"] for ln in lines] == [str(tmp_path / "images/x.jpg"),
                                                  str(tmp_path / "images/empty.jpg")]
    first = lines[0]["label"]
    assert first[0] == {"label": "car", "topX": 0.1, "topY": 0.1, "bottomX": 0.35, "bottomY": 0.5,
                        "isCrowd": 0}
    assert first[1]["isCrowd"] == 1
    assert lines[1]["label"] == []  # images without annotations are kept
    assert lines[0]["image_details"] == {"format": "jpg", "width": 200, "height": 100}
    validate_ok(out)


def test_output_paths_are_relative_when_images_are_below_the_output(tmp_path):
    make_image(tmp_path / "images" / "x.jpg", 20, 20)
    src = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": "x.jpg", "width": 20,
                                            "height": 20}], [], [{"id": 1, "name": "a"}])
    out = tmp_path / "data.jsonl"
    assert cli("convert", src, "--from", "coco", "--to", "jsonl", "-o", out,
               "--task", "image_object_detection") == 0
    assert read_jsonl(out)[0]["image_url"] == "images/x.jpg"


def test_coco_problems_are_all_reported_and_nothing_written(tmp_path, capsys):
    make_image(tmp_path / "x.jpg", 100, 100)
    src = write_coco(tmp_path / "c.json",
                     [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 100},
                      {"id": 2, "file_name": "gone.jpg", "width": 10, "height": 10}],
                     [{"id": 11, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},
                      {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 7]},
                      {"id": 13, "image_id": 1, "category_id": 1, "bbox": [90, 90, 30, 5]},
                      {"id": 14, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
                     [{"id": 1, "name": "a"}])
    out = tmp_path / "o.jsonl"
    assert cli("convert", src, "--from", "coco", "--to", "jsonl", "-o", out) == 1
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    assert "annotation id 11" in err and "category_id 9 is not in 'categories'" in err
    assert "annotation id 12" in err and "zero area" in err
    assert "annotation id 13" in err and "outside the 100x100 image" in err
    assert "gone.jpg" in err and "not found" in err
    assert not out.exists()

    assert cli("convert", src, "--from", "coco", "--to", "jsonl", "-o", out,
               "--skip-invalid") == 0
    (line,) = read_jsonl(out)
    assert [o["topX"] for o in line["label"]] == [0.1]
    validate_ok(out)


def square_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    return m


def test_coco_rle_compressed_and_uncompressed_become_polygons(tmp_path):
    h, w = 60, 80
    make_image(tmp_path / "images" / "m.png", w, h)
    m1 = square_mask(h, w, 10, 30, 10, 40)
    m2 = square_mask(h, w, 35, 55, 50, 75)
    compressed = mask_utils.encode(m1)
    compressed["counts"] = compressed["counts"].decode()
    # Uncompressed RLE: column-major run lengths starting with a run of zeros.
    flat = m2.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    uncompressed = {"size": [h, w], "counts": runs}
    src = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": "m.png", "width": w,
                                            "height": h}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": compressed,
                       "bbox": [10, 10, 30, 20], "iscrowd": 1},
                      {"id": 2, "image_id": 1, "category_id": 1, "segmentation": uncompressed,
                       "bbox": [50, 35, 25, 20], "iscrowd": 0}],
                     [{"id": 1, "name": "blob"}])
    out = tmp_path / "o.jsonl"
    assert cli("convert", src, "--from", "coco", "--to", "jsonl", "-o", out) == 0
    (line,) = read_jsonl(out)
    polygons = [geometry.polygon_norm_to_abs(o["polygon"], w, h) for o in line["label"]]
    for mask, poly in zip((m1, m2), polygons):
        back = geometry.polygons_abs_to_mask(poly, h, w)
        assert (back == mask.astype(bool)).mean() == 1.0  # a block traces back to itself
    assert line["label"][0]["isCrowd"] == 1
    validate_ok(out, "image_instance_segmentation")


def test_jsonl_coco_jsonl_round_trip_detection(detection_jsonl, tmp_path):
    coco = tmp_path / "rt" / "coco.json"
    back = tmp_path / "rt" / "back.jsonl"
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "coco", "-o", coco) == 0
    doc = orjson.loads(coco.read_bytes())
    assert [c["name"] for c in doc["categories"]] == ["bird", "cat", "dog"]
    assert cli("convert", coco, "--from", "coco", "--to", "jsonl", "-o", back,
               "--images", detection_jsonl.parent) == 0
    assert_boxes_close(boxes_by_image_abs(read_jsonl(detection_jsonl)),
                       boxes_by_image_abs(read_jsonl(back)))
    validate_ok(back)


def test_jsonl_coco_jsonl_round_trip_segmentation(segmentation_jsonl, tmp_path):
    coco = tmp_path / "coco.json"
    back = tmp_path / "back.jsonl"
    assert cli("convert", segmentation_jsonl, "--from", "jsonl", "--to", "coco", "-o", coco) == 0
    assert cli("convert", coco, "--from", "coco", "--to", "jsonl", "-o", back) == 0
    original, again = read_jsonl(segmentation_jsonl), read_jsonl(back)
    assert_areas_close(areas_by_image_abs(original), areas_by_image_abs(again))
    assert_boxes_close(boxes_by_image_abs(original), boxes_by_image_abs(again))
    stone = [o for o in again[0]["label"] if o["label"] == "stone"][0]
    assert len(stone["polygon"]) == 2  # the two parts stay two segments of one object


def test_coco_jsonl_coco_round_trip(tmp_path):
    make_image(tmp_path / "images" / "x.jpg", 333, 211)
    anns = [{"id": 1, "image_id": 4, "category_id": 2, "bbox": [10.25, 20.5, 100.75, 50.125],
             "iscrowd": 0, "area": 1.0, "segmentation": []},
            {"id": 2, "image_id": 4, "category_id": 1, "bbox": [0.5, 0.5, 332.5, 210.5],
             "iscrowd": 0, "area": 1.0, "segmentation": []}]
    src = write_coco(tmp_path / "c.json", [{"id": 4, "file_name": "x.jpg", "width": 333,
                                            "height": 211}], anns,
                     [{"id": 1, "name": "b"}, {"id": 2, "name": "a"}])
    mid, back = tmp_path / "mid.jsonl", tmp_path / "back.json"
    assert cli("convert", src, "--from", "coco", "--to", "jsonl", "-o", mid) == 0
    assert cli("convert", mid, "--from", "jsonl", "--to", "coco", "-o", back) == 0
    doc = orjson.loads(back.read_bytes())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    got = sorted((names[a["category_id"]], *a["bbox"]) for a in doc["annotations"])
    want = sorted(({1: "b", 2: "a"}[a["category_id"]], *a["bbox"]) for a in anns)
    for g, w in zip(got, want):
        assert g[0] == w[0] and np.abs(np.subtract(g[1:], w[1:])).max() <= 0.5
    assert doc["images"][0]["file_name"] == "images/x.jpg"
    # ... and the file it wrote reads back, though images/ beside it is not where names start.
    again = tmp_path / "again.jsonl"
    assert cli("convert", back, "--from", "coco", "--to", "jsonl", "-o", again) == 0
    assert_boxes_close(boxes_by_image_abs(read_jsonl(mid)), boxes_by_image_abs(read_jsonl(again)))
