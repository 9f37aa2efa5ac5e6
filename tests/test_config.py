"""Hyperparameters: Azure defaults per task, typed parsing without eval, ranges, presets, hints."""

import pytest

from visionml.config import (PARAMS, PRESETS, FieldError, Param, cpu_time_hint, get_param, parse_set_arguments,
                             preset_values, resolve_hyperparameters)
from visionml.errors import UsageError
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS


def test_azure_defaults_per_task():
    mc, ml = resolve_hyperparameters(MULTICLASS), resolve_hyperparameters(MULTILABEL)
    det, seg = resolve_hyperparameters(DETECTION), resolve_hyperparameters(SEGMENTATION)
    assert (mc["learning_rate"], ml["learning_rate"], det["learning_rate"], seg["learning_rate"]) == (
        0.01, 0.035, 0.005, 0.005)
    assert mc["training_batch_size"] == 78 and det["training_batch_size"] == 2 and det["validation_batch_size"] == 1
    for hp in (mc, det):
        assert hp["number_of_epochs"] == 15 and hp["optimizer"] == "sgd" and hp["momentum"] == 0.9
        assert hp["weight_decay"] == 1e-4 and hp["nesterov"] is True
        assert hp["learning_rate_scheduler"] == "warmup_cosine" and hp["warmup_cosine_lr_cycles"] == 0.45
        assert hp["warmup_cosine_lr_warmup_epochs"] == 2 and hp["early_stopping"] is True
        assert (hp["early_stopping_patience"], hp["early_stopping_delay"]) == (5, 5)
        assert hp["layers_to_freeze"] is None and hp["validation_data_size"] == 0.2
    assert (mc["training_crop_size"], mc["validation_resize_size"], mc["validation_crop_size"]) == (224, 256, 224)
    assert (det["min_size"], det["max_size"], det["box_score_threshold"], det["nms_iou_threshold"]) == (
        600, 1333, 0.3, 0.5)
    assert det["box_detections_per_image"] == 100 and det["validation_metric_type"] == "voc"
    assert seg["mask_pixel_score_threshold"] == 0.5 and seg["max_number_of_polygon_points"] == 100
    assert "min_size" not in mc and "weighted_loss" not in det and "mask_pixel_score_threshold" not in det
    assert mc["model_name"] == "seresnext" and seg["model_name"] == "maskrcnn_resnet50_fpn"


def test_strings_parse_by_type():
    hp = resolve_hyperparameters(DETECTION, {
        "number_of_epochs": "3", "learning_rate": "1e-3", "nesterov": "False", "early_stopping": "0",
        "optimizer": "AdamW", "tile_grid_size": "3x2", "layers_to_freeze": "none", "anchor_sizes": "16, 32,64",
        "model_name": "FasterRCNN_ResNet18_FPN"})
    assert hp["number_of_epochs"] == 3 and hp["learning_rate"] == 0.001
    assert hp["nesterov"] is False and hp["early_stopping"] is False and hp["optimizer"] == "adamw"
    assert hp["tile_grid_size"] == (3, 2) and hp["layers_to_freeze"] is None
    assert hp["anchor_sizes"] == (16, 32, 64) and hp["model_name"] == "fasterrcnn_resnet18_fpn"


def test_yaml_values_and_azure_v1_grid_spelling():
    hp = resolve_hyperparameters(DETECTION, {"number_of_epochs": 4.0, "nesterov": 1, "tile_grid_size": "(3, 2)"})
    assert hp["number_of_epochs"] == 4 and hp["nesterov"] is True and hp["tile_grid_size"] == (3, 2)
    assert resolve_hyperparameters(DETECTION, {"tile_grid_size": [2, 2]})["tile_grid_size"] == (2, 2)
    assert resolve_hyperparameters(MULTICLASS, {"weighted_loss": "2"})["weighted_loss"] == 2


@pytest.mark.parametrize("overrides,message", [
    ({"learning_rat": "0.1"}, "unknown hyperparameter 'learning_rat'. Did you mean learning_rate"),
    ({"learning_rate": "0"}, r"out of range: it must be a number in \(0, 1\]"),
    ({"number_of_epochs": "2.5"}, "not an integer"),
    ({"number_of_epochs": "__import__('os')"}, "not an integer"),
    ({"momentum": "nan"}, "finite"),
    ({"nesterov": "maybe"}, "true or false"),
    ({"optimizer": "adm"}, "Did you mean adam"),
    ({"weighted_loss": "3"}, "one of 0, 1, 2"),
    ({"min_size": "600"}, "does not apply to image_classification"),
    ({"model_name": "maskrcnn_resnet50_fpn"}, "Models for image_classification"),
    ({"model_name": "yolov5"}, "AGPL"),
    ({"validation_resize_size": "200"}, "must be at least validation_crop_size"),
    ({"model_name": "vitb16r224", "validation_crop_size": "8", "validation_resize_size": "8"}, "at least 16"),
    ({"validation_data_size": "1"}, "out of range"),
])
def test_bad_values_fail_with_the_fix(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve_hyperparameters(MULTICLASS, overrides)


@pytest.mark.parametrize("overrides,message", [
    ({"tile_grid_size": "3x"}, 'COLSxROWS'),
    ({"tile_overlap_ratio": "1"}, r"\[0, 1\)"),
    ({"validation_iou_threshold": "x"}, "not a number"),  # out of [0.1, 1] is clamped (Azure), not refused
    ({"max_size": "100"}, "max_size .* must be at least min_size"),
    ({"mask_pixel_score_threshold": "0.5"}, "applies to image_instance_segmentation"),
    ({"anchor_sizes": "16,0"}, "out of range"),
])
def test_bad_detection_values(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve_hyperparameters(DETECTION, overrides)


def test_model_specific_azure_defaults_yield_to_explicit_values():
    assert resolve_hyperparameters(MULTICLASS, {"model_name": "vitb16r224"})["training_batch_size"] == 48
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "vitl16r224", "training_batch_size": "4"})
    assert hp["training_batch_size"] == 4 and hp["validation_batch_size"] == 10


