"""``visionml evaluate`` as a user runs it: real model folders (small, randomly initialised, saved
exactly as training saves them) scored on JSONL data, metrics JSON and plots read back."""

from __future__ import annotations

import json

import pytest

from visionml.cli import main
from visionml.data.reader import read_dataset
from visionml.tasks import MULTICLASS, SEGMENTATION

from tests.support import LABELS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Scores everything (threshold 0) so a random network still returns objects to evaluate.
SETTINGS = {MULTICLASS: {}, SEGMENTATION: {"box_score_threshold": 0.0, "box_detections_per_image": 5}}


@pytest.fixture(scope="module")
def setups(sample_data, model_folder):
    """Per task: (model folder, validation JSONL of 2 images)."""
    out = {}
    for task, settings in SETTINGS.items():
        data = sample_data(task, n=8, seed=2)
        assert read_dataset(data["train"], task).labels == LABELS  # the model folders' labels
        out[task] = (model_folder(task, **settings), data["val"])
    return out


@pytest.mark.parametrize("task, primary", [(MULTICLASS, "accuracy"), (SEGMENTATION, "mean_average_precision")])
def test_evaluate_writes_metrics_and_plots(setups, task, primary, tmp_path, capsys):
    model, data = setups[task]
    output, plots = tmp_path / "out" / "metrics.json", tmp_path / "plots"
    rc = main(["evaluate", "--model", str(model), "--data", str(data), "--output", str(output),
               "--plots", str(plots), "--batch-size", "2"])
    printed = capsys.readouterr().out
    assert rc == 0
    metrics = json.loads(output.read_text())
    assert metrics["task"] == task and metrics["primary_metric"] == primary
    assert 0.0 <= metrics[primary] <= 1.0
    assert printed.splitlines()[-3] == f"{primary}: {metrics[primary]:.4f}"
    assert f"{primary:<26}{metrics[primary]:.4f}  (primary)" in printed
    assert [p.name for p in output.parent.iterdir()] == ["metrics.json"]  # no temporary left behind
    pngs = sorted(p.name for p in plots.iterdir())
    if task == MULTICLASS:
        assert metrics["num_samples"] == 2 and pngs == ["confusion_matrix.png", "pr_curves.png", "roc_curves.png"]
        assert sum(map(sum, metrics["confusion_matrix"]["data"]["matrix"])) == 2
    else:
        assert metrics["num_images"] == 2 and metrics["iou_type"] == "segm"
        assert pngs == ["average_precision.png", "pr_curves.png"]
        # the random network was made to answer: its predictions were evaluated
        assert sum(m["num_predictions"] for m in metrics["per_label"].values()) > 0


def test_box_score_threshold_decides_azures_numbers_not_the_coco_summary(setups, tmp_path, capsys):
    model, data = setups[SEGMENTATION]
    runs = {}
    for threshold in ("0.05", "1.0"):
        output = tmp_path / f"metrics-{threshold}.json"
        rc = main(["evaluate", "--model", str(model), "--data", str(data), "--output", str(output),
                   "--set", f"box_score_threshold={threshold}"])
        assert rc == 0
        runs[threshold] = json.loads(output.read_text())
    capsys.readouterr()
    counted = {t: sum(m["num_predictions"] for m in r["per_label"].values()) for t, r in runs.items()}
    # Nothing scores 1.0: a deployment at that threshold returns no box, so nothing is counted ...
    assert counted["1.0"] == 0 < counted["0.05"]
    assert runs["1.0"]["precision"] == 0.0 and runs["1.0"]["recall"] == 0.0
    assert runs["1.0"]["mean_average_precision"] == 0.0  # Azure's AP is over the deployed boxes too
    # ... while the COCO summary integrates over the same boxes (down to 0.05) either way.
    for key in ("coco_mean_average_precision", "coco"):
        assert runs["1.0"][key] == runs["0.05"][key]


def test_data_of_another_task_is_a_clear_error(setups, capsys):
    model, _ = setups[MULTICLASS]
    _, segmentation_data = setups[SEGMENTATION]
    rc = main(["evaluate", "--model", str(model), "--data", str(segmentation_data)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "val.jsonl:1: label" in err


def test_missing_model_folder_and_bad_options(tmp_path, setups, capsys):
    _, data = setups[MULTICLASS]
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(data)]) == 1
    assert "not a model folder" in capsys.readouterr().err
    model, _ = setups[MULTICLASS]
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--datastore", "oops"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(model)])
    assert exit_info.value.code == 2
