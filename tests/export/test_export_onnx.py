"""ONNX export and the onnx backend: files, graph checks, parity with the torch backend per task,
settings fixed in the graph, the CLI and the REST endpoint."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import pytest

import visionml
from visionml.cli import main
from visionml.errors import UsageError, VisionMLError
from visionml.predict import Predictor
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS

from tests.support import LABELS, ThreadServer

from .helpers import LOW_THRESHOLD, assert_same_detections, mask_band


# -- the exported folder ---------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_export_writes_model_labels_and_manifest(onnx_dirs, model_dirs, task):
    """Azure's layout (issue 20): classification input1 -> output1 and the class list; detectors
    input -> boxes, labels, scores[, masks] and labels.json beginning with --bg--, so that a
    graph's label k is labels.json[k]."""
    out = onnx_dirs[task]
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "model.onnx", "visionml.json"]
    classifier = task in (MULTICLASS, MULTILABEL)
    assert json.loads((out / "labels.json").read_text()) == (LABELS if classifier else ["--bg--", *LABELS])
    manifest = json.loads((out / "visionml.json").read_text())
    source = json.loads((model_dirs[task] / "visionml.json").read_text())
    assert (manifest["task"], manifest["model_name"], manifest["labels"]) == (task, source["model_name"], LABELS)
    assert manifest["onnx"]["file"] == "model.onnx" and manifest["onnx"]["opset"] >= 11
    assert manifest["onnx"]["layout"] == "azure" and manifest["onnx"]["enable_onnx_normalization"] is False

    graph = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    names = [graph.graph.input[0].name, *(o.name for o in graph.graph.output)]
    if classifier:
        assert names == ["input1", "output1"]
        assert dims == ["batch", 3, 64, 64]  # dynamic batch, the manifest's crop
        assert manifest["onnx"]["fixed"] == {"validation_crop_size": 64}
        return
    fixed = manifest["onnx"]["fixed"]
    assert fixed["box_score_threshold"] == 0.0
    assert manifest["inference"] == source["inference"]  # thresholds still applied after the graph
    if task == DETECTION:
        assert names == ["input", "boxes", "labels", "scores"]
        # Resized and normalised already: what min_size 128 / max_size 160 make of a 4:3 image
        assert dims == [1, 3, 120, 160]
        assert (fixed["min_size"], fixed["max_size"]) == (source["preprocessing"]["min_size"],
                                                          source["preprocessing"]["max_size"])
    else:
        assert names == ["input", "boxes", "labels", "scores", "masks"]
        assert dims == [1, "channel", "height", "width"]  # any size: visionml resizes as torchvision does
        assert "min_size" not in fixed


