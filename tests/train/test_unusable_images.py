"""An image the model cannot take (a valid 100000x1 PNG: a detector would resize it to 0 pixels) is a
data problem found when the data is loaded (issue 13, item 1): strict training stops before any
work naming FILE:LINE with ignore_data_errors=false; by default (and with --skip-invalid) it is dropped into
invalid_lines.jsonl and training goes on with the rest."""

from __future__ import annotations

import json
import shutil

from PIL import Image

from visionml.cli import main

from tests.support import train_args


def _with_a_thin_image(data: dict, tmp_path) -> tuple[dict, object]:
    shutil.copytree(data["train"].parent / "images", tmp_path / "images")
    Image.new("RGB", (100000, 1), (10, 200, 30)).save(tmp_path / "images" / "thin.png")
    lines = data["train"].read_text().splitlines()
    label = json.loads(lines[0])["label"]
    thin = {"image_url": "images/thin.png", "label": label}
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines[:2] + [json.dumps(thin)] + lines[2:]) + "\n")
    return {**data, "train": train}, train


def test_strict_training_stops_before_any_work_naming_the_line(sample_data, tmp_path, capsys):
    data, train = _with_a_thin_image(sample_data("object-detection"), tmp_path)
    assert main(train_args("object-detection", data, tmp_path / "strict", "--set", "ignore_data_errors=false")) == 1
    err = capsys.readouterr().err
    assert f"{train}:3: image_url:" in err and "100000x1" in err and "ignore_data_errors" in err
    assert "Traceback" not in err
    assert not (tmp_path / "strict").exists()  # refused before anything is written


def test_skip_invalid_drops_it_and_trains_on_the_rest(sample_data, tmp_path, capsys):
    data, train = _with_a_thin_image(sample_data("multiclass"), tmp_path)
    run = tmp_path / "lenient"
    assert main(train_args("multiclass", data, run, "--skip-invalid")) == 0
    skipped = [json.loads(line) for line in (run / "invalid_lines.jsonl").read_text().splitlines()]
    assert [(entry["source"], entry["line"]) for entry in skipped] == [(str(train), 3)]
    assert "100000x1" in skipped[0]["errors"][0] and "thin.png" in skipped[0]["raw"]
