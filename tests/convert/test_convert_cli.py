"""What every conversion shares: never clobbering OUT, usage errors, the object checks."""

from __future__ import annotations

import pytest
from .helpers import cli, make_image, read_jsonl

from visionml.convert.common import Problems, box_object_abs, image_url_for, polygon_object_abs


def test_existing_output_needs_force(detection_jsonl, tmp_path, capsys):
    out = tmp_path / "c.json"
    out.write_text("precious")
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "coco", "-o", out) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "precious"
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "coco", "-o", out,
               "--force") == 0
    assert out.read_text().startswith("{")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_existing_yolo_folder_is_replaced_only_with_force(detection_jsonl, tmp_path):
    out = tmp_path / "y"
    (out / "old").mkdir(parents=True)
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "yolo", "-o", out) == 2
    assert (out / "old").is_dir()
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "yolo", "-o", out,
               "--force") == 0
    assert not (out / "old").exists() and (out / "data.yaml").is_file()


def test_classification_cannot_become_coco(tmp_path, capsys):
    make_image(tmp_path / "t" / "a" / "1.jpg", 8, 8)
    assert cli("convert", tmp_path / "t", "--from", "imagefolder", "--to", "coco", "-o",
               tmp_path / "c.json") == 2
    assert "cannot be written as COCO" in capsys.readouterr().err


def test_missing_source_is_an_input_error(tmp_path, capsys):
    assert cli("convert", tmp_path / "nope.json", "--from", "coco", "--to", "jsonl", "-o",
               tmp_path / "o.jsonl") == 1
    assert "not found" in capsys.readouterr().err


def test_jsonl_input_errors_come_from_the_reader(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image_url": "x.jpg", "label": [{"label": "a", "topX": 0.5, "topY": 0.1, '
                   '"bottomX": 0.2, "bottomY": 0.3}]}\n')
    assert cli("convert", bad, "--from", "jsonl", "--to", "coco", "-o", tmp_path / "c.json") == 1
    assert f"{bad}:1:" in capsys.readouterr().err


@pytest.mark.parametrize("box, reason", [
    ((10, 10, 10, 40), "zero area"),
    ((30, 10, 20, 40), "inverted"),
    ((10, 10, 102, 40), "outside the 100x50 image"),
    ((-5, 0, 20, 20), "outside the 100x50 image"),
])
def test_box_checks(box, reason):
    problems = Problems()
    assert box_object_abs("a", box, 100, 50, is_crowd=False, problems=problems, source="f",
                          where="object 1 'a'") is None
    (p,) = problems
    assert reason in str(p) and str(p).startswith("f: object 1 'a': box [")


def test_box_within_a_pixel_of_the_border_is_clipped():
    problems = Problems()
    obj = box_object_abs("a", (-0.6, 0, 100.9, 50), 100, 50, is_crowd=True, problems=problems,
                         source="f", where="1")
    assert not problems and obj.box == (0.0, 0.0, 1.0, 1.0) and obj.is_crowd


def test_polygon_checks_keep_good_segments():
    problems = Problems()
    obj = polygon_object_abs("a", [[1, 1, 5, 1, 5, 5], [1, 2, 3]], 10, 10, is_crowd=False,
                             problems=problems, source="f", where="2")
    assert len(obj.polygon) == 1 and "3 coordinates" in str(problems[0])
    assert obj.box == (0.1, 0.1, 0.5, 0.5)
    assert polygon_object_abs("a", [[1, 1, 2, 2, 3, 3]], 10, 10, is_crowd=False,
                              problems=problems, source="f", where="3") is None
    assert "zero area" in str(problems[-1])


def test_image_urls_are_relative_only_below_the_output(tmp_path):
    assert image_url_for(tmp_path / "d" / "i" / "x.jpg", tmp_path / "d") == "i/x.jpg"
    assert image_url_for(tmp_path / "x.jpg", tmp_path / "d") == str(tmp_path / "x.jpg")


def test_written_jsonl_has_image_details(detection_jsonl, tmp_path):
    out = tmp_path / "again.jsonl"
    assert cli("convert", detection_jsonl, "--from", "jsonl", "--to", "jsonl", "-o", out) == 0
    assert read_jsonl(out)[1]["image_details"] == {"format": "png", "width": 97, "height": 131}
