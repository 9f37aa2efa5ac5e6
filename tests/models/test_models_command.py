"""``visionml models`` as a user runs it."""

import json

from visionml.cli import main


def test_table_marks_the_defaults_per_task(capsys):
    assert main(["models", "--task", "object-detection"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("image_object_detection")}
    assert "default" in lines["fasterrcnn_resnet50_fpn"] and lines["fasterrcnn_mobilenet_v3_large_fpn"].endswith("cpu")
    assert "320x320 (fixed)" in lines["ssdlite320_mobilenet_v3_large"]
    assert not any(line.startswith("image_classification") for line in out.splitlines())


def test_json_lists_every_task_with_sizes(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_key = {(r["task"], r["name"]): r for r in rows}
    resnet18 = by_key[("image_classification", "resnet18")]
    assert 11 < resnet18["parameters_millions"] < 12 and resnet18["gradcam"] and resnet18["cpu_default"]
    assert by_key[("image_classification_multilabel", "vitb16r224")]["gradcam"] is False
    assert by_key[("image_instance_segmentation", "maskrcnn_resnet50_fpn")]["default"]
    assert sum(r["cpu_default"] for r in rows) == 4


def test_unknown_task_is_a_usage_error(capsys):
    assert main(["models", "--task", "segmentaton"]) == 2
    assert "unknown task" in capsys.readouterr().err
