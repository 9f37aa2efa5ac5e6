"""`visionml train` end to end for every task: the run folder, manifest, metrics and model folder."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from visionml.cli import main
from visionml.modelio import load_model_folder
from visionml.tasks import get_task

from tests.support import LABELS, train_args

TASKS = ["multiclass", "multilabel", "object-detection", "instance-segmentation"]


@pytest.mark.parametrize("task", TASKS)
def test_one_epoch_leaves_a_complete_run_folder(task, sample_data, tmp_path, capsys):
    data = sample_data(task)
    run = tmp_path / "run"
    assert main(train_args(task, data, run)) == 0
    out = capsys.readouterr()
    assert f"model folder: {run / 'model'}" in out.out
    assert "epoch 1/1" in out.err  # one plain log line per epoch when stderr is not a terminal

    canonical, primary = get_task(task).name, get_task(task).primary_metric
    manifest = json.loads((run / "model" / "visionml.json").read_text())
    assert manifest["task"] == canonical
    assert manifest["labels"] == LABELS  # the sample data's classes, sorted
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == canonical and config["hyperparameters"]["number_of_epochs"] == 1
    assert config["run"]["seed"] == 0 and config["run"]["precision"] == "fp32"
    assert config["labels"] == manifest["labels"]

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and 0.0 <= metrics[primary] <= 1.0

    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and float(rows[0]["train_loss"]) > 0
    assert float(rows[0][primary]) == pytest.approx(metrics[primary], abs=1e-5)

    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["finished"]
    assert (run / "plots" / "loss.png").stat().st_size > 0

    model, loaded = load_model_folder(run / "model")
    assert loaded["model_name"] == manifest["model_name"]
    weights = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    for name, value in weights.items():  # the model folder holds the trained (best) weights
        assert torch.equal(value, checkpoint["model"][name]), name


def test_existing_run_folder_is_not_overwritten(sample_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(train_args("multiclass", sample_data("multiclass"), run)) == 2
    err = capsys.readouterr().err
    assert "will not overwrite" in err and "--resume" in err
    assert (run / "config.json").read_text() == "{}"


def test_invalid_line_stops_before_training_only_with_ignore_data_errors_false(sample_data, tmp_path, capsys):
    data = dict(sample_data("multiclass"))
    bad = tmp_path / "train.jsonl"
    lines = data["train"].read_text().splitlines()
    bad.write_text("\n".join(lines[:3] + ['{"image_url": "images/nothing.jpg", "label": "circle"}'] + lines[3:]) + "\n")
    for image in (data["train"].parent / "images").iterdir():
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / image.name).write_bytes(image.read_bytes())
    data["train"] = bad

    assert main(train_args("multiclass", data, tmp_path / "strict", "--set", "ignore_data_errors=false")) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:" in err and "ignore_data_errors=true" in err
    assert not (tmp_path / "strict").exists()  # checked before anything is written

    run = tmp_path / "lenient"
    assert main(train_args("multiclass", data, run, "--skip-invalid")) == 0
    skipped = [json.loads(line) for line in (run / "invalid_lines.jsonl").read_text().splitlines()]
    assert [entry["line"] for entry in skipped] == [4]