@pytest.mark.parametrize("arguments, message", [
    (["--format", "onnx", "--batch-size", "0"], r"--batch-size 0: expected a whole number from 1 to 256"),
    (["--format", "onnx", "--height", "96"], r"--height/--width are for detectors.*validation_crop_size"),
    (["--format", "mlflow", "--batch-size", "2"], r"--batch-size: only for --format onnx"),
], ids=["batch-0", "classifier-height", "mlflow-batch"])
def test_export_refuses_input_sizes_it_cannot_honour(model_dirs, tmp_path, capsys, arguments, message):
    out = tmp_path / "out"
    assert main(["export", "--model", str(model_dirs[MULTICLASS]), "-o", str(out), *arguments]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


# -- parity with the torch backend -----------------------------------------------------------

@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_classification_probabilities_match_torch(model_dirs, onnx_dirs, sample_images, task):
    torch_out = visionml.load_model(model_dirs[task]).predict(sample_images)
    onnx_out = visionml.load_model(onnx_dirs[task], backend="onnx").predict(sample_images)  # one batch of 3
    assert len(onnx_out) == len(sample_images)
    for a, b in zip(torch_out, onnx_out):
        assert a["filename"] == b["filename"] and a["labels"] == b["labels"] == LABELS
        np.testing.assert_allclose(b["probs"], a["probs"], atol=1e-4, rtol=0)
    if task == MULTICLASS:
        assert abs(sum(onnx_out[0]["probs"]) - 1) < 1e-5
    assert len({tuple(np.round(o["probs"], 6)) for o in onnx_out}) > 1  # the images really differ


@pytest.mark.parametrize("overrides", [{}, LOW_THRESHOLD], ids=["manifest-threshold", "lowered-threshold"])
def test_detection_boxes_match_torch(model_dirs, onnx_dirs, sample_images, overrides):
    # The graph takes 160x120 images: the torch model's own resize of these 224x168 ones. (It
    # stretches an image of another aspect to 160x120, as Azure's client does: not the torch answer.)
    images = sample_images[:2]
    torch_out = visionml.load_model(model_dirs[DETECTION], **overrides).predict(images)
    onnx_out = visionml.load_model(onnx_dirs[DETECTION], backend="onnx", **overrides).predict(images)
    matched = sum(assert_same_detections(a, b) for a, b in zip(torch_out, onnx_out))
    assert matched >= len(images)  # there was something to compare on every image, or more


def test_segmentation_boxes_and_polygons_match_torch(model_dirs, onnx_dirs, sample_images):
    from PIL import Image

    torch_out = visionml.load_model(model_dirs[SEGMENTATION], **LOW_THRESHOLD).predict(sample_images)
    onnx_out = visionml.load_model(onnx_dirs[SEGMENTATION], backend="onnx", **LOW_THRESHOLD).predict(sample_images)
    sizes = json.loads((model_dirs[SEGMENTATION] / "visionml.json").read_text())["preprocessing"]
    matched = 0
    for path, a, b in zip(sample_images, torch_out, onnx_out):
        size = Image.open(path).size
        band = mask_band(size, sizes["min_size"], sizes["max_size"])
        matched += assert_same_detections(a, b, polygons=True, size=size, band=band)
    assert matched >= len(sample_images)
    assert all(box["polygon"] and len(box["polygon"][0]) >= 6 for box in onnx_out[0]["boxes"])


def test_a_higher_threshold_and_a_smaller_cap_apply_after_the_graph(model_dirs, onnx_dirs, sample_images):
    settings = {"box_score_threshold": "0.6", "box_detections_per_image": "3"}
    torch_out = visionml.load_model(model_dirs[DETECTION], **settings).predict(sample_images[:2])
    onnx_out = visionml.load_model(onnx_dirs[DETECTION], backend="onnx", **settings).predict(sample_images[:2])
    for a, b in zip(torch_out, onnx_out):
        assert_same_detections(a, b)
        assert len(b["boxes"]) <= 3 and all(x["score"] >= 0.6 for x in b["boxes"])


# -- settings the graph fixes ----------------------------------------------------------------

@pytest.mark.parametrize("task, overrides, message", [
    (DETECTION, {"nms_iou_threshold": "0.7"}, r"--set nms_iou_threshold=0.7"),
    (DETECTION, {"box_detections_per_image": "500"}, r"box_detections_per_image=500 \(the graph has 20\)"),
    (DETECTION, {"min_size": "200", "max_size": "300"}, r"--set min_size=200 --set max_size=300"),
    (MULTICLASS, {"validation_crop_size": "48"}, r"validation_crop_size=48 \(the graph has 64\)"),
])
def test_settings_fixed_in_the_graph_are_refused(onnx_dirs, task, overrides, message):
    with pytest.raises(UsageError, match=message) as info:
        Predictor.from_folder(onnx_dirs[task], backend="onnx", overrides=overrides)
    assert "visionml export" in str(info.value) and "--backend torch" in str(info.value)


def test_export_into_the_model_folder_with_new_settings(model_dirs, sample_images, tmp_path, capsys):
    """``-o MODEL_DIR`` adds the ONNX files beside the weights, so one folder serves both backends;
    ``--set`` fixes another crop in the graph and in the manifest both backends read."""
    folder = shutil.copytree(model_dirs[MULTICLASS], tmp_path / "model")
    settings = ["--set", "validation_resize_size=56", "--set", "validation_crop_size=48"]
    assert main(["export", "--model", str(folder), "--format", "onnx", "-o", str(folder), *settings]) == 0
    assert "model.onnx" in capsys.readouterr().err
    assert (folder / "weights.safetensors").is_file() and (folder / "model.onnx").is_file()
    manifest = json.loads((folder / "visionml.json").read_text())
    assert manifest["preprocessing"]["crop_size"] == 48 and manifest["preprocessing"]["resize_size"] == 56
    torch_model = visionml.load_model(folder)
    assert torch_model.settings["validation_crop_size"] == 48
    for a, b in zip(torch_model.predict(sample_images[:2]),
                    visionml.load_model(folder, backend="onnx").predict(sample_images[:2])):
        np.testing.assert_allclose(b["probs"], a["probs"], atol=1e-4, rtol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


# -- the CLI and the endpoint ----------------------------------------------------------------

def test_predict_cli_backend_onnx_writes_the_torch_answers(model_dirs, onnx_dirs, sample_images, tmp_path):
    files = [str(p) for p in sample_images[:2]]  # the graph's aspect (see test_detection_boxes_match_torch)
    for backend, folder in (("torch", model_dirs[DETECTION]), ("onnx", onnx_dirs[DETECTION])):
        assert main(["predict", "--model", str(folder), *files, "--backend", backend,
                     "--set", "box_score_threshold=0.05", "-o", str(tmp_path / f"{backend}.jsonl")]) == 0
    rows = {b: [json.loads(x) for x in (tmp_path / f"{b}.jsonl").read_text().splitlines()] for b in ("torch", "onnx")}
    assert [r["filename"] for r in rows["onnx"]] == files
    for a, b in zip(rows["torch"], rows["onnx"]):
        assert_same_detections(a, b)


def test_serve_with_the_onnx_backend_answers_score_requests(onnx_dirs, model_dirs, sample_images):
    import base64
    import httpx

    from visionml.serve import create_app

    predictor = Predictor.from_folder(onnx_dirs[MULTICLASS], backend="onnx")
    with ThreadServer(create_app(predictor)) as server:
        data = [base64.encodebytes(p.read_bytes()).decode() for p in sample_images[:2]]
        response = httpx.post(server.url + "/score",
                              json={"input_data": {"columns": ["image"], "data": data}}, timeout=60)
    assert response.status_code == 200, response.text
    expected = visionml.load_model(model_dirs[MULTICLASS]).predict([p.read_bytes() for p in sample_images[:2]])
    for a, b in zip(expected, response.json()):
        assert b["labels"] == LABELS
        np.testing.assert_allclose(b["probs"], a["probs"], atol=1e-4, rtol=0)


# -- errors ----------------------------------------------------------------------------------

def test_export_cli_errors(model_dirs, tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path / "nope"), "--format", "onnx", "-o", str(tmp_path / "o")]) == 1
    assert "no such model folder" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["export", "--model", str(model_dirs[MULTICLASS]), "--format", "onnx", "-o", str(a_file)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert main(["export", "--model", str(model_dirs[DETECTION]), "--format", "onnx", "-o", str(tmp_path / "o"),
                 "--set", "box_scor_threshold=0.5"]) == 2
    assert "box_score_threshold" in capsys.readouterr().err  # the close match is suggested
    with pytest.raises(SystemExit):
        main(["export", "--model", str(model_dirs[MULTICLASS]), "--format", "tflite", "-o", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_a_failed_check_leaves_nothing_behind(model_dirs, tmp_path, monkeypatch):
    import visionml.export.onnx as exporter

    def broken(*args):
        raise VisionMLError("model.onnx: onnxruntime's logits differ from PyTorch's")

    monkeypatch.setattr(exporter, "verify", broken)
    with pytest.raises(VisionMLError, match="differ"):
        exporter.export_onnx(model_dirs[MULTICLASS], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_onnx_backend_rejects_folders_it_cannot_run(onnx_dirs, model_dirs, tmp_path):
    with pytest.raises(VisionMLError, match="visionml export"):  # a model folder never exported
        Predictor.from_folder(model_dirs[MULTICLASS], backend="onnx")
    damaged = shutil.copytree(onnx_dirs[MULTICLASS], tmp_path / "damaged")
    (damaged / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(VisionMLError, match=r"damaged/model.onnx: the file is damaged"):  # its SHA-256
        Predictor.from_folder(damaged, backend="onnx")
    foreign = shutil.copytree(onnx_dirs[MULTICLASS], tmp_path / "foreign")
    manifest = json.loads((foreign / "visionml.json").read_text())
    del manifest["onnx"]
    (foreign / "visionml.json").write_text(json.dumps(manifest))
    with pytest.raises(VisionMLError, match="onnx: missing"):
        Predictor.from_folder(foreign, backend="onnx")
    earlier = shutil.copytree(onnx_dirs[DETECTION], tmp_path / "earlier")  # issue 9's layout: input "image"
    manifest = json.loads((earlier / "visionml.json").read_text())
    manifest["onnx"] = {"file": "model.onnx", "input": {"name": "image", "shape": [3, "height", "width"]}}
    (earlier / "visionml.json").write_text(json.dumps(manifest))
    with pytest.raises(VisionMLError, match=r"input 'image' of an earlier visionml.*export the model again"):
        Predictor.from_folder(earlier, backend="onnx")


def test_explanations_need_the_torch_backend(onnx_dirs, sample_images):
    predictor = Predictor.from_folder(onnx_dirs[MULTICLASS], backend="onnx")
    with pytest.raises(VisionMLError, match="torch backend"):
        predictor.predict(sample_images[:1], xai={"xai_algorithm": "integrated_gradients"})
