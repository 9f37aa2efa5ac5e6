"""`visionml sample-data --small-objects`: large images with objects of 8-24 pixels (what tiling is for)."""

from __future__ import annotations

import numpy as np
import orjson
from PIL import Image

from visionml.cli import main


def _lines(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_small_objects_are_8_to_24_pixels_on_960x720_images(tmp_path, capsys):
    assert main(["sample-data", "--task", "image_object_detection", "--small-objects", "--n", "4",
                 "-o", str(tmp_path)]) == 0
    assert "960x720" in capsys.readouterr().out
    lines = _lines(tmp_path / "train.jsonl") + _lines(tmp_path / "val.jsonl")
    assert len(lines) == 4
    for line in lines:
        with Image.open(tmp_path / line["image_url"]) as image:
            assert image.size == (960, 720)
        assert 6 <= len(line["label"]) <= 16
        for obj in line["label"]:
            w = (obj["bottomX"] - obj["topX"]) * 960
            h = (obj["bottomY"] - obj["topY"]) * 720
            assert 8 - 0.01 <= max(w, h) <= 24 + 0.01


def test_small_objects_for_segmentation_have_polygons_and_the_default_output_is_unchanged(tmp_path):
    from visionml.data.sample import make_sample_data

    paths = make_sample_data("image_instance_segmentation", tmp_path / "small", n=3, seed=1, small_objects=True)
    for line in _lines(paths["train"]):
        for obj in line["label"]:
            pts = np.array(obj["polygon"][0]).reshape(-1, 2) * [960, 720]
            assert 8 - 0.01 <= (pts.max(axis=0) - pts.min(axis=0)).max() <= 24 + 0.01
    # Without the option, sample data is what it was (the same objects per image, 224x168).
    plain = _lines(make_sample_data("image_object_detection", tmp_path / "plain", n=5)["train"])
    assert all(1 <= len(line["label"]) <= 3 and line["image_details"]["width"] == 224 for line in plain)


def test_small_objects_are_refused_for_classification(tmp_path, capsys):
    assert main(["sample-data", "--task", "multiclass", "--small-objects", "-o", str(tmp_path)]) == 2
    assert "--small-objects" in capsys.readouterr().err
