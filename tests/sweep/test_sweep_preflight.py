"""A sweep whose trials would all fail for one reason of this machine fails once, before the first trial,
with that reason (issue 15 item 4); a job in Azure's SDK v1 spellings runs with the v2 names (item 2)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from visionml.cli import main
from visionml.errors import VisionMLError

from .conftest import FAST, write_job


def _job(tmp_path, data, task="image_classification", params=None, space=None, max_trials=3):
    doc = {"type": "automl", "task": task,
           "training_data": {"path": str(data["train"]), "type": "mltable"},
           "validation_data": {"path": str(data["val"]), "type": "mltable"},
           "limits": {"max_trials": max_trials, "max_concurrent_trials": 1},
           "training_parameters": {**FAST[task], **(params or {})}}
    if space is not None:
        doc["search_space"] = space
    return write_job(tmp_path / "job.yml", yaml.safe_dump(doc))


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """No cached weights and downloads forbidden, as on an offline machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VISIONML_OFFLINE", "1")


def test_offline_without_weights_fails_once_and_starts_no_trial(tmp_path, sweep_data, empty_hub, capsys):
    space = [{"model_name": "choice('mobilenet_v3_small', 'resnet18')", "learning_rate": "uniform(0.001, 0.01)"}]
    job = _job(tmp_path, sweep_data("image_classification"), space=space)
    run_dir = tmp_path / "run"
    assert main(["run", str(job), "--output", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("the sweep cannot run on this machine") == 1 and "none was started" in err
    for model in ("mobilenet_v3_small", "resnet18"):  # every model the space can pick, each named once
        assert err.count(f"pretrained weights for {model} are not cached and offline mode is on") == 1
    assert "--no-pretrained" in err
    assert not run_dir.exists()  # no study, no trials folder, nothing to clean up


def test_from_scratch_needs_no_weights(empty_hub):
    """The same models pass the check when the sweep trains from random weights (--no-pretrained)."""
    from visionml.sweep.preflight import check_environment
    from visionml.sweep.space import parse_search_space

    space = parse_search_space([{"model_name": "choice('mobilenet_v3_small', 'resnet18')"}])
    check_environment("image_classification", {}, space, preset=None, pretrained=False, device="cpu")
    with pytest.raises(VisionMLError, match="pretrained weights for mobilenet_v3_small"):
        check_environment("image_classification", {}, space, preset=None, pretrained=None, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_fails_before_any_trial(tmp_path, sweep_data, capsys):
    job = _job(tmp_path, sweep_data("image_classification"), space=[{"model_name": "mobilenet_v3_small"}])
    assert main(["run", str(job), "--output", str(tmp_path / "run"), "--device", "cuda", "--no-pretrained"]) == 1
    assert "no CUDA device is available here" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_validation_metric_type_none_cannot_rank_trials(tmp_path, sweep_data, capsys):
    job = _job(tmp_path, sweep_data("image_object_detection"), task="image_object_detection",
               params={"validation_metric_type": "none"},
               space=[{"model_name": "fasterrcnn_mobilenet_v3_large_fpn", "learning_rate": "uniform(0.001, 0.01)"}])
    assert main(["run", str(job), "--output", str(tmp_path / "run"), "--no-pretrained"]) == 1
    assert "validation_metric_type is 'none'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_v1_spellings_in_training_parameters_and_search_space_share_one_name(tmp_path, sweep_data):
    from visionml.sweep.spec import load_job

    job = _job(tmp_path, sweep_data("image_object_detection"), task="image_object_detection",
               params={"box_score_thresh": 0.25, "lr_scheduler": "step", "model_size": "small"},
               space=[{"model_name": "fasterrcnn_mobilenet_v3_large_fpn", "box_score_threshold": "choice(0.2, 0.3)"}])
    spec = load_job(job)
    assert spec.training_parameters["box_score_threshold"] == 0.25 and "box_score_thresh" not in spec.training_parameters
    assert spec.training_parameters["learning_rate_scheduler"] == "step" and "model_size" not in spec.training_parameters
    assert any("model_size applies to Azure's yolov5 only" in note for note in spec.notes)
    (sub,) = spec.search_space
    assert set(sub) == {"model_name", "box_score_threshold"}
    twice = _job(tmp_path, sweep_data("image_object_detection"), task="image_object_detection",
                 params={"box_score_thresh": 0.25, "box_score_threshold": 0.3})
    with pytest.raises(VisionMLError, match="training_parameters: box_score_thresh=0.25 and box_score_threshold=0.3"):
        load_job(twice)


@pytest.mark.slow
def test_job_yaml_in_v1_spellings_trains_and_saves_canonical_names(tmp_path, sweep_data, capsys):
    """A job YAML written with Azure's SDK v1 names (and a yolov5-only key) runs one epoch with
    `--preset cpu --no-pretrained`; config.json and trials.csv hold the v2 names."""
    params = {"box_score_thresh": 0.25, "nms_iou_thresh": 0.45, "box_detections_per_img": 50,
              "lr_scheduler": "warmup_cosine", "grad_accumulation_step": 1, "amsgrad": False, "seed": 7,
              "log_training_metrics": "Enable", "log_validation_loss": "Enable", "img_size": 640,
              "tile_predictions_nms_thresh": 0.3}
    job = _job(tmp_path, sweep_data("image_object_detection"), task="image_object_detection", params=params,
               space=[{"model_name": "choice('fasterrcnn_mobilenet_v3_large_fpn')", "box_score_thresh": "choice(0.2)"}],
               max_trials=1)
    run_dir = tmp_path / "sweep"
    assert main(["run", str(job), "--output", str(run_dir), "--preset", "cpu", "--no-pretrained"]) == 0
    err = capsys.readouterr().err
    assert "img_size applies to Azure's yolov5 only" in err and "box_score_thresh -> box_score_threshold" in err
    configs = list(run_dir.glob("trials/*/run/config.json"))
    assert len(configs) == 1
    hp = json.loads(configs[0].read_text())["hyperparameters"]
    assert hp["box_score_threshold"] == 0.2  # the search space's value wins over the fixed one
    assert (hp["nms_iou_threshold"], hp["box_detections_per_image"], hp["random_seed"]) == (0.45, 50, 7)
    assert hp["tile_predictions_nms_threshold"] == 0.3 and hp["log_training_metrics"] is True
    assert not {"box_score_thresh", "nms_iou_thresh", "box_detections_per_img", "lr_scheduler", "seed",
                "grad_accumulation_step", "amsgrad", "tile_predictions_nms_thresh", "img_size"} & set(hp)
    header = (run_dir / "trials.csv").read_text().splitlines()[0].split(",")
    assert "box_score_threshold" in header and "box_score_thresh" not in header
