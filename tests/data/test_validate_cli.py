"""`visionml validate` as a user runs it: text report, --json, exit codes, options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import visionml
from .jsonl_testdata import box, poly, write_image, write_jsonl

from visionml.cli import main


@pytest.fixture
def detection_file(tmp_path, image_dir):
    return write_jsonl(tmp_path / "train.jsonl", [
        {"image_url": "images/a.jpg", "image_details": {"format": "jpg", "width": "40px", "height": "30px"},
         "label": [box("cat"), box("dog", isCrowd=1)]},
        {"image_url": "images/b.jpg", "label": [box("cat")]},
        {"image_url": "images/c.jpg", "label": []},
    ], bom=True)


def test_valid_file_prints_summary_and_exits_0(detection_file, capsys):
    assert main(["validate", str(detection_file)]) == 0
    out = capsys.readouterr().out
    assert "Task:    image_object_detection (inferred from the labels)" in out
    assert "Images:  3 lines kept (3 distinct image files), 0 line(s) with problems" in out
    assert "Objects: 3 (1 marked isCrowd), 1 image(s) with none" in out
    assert [ln.split() for ln in out.splitlines() if ln.startswith("  ")] == [
        ["class", "boxes"], ["cat", "2"], ["dog", "1"]]
    assert "Image sizes (3 known): 40x30 min, 40x30 median, 40x30 max" in out
    assert out.rstrip().endswith("OK: the data is valid.")


def test_invalid_lines_are_printed_and_exit_1(tmp_path, image_dir, capsys):
    src = write_jsonl(tmp_path / "train.jsonl", [
        {"image_url": "images/a.jpg", "label": "cat"},
        {"image_url": "images/nope.jpg", "label": "dog"},
        "{broken",
        {"image_url": "images/b.jpg", "label": "cat", "image_details": {"format": "svg"}},
    ])
    assert main(["validate", str(src)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{src}:2: image_url: file not found: {image_dir / 'nope.jpg'} [dropped image]"
    assert out[1].startswith(f"{src}:3: line: invalid JSON (") and "column 2" in out[1] and "line 1" not in out[1]
    # image_details is never needed (Azure reads sizes from the image): a warning, not a problem
    assert out[2].startswith(f"{src}:4: image_details.format: unknown format 'svg'") and out[2].endswith(" [warning]")
    assert out[-1].startswith("INVALID: 2 problem(s) on 2 line(s).")
    assert [ln.split() for ln in out if ln.startswith("  ")] == [["class", "images"], ["cat", "2"]]


def test_nothing_valid(tmp_path, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", ["{bad", {"image_url": "x.jpg"}])
    assert main(["validate", str(src)]) == 1
    out = capsys.readouterr().out
    assert "Task:    unknown (no line with a usable label)" in out
    assert out.rstrip().endswith("INVALID: no valid line.")


def test_json_output(tmp_path, image_dir, capsys):
    src = write_jsonl(tmp_path / "seg.jsonl", [
        {"image_url": "images/a.jpg", "label": [poly("can"), poly("can"), poly("carton")]},
        {"image_url": "images/b.jpg", "label": [poly("can", points=(0.1, 0.1, 0.2))]},
    ])
    assert main(["validate", str(src), "--json"]) == 1
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["valid"] is False
    assert doc["problems"] == [{"source": str(src), "line": 2, "field": "label[0].polygon[0]",
                                "reason": "has an odd number of values (3); x and y must come in pairs",
                                "training": "dropped image", "tolerated": True,
                                "kind": "polygon segment with an odd count"}]
    summary = doc["summary"]
    assert summary["task"] == "image_instance_segmentation" and summary["images"] == 1
    assert summary["classes"] == [{"name": "can", "polygons": 2}, {"name": "carton", "polygons": 1}]
    assert summary["image_sizes"]["known"] == 1 and summary["invalid_lines"] == 1


def test_no_image_check_and_max_pixels(tmp_path, image_dir, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", [{"image_url": "images/missing.jpg", "label": ["x"]},
                                            {"image_url": "images/a.jpg", "label": ["y"]}])
    assert main(["validate", str(src), "--no-image-check", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["summary"]["image_sizes"] is None
    assert main(["validate", str(src), "--max-pixels", "1000", "--json"]) == 1
    reasons = [p["reason"] for p in orjson.loads(capsys.readouterr().out)["problems"]]
    assert reasons[0].startswith("file not found") and "over the limit of 1,000" in reasons[1]


def test_task_and_datastore_options(tmp_path, capsys):
    write_image(tmp_path / "blob" / "imgs" / "a.jpg")
    az = "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/blob/paths/imgs/a.jpg"
    src = write_jsonl(tmp_path / "data" / "t.jsonl", [{"image_url": az, "label": "cat"}])
    assert main(["validate", str(src)]) == 1  # not mapped: looked for next to the JSONL
    assert f"file not found: {tmp_path / 'data' / 'imgs' / 'a.jpg'}" in capsys.readouterr().out
    assert main(["validate", str(src), "--datastore", f"blob={tmp_path / 'blob'}"]) == 0
    capsys.readouterr()
    assert main(["validate", str(src), "--datastore", f"blob={tmp_path / 'blob'}", "--task", "multilabel"]) == 1
    assert "task image_classification_multilabel was given" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", [{"image_url": "a.jpg", "label": []}])
    assert main(["validate", str(src)]) == 2
    assert "pass --task" in capsys.readouterr().err
    assert main(["validate", str(src), "--task", "segmentaton"]) == 2
    assert "instance-segmentation" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 1


def test_console_command_in_a_subprocess(detection_file):
    env = {**os.environ, "PYTHONPATH": str(Path(visionml.__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "visionml", "validate", str(detection_file), "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["summary"]["objects"] == 3
