"""Every key an Azure AutoML image job accepts, in either of Azure's spellings, saved under one name
(issue 15 item 2): aliases through --set and job YAML, yolov5-only keys explained, unknown keys still
failing with the closest names, Azure's per-model defaults, the IoU clamp and what --preset says."""

from __future__ import annotations

import pytest

from visionml.cli import main
from visionml.config import ALIASES, NOTED_KEYS, PARAMS, REFUSED_KEYS, resolve_hyperparameters
from visionml.errors import UsageError
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

# Azure's SDK v1 / internal spellings (its common/, classification/ and object_detection/ constants)
# and the v2 name each is saved under.
V1_SPELLINGS = {
    "lr_scheduler": "learning_rate_scheduler", "grad_accumulation_step": "gradient_accumulation_step",
    "amsgrad": "ams_gradient", "split_ratio": "validation_data_size", "validation_size": "validation_data_size",
    "num_workers": "number_of_workers", "seed": "random_seed", "train_crop_size": "training_crop_size",
    "valid_crop_size": "validation_crop_size", "valid_resize_size": "validation_resize_size",
    "box_score_thresh": "box_score_threshold", "nms_iou_thresh": "nms_iou_threshold",
    "box_nms_thresh": "nms_iou_threshold", "box_detections_per_img": "box_detections_per_image",
    "tile_predictions_nms_thresh": "tile_predictions_nms_threshold",
}


def test_every_v1_spelling_maps_to_its_v2_name():
    assert {alias: ALIASES[alias] for alias in V1_SPELLINGS} == V1_SPELLINGS
    for name in ("log_training_metrics", "log_validation_loss", "enable_onnx_normalization", "distributed",
                 "random_seed"):
        assert name in PARAMS  # keys Azure accepts that visionml lacked


def test_aliases_resolve_to_the_canonical_value_and_say_so():
    hp = resolve_hyperparameters(DETECTION, {"box_score_thresh": "0.45", "nms_iou_thresh": 0.4,
                                             "box_detections_per_img": "7", "lr_scheduler": "step",
                                             "grad_accumulation_step": 2, "amsgrad": "1", "split_ratio": 0.3,
                                             "seed": 11})
    assert (hp["box_score_threshold"], hp["nms_iou_threshold"], hp["box_detections_per_image"]) == (0.45, 0.4, 7)
    assert hp["learning_rate_scheduler"] == "step" and hp["gradient_accumulation_step"] == 2
    assert hp["ams_gradient"] is True and hp["validation_data_size"] == 0.3 and hp["random_seed"] == 11
    saved = hp.to_json()
    assert "box_score_thresh" not in saved and saved["box_score_threshold"] == 0.45  # saved canonical
    assert any("box_score_thresh -> box_score_threshold" in note for note in hp.notes)


def test_two_spellings_of_one_key_with_two_values_fail():
    with pytest.raises(UsageError, match="valid_crop_size=.*validation_crop_size=.*same hyperparameter"):
        resolve_hyperparameters(MULTICLASS, {"valid_crop_size": 200, "validation_crop_size": 224})
    # The same value twice is no conflict.
    assert resolve_hyperparameters(MULTICLASS, {"seed": 3, "random_seed": 3})["random_seed"] == 3


def test_azure_booleans_and_enable_disable():
    hp = resolve_hyperparameters(DETECTION, {"log_training_metrics": "Enable", "log_validation_loss": "Disable",
                                             "distributed": "t", "enable_onnx_normalization": "yes"})
    assert hp["log_training_metrics"] is True and hp["log_validation_loss"] is False
    assert hp["distributed"] is True and hp["enable_onnx_normalization"] is True


@pytest.mark.parametrize("key,value", [("img_size", 640), ("image_size", 640), ("model_size", "medium"),
                                       ("multi_scale", 1)])
def test_yolov5_only_keys_are_accepted_and_explained(key, value):
    hp = resolve_hyperparameters(DETECTION, {key: value})
    assert key not in hp.to_json()  # not kept: nothing reads it
    assert any(note.startswith(f"note: {key} applies to Azure's yolov5 only") and "min_size" in note
               for note in hp.notes)
    with pytest.raises(UsageError, match=f"{key}.*does not apply to image_classification.*yolov5"):
        resolve_hyperparameters(MULTICLASS, {key: value})


def test_unknown_keys_still_fail_with_close_names():
    with pytest.raises(UsageError, match="unknown hyperparameter 'box_score_treshold'.*Did you mean box_score_threshold"):
        resolve_hyperparameters(DETECTION, {"box_score_treshold": 0.5})
    with pytest.raises(UsageError, match="unknown hyperparameter 'lr_schedular'.*Did you mean lr_scheduler"):
        resolve_hyperparameters(MULTICLASS, {"lr_schedular": "step"})
    with pytest.raises(UsageError, match="does not apply to image_classification"):
        resolve_hyperparameters(MULTICLASS, {"box_score_thresh": 0.5})