def test_preset_layers_between_defaults_and_overrides():
    hp = resolve_hyperparameters(DETECTION, {"number_of_epochs": "3"}, preset="cpu")
    assert hp["model_name"] == "fasterrcnn_mobilenet_v3_large_fpn" and hp["min_size"] == 240
    assert hp["optimizer"] == "adamw" and hp["precision"] == "bf16"
    assert hp["number_of_epochs"] == 3  # the explicit value wins over the preset
    assert hp["box_score_threshold"] == 0.3  # untouched by the preset: Azure's default
    with pytest.raises(UsageError, match="unknown preset 'cpuu'. Did you mean cpu"):
        resolve_hyperparameters(DETECTION, {}, preset="cpuu")


def test_every_preset_value_is_valid_for_its_task():
    for name in PRESETS:
        for task in TASKS:
            given = preset_values(name, task)
            assert given, f"preset {name} sets nothing for {task}"
            hp = resolve_hyperparameters(task, {}, preset=name)  # each value checked as --set checks it
            assert {k: hp[k] for k in given} == {k: get_param(k, task).parse(v, task) for k, v in given.items()}


def test_every_param_default_parses_as_its_own_type():
    for task in TASKS:
        for key, value in resolve_hyperparameters(task).items():
            assert get_param(key, task).parse(value, task) == value


def test_extensions_are_marked():
    assert not PARAMS["precision"].azure and not PARAMS["anchor_sizes"].azure and PARAMS["min_size"].azure


def test_parse_set_arguments():
    assert parse_set_arguments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_set_arguments(["learning_rate"])


def test_cpu_time_hint_names_the_preset_only_when_slow():
    slow = resolve_hyperparameters(DETECTION)
    hint = cpu_time_hint(DETECTION, slow, 1000)
    assert hint and "--preset cpu" in hint and "hours" in hint
    assert cpu_time_hint(DETECTION, slow, 1000, device="cuda:0") is None
    assert cpu_time_hint(DETECTION, resolve_hyperparameters(DETECTION, {}, "cpu"), 120) is None
    assert cpu_time_hint(MULTICLASS, resolve_hyperparameters(MULTICLASS, {}, "cpu"), 120) is None
    # A big set under the preset itself gets no hint: its only advice is the preset.
    preset = resolve_hyperparameters(DETECTION, {}, "cpu")
    assert cpu_time_hint(DETECTION, preset, 100_000) is not None
    assert cpu_time_hint(DETECTION, preset, 100_000, preset="cpu") is None


def test_none_is_a_value_where_it_is_a_choice():
    """validation_metric_type has a choice named none (Azure's: no validation metrics); --set
    validation_metric_type=none must select it, not mean "not set"."""
    assert resolve_hyperparameters(DETECTION, {"validation_metric_type": "none"})["validation_metric_type"] == "none"
    assert resolve_hyperparameters(DETECTION, {"tile_grid_size": "none"})["tile_grid_size"] is None


# The typed-field machinery serves other settings than hyperparameters (xai_parameters): Azure's strtobool
# flags, JSON's strict types, and a refusal that says why so that each front end words it for its reader.

def test_strtobool_kind_takes_azures_words_and_numbers_only():
    flag = Param("flag", "strtobool", True)
    for raw, meaning in (("Yes", True), (" off ", False), ("T", True), ("0", False), (1.0, True), (0, False),
                         (False, False)):
        assert flag.parse(raw) is meaning, raw
    for bad in ("enable", "maybe", 2, None, ""):  # enable/disable are Azure's log_* words, not strtobool's
        with pytest.raises(UsageError, match="flag"):
            flag.parse(bad)
    assert flag.parse("ON", strict=True) is True
    with pytest.raises(UsageError):
        flag.parse(" on ", strict=True)


@pytest.mark.parametrize("param, loose, typed", [
    (Param("n", "int", 1, low=1), "8", 8.0),
    (Param("x", "float", 0.5, low=0, high=1), "1", 1),
    (Param("c", "choice", "ab", choices=("ab", "cd")), " CD", "cd"),
    (Param("w", "choice", 0, choices=(0, 1, 2)), "2", 2),
    (Param("g", "grid", None, optional=True), "3x2", [3, 2]),
])
def test_strict_parsing_takes_json_types_and_exact_names(param, loose, typed):
    assert param.parse(loose) == param.parse(typed, strict=True)  # --set strings, JSON values: one answer
    with pytest.raises(UsageError):
        param.parse(loose, strict=True)


def test_strict_null_is_json_null_only():
    layers = PARAMS["layers_to_freeze"]
    assert layers.parse(None, strict=True) is None and layers.parse("none") is None
    with pytest.raises(UsageError):
        layers.parse("none", strict=True)


def test_a_refused_value_says_why_with_the_words_unchanged():
    with pytest.raises(FieldError) as error:
        resolve_hyperparameters(MULTICLASS, {"learning_rate": "2"})
    assert (error.value.param.name, error.value.raw, error.value.reason) == ("learning_rate", "2", "high")
    assert str(error.value) == "learning_rate='2' is out of range: it must be a number in (0, 1]"
    for raw, reason in (("0", "low"), ("x", "invalid"), ("none", "missing")):
        with pytest.raises(FieldError) as error:
            PARAMS["learning_rate"].parse(raw)
        assert error.value.reason == reason
    assert isinstance(error.value, UsageError)  # exit code 2 on the command line, as before
