"""Training with tile_grid_size (Azure's small-object detection): the image and its tiles are trained
on, validation predicts tiled, the model folder keeps the tiling for predict, serve and evaluate."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support import train_args
from visionml.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("task", ["image_object_detection", "image_instance_segmentation"])
def test_a_tiled_training_trains_on_tiles_and_its_model_predicts_tiled(task, sample_data, tmp_path, caplog):
    data = sample_data(task)
    run = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="visionml.data.dataset")
    assert main(train_args(task, data, run, "--set", "tile_grid_size=2x2", "--set", "tile_overlap_ratio=0.2")) == 0
    # 8 training images, each whole and again for each of its tiles that holds an object.
    tiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tiling 2x2")]
    assert len(tiled) == 1 and tiled[0].startswith("tiling 2x2: 8 images and ")
    assert int(tiled[0].split(" and ")[1].split()[0]) >= 8

    manifest = json.loads((run / "model" / "visionml.json").read_text())
    assert manifest["inference"]["tile_grid_size"] == [2, 2]
    assert manifest["inference"]["tile_overlap_ratio"] == 0.2
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_average_precision"] <= 1.0

    from visionml.predict import Predictor

    assert Predictor.from_folder(run / "model").settings["tile_grid_size"] == (2, 2)
    assert Predictor.from_folder(run / "model", overrides={"tile_grid_size": "none"}).settings["tile_grid_size"] is None
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(data["val"]), "--output", str(out),
                 "--set", "tile_grid_size=3x2"]) == 0
    assert "mean_average_precision" in json.loads(out.read_text())