def test_azure_checkpoint_keys_fail_saying_what_to_do():
    assert set(REFUSED_KEYS) >= {"checkpoint_run_id", "checkpoint_dataset_id", "checkpoint_filename"}
    with pytest.raises(UsageError, match="checkpoint_run_id .*--checkpoint MODEL_DIR"):
        resolve_hyperparameters(MULTICLASS, {"checkpoint_run_id": "AutoML_123_HD_0"})


def test_noted_keys_are_not_parameters():
    assert not set(NOTED_KEYS) & (set(PARAMS) | set(ALIASES))


@pytest.mark.parametrize("task,model,lr", [
    (MULTICLASS, "vits16r224", 0.0125), (MULTICLASS, "vitb16r224", 0.0125), (MULTICLASS, "vitl16r224", 0.001),
    (MULTILABEL, "vits16r224", 0.025), (MULTILABEL, "vitb16r224", 0.025), (MULTILABEL, "vitl16r224", 0.002),
    (MULTICLASS, "resnet50", 0.01), (MULTILABEL, "resnet50", 0.035),
])
def test_vit_learning_rates_per_size_and_task(task, model, lr):
    hp = resolve_hyperparameters(task, {"model_name": model})
    assert hp["learning_rate"] == lr
    assert resolve_hyperparameters(task, {"model_name": model, "learning_rate": 0.5})["learning_rate"] == 0.5


def test_vit_trains_at_the_validation_crop_of_any_size():
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "vitb16r224", "validation_crop_size": 288,
                                              "validation_resize_size": 320, "training_crop_size": 192})
    assert hp["training_crop_size"] == 288 and hp["validation_crop_size"] == 288
    assert any("training_crop_size 192 was replaced" in note for note in hp.notes)
    # Other models keep distinct training and validation crops.
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "resnet18", "training_crop_size": 192})
    assert (hp["training_crop_size"], hp["validation_crop_size"]) == (192, 224)


def test_validation_iou_threshold_is_clamped_with_a_warning():
    hp = resolve_hyperparameters(DETECTION, {"validation_iou_threshold": "0.05"})
    assert hp["validation_iou_threshold"] == 0.1
    assert any(n.startswith("warning: validation_iou_threshold='0.05' is outside [0.1, 1]: clamped to 0.1")
               for n in hp.notes)
    assert resolve_hyperparameters(SEGMENTATION, {"validation_iou_threshold": 3})["validation_iou_threshold"] == 1.0
    assert not resolve_hyperparameters(DETECTION, {"validation_iou_threshold": 0.5}).notes


def test_azure_defaults_that_visionml_now_shares():
    cls, det = resolve_hyperparameters(MULTICLASS, {}), resolve_hyperparameters(DETECTION, {})
    assert cls["checkpoint_frequency"] == 1 and det["checkpoint_frequency"] == 1
    assert det["model_name"] == "fasterrcnn_resnet50_fpn"  # Azure's detector without model_name
    assert det["log_validation_loss"] is True and det["log_training_metrics"] is False


def test_preset_cpu_lists_what_it_set_in_one_note():
    hp = resolve_hyperparameters(DETECTION, {"number_of_epochs": 2, "box_score_thresh": 0.4}, preset="cpu")
    preset_notes = [n for n in hp.notes if n.startswith("note: --preset cpu set ")]
    assert len(preset_notes) == 1
    note = preset_notes[0]
    assert "model_name=fasterrcnn_mobilenet_v3_large_fpn" in note and "min_size=240" in note
    assert "your values kept for number_of_epochs" in note and hp["number_of_epochs"] == 2
    assert hp["box_score_threshold"] == 0.4


def test_set_takes_v1_spellings_and_unknown_ones_fail(tmp_path, capsys):
    """`visionml train --set` goes through the same resolution: a typo exits 2 naming the key."""
    code = main(["train", "--task", "multiclass", "--training-data", str(tmp_path / "none.jsonl"),
                 "--output", str(tmp_path / "run"), "--set", "valid_crop_sise=64"])
    assert code == 2 and "Did you mean valid_crop_size" in capsys.readouterr().err


def test_docs_list_every_key_with_its_other_spellings():
    """docs/models.md names every accepted key, each alias in the same table row as its v2 name."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for name, param in PARAMS.items():
        row = next((r for r in rows if f"`{name}`" in r.split("|")[1]), None)
        assert row is not None, f"docs/models.md has no row for {name}"
        for alias in param.aliases:
            assert f"`{alias}`" in row, f"{alias} is not beside {name} in docs/models.md"
    for key in [*NOTED_KEYS, *REFUSED_KEYS]:
        assert f"`{key}`" in text, key
