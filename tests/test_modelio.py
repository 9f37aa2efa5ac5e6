"""The model folder round-trips for every task, and damaged folders fail with what to do."""

import json

import pytest
import torch

from visionml.config import resolve_hyperparameters
from visionml.errors import VisionMLError
from visionml.modelio import MANIFEST, WEIGHTS, load_model_folder, make_manifest, read_manifest, save_model_folder
from visionml.models import build_model
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

LABELS = ["can", "carton", "milk_bottle"]
# Enough boxes (and masks) to compare, without pasting 100 masks per image: seconds on 2 cores.
FEW_DETECTIONS = {"rpn_post_nms_top_n_test": 50, "box_detections_per_image": 10}
CASES = [
    (MULTICLASS, "mobilenet_v3_small", {"validation_crop_size": 64, "validation_resize_size": 72}),
    (MULTILABEL, "resnet18", {"validation_crop_size": 64, "validation_resize_size": 64}),
    (DETECTION, "fasterrcnn_mobilenet_v3_large_fpn", {"min_size": 96, "max_size": 128, "box_score_threshold": 0.0,
                                                      "anchor_sizes": "16,32,64", **FEW_DETECTIONS}),
    (SEGMENTATION, "maskrcnn_resnet18_fpn", {"min_size": 64, "max_size": 96, "box_score_threshold": 0.0,
                                             **FEW_DETECTIONS}),
]


def _outputs(model, task):
    torch.manual_seed(0)
    with torch.no_grad():
        if task in (MULTICLASS, MULTILABEL):
            return model(torch.rand(2, 3, 64, 64))
        return model([torch.rand(3, 64, 80)])


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for key in x:
                assert torch.equal(x[key], y[key]), key


@pytest.mark.parametrize("task,name,overrides", CASES, ids=[c[0] for c in CASES])
def test_round_trip(tmp_path, task, name, overrides):
    hp = resolve_hyperparameters(task, {"model_name": name, **overrides})
    pretrained_layout = task == SEGMENTATION  # frozen BatchNorm must come back as frozen BatchNorm
    model = build_model(name, task, len(LABELS), pretrained=pretrained_layout, hp=hp, fetch_weights=False).eval()
    save_model_folder(tmp_path / "model", model, make_manifest(task, name, LABELS, hp))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted([WEIGHTS, MANIFEST])

    loaded, manifest = load_model_folder(tmp_path / "model")
    assert not loaded.training
    assert manifest["labels"] == LABELS and manifest["model_name"] == name and manifest["task"] == task
    assert manifest["build"] == {"pretrained": pretrained_layout}
    before = _outputs(model, task)
    _assert_same(before, _outputs(loaded, task))
    if task == SEGMENTATION:
        assert before[0]["masks"].shape[1:] == (1, 64, 80)  # per-instance masks at the input's size


def test_manifest_sections():
    hp = resolve_hyperparameters(SEGMENTATION, {"tile_grid_size": "3x2"})
    manifest = make_manifest(SEGMENTATION, hp["model_name"], LABELS, hp)
    assert manifest["format_version"] == 1
    assert manifest["preprocessing"] == {"min_size": 600, "max_size": 1333, "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225]}
    assert manifest["inference"] == {"box_score_threshold": 0.3, "nms_iou_threshold": 0.5,
                                     "box_detections_per_image": 100, "tile_grid_size": [3, 2],
                                     "tile_overlap_ratio": 0.25, "tile_predictions_nms_threshold": 0.25,
                                     "mask_pixel_score_threshold": 0.5, "max_number_of_polygon_points": 100,
                                     "export_as_image": False, "image_type": "jpg"}
    assert manifest["hyperparameters"]["tile_grid_size"] == [3, 2]
    assert {"visionml", "torch", "torchvision"} <= set(manifest["versions"])
    cls = make_manifest(MULTICLASS, "resnet18", LABELS, resolve_hyperparameters(MULTICLASS, {}))
    assert cls["preprocessing"] == {"resize_size": 256, "crop_size": 224, "mean": [0.485, 0.456, 0.406],
                                    "std": [0.229, 0.224, 0.225]}
    json.dumps(manifest)  # plain JSON all the way down


@pytest.fixture
def folder(tmp_path):
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "mobilenet_v3_small"})
    model = build_model("mobilenet_v3_small", MULTICLASS, 2, pretrained=False, hp=hp)
    return save_model_folder(tmp_path / "model", model, make_manifest(MULTICLASS, "mobilenet_v3_small",
                                                                      ["a", "b"], hp))


def test_missing_folder(tmp_path):
    with pytest.raises(VisionMLError, match="no such model folder"):
        read_manifest(tmp_path / "nope")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(VisionMLError, match="visionml.json: not found"):
        read_manifest(tmp_path)


def test_garbled_manifest_names_the_line(folder):
    (folder / MANIFEST).write_text('{"format_version": 1,\n "task": \n')
    with pytest.raises(VisionMLError, match=r"visionml.json:3: not valid JSON"):
        load_model_folder(folder)


def test_newer_format_version_asks_for_an_upgrade(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(VisionMLError, match="format_version 2 is newer.*upgrade visionml"):
        load_model_folder(folder)


def test_labels_that_do_not_fit_the_weights(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "labels": ["a", "b", "c"]}))
    with pytest.raises(VisionMLError, match="do not fit a mobilenet_v3_small with 3 labels"):
        load_model_folder(folder)


def test_garbled_weights(folder):
    (folder / WEIGHTS).write_bytes(b"\x00not safetensors")
    with pytest.raises(VisionMLError, match="weights.safetensors: not a readable safetensors file"):
        load_model_folder(folder)


def test_missing_weights(folder):
    (folder / WEIGHTS).unlink()
    with pytest.raises(VisionMLError, match="weights.safetensors: not found"):
        load_model_folder(folder)


def test_save_leaves_no_temporary_files_and_overwrites(folder):
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "mobilenet_v3_small"})
    model = build_model("mobilenet_v3_small", MULTICLASS, 2, pretrained=False, hp=hp)
    save_model_folder(folder, model, make_manifest(MULTICLASS, "mobilenet_v3_small", ["x", "y"], hp))
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS, MANIFEST])
    assert read_manifest(folder)["labels"] == ["x", "y"]
