"""Issue 20 item 1: the client code of Azure's doc "Make predictions with ONNX on computer vision
models from AutoML" (tests/export/azure_client.py, the doc's steps for each task) runs on what
`visionml export --format onnx` writes and gets the answers `visionml predict --backend onnx`
writes for the same folder: probabilities within 1e-3 and the same top class, the same box
labels, boxes within 1e-4 of the image, masks close to its polygons.

The detection and segmentation images are at the graph's input size, so that the client's PIL resize and visionml's
torchvision-style resize (which would differ by a resampling filter) are both the identity and
the comparison is exact; the torch-parity tests (test_export_onnx.py) cover other sizes, and
test_export_onnx_detections.py runs the client on RetinaNet's and SSDlite's order of outputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from visionml.cli import main
from visionml.geometry import polygon_norm_to_abs, polygons_abs_to_mask
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import LABELS

from . import azure_client
from .azure_client import assert_client_answers, assert_client_probabilities


def _predict(folder, images, tmp_path, *settings) -> list[dict]:
    """`visionml predict --backend onnx` on ``images``: its rows in input order."""
    out = tmp_path / f"preds-{len(list(tmp_path.iterdir()))}.jsonl"
    assert main(["predict", "--model", str(folder), "--backend", "onnx", *map(str, images), "-o", str(out),
                 *settings]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["filename"] for r in rows] == [str(p) for p in images]
    return rows


def _export(model_dir, out, *arguments):
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "-o", str(out), *arguments]) == 0
    return out


@pytest.fixture(scope="module")
def graph_size_images(sample_images, tmp_path_factory):
    """{(width, height): sample images resized to that size}, saved losslessly."""
    root = tmp_path_factory.mktemp("graph-size")
    out = {}
    for size in [(160, 120), (128, 96)]:
        out[size] = []
        for i, path in enumerate(sample_images[:2]):
            target = root / f"{size[0]}x{size[1]}-{i}.png"
            Image.open(path).convert("RGB").resize(size, Image.BILINEAR).save(target)
            out[size].append(target)
    return out


# -- classification ---------------------------------------------------------------------------

@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_the_doc_classification_client_gets_visionml_s_probabilities(onnx_dirs, sample_images, task, tmp_path):
    folder = onnx_dirs[task]
    classes, session = azure_client.open_model(folder)
    assert classes == LABELS
    (source,), (output,) = session.get_inputs(), session.get_outputs()
    assert (source.name, source.shape, output.name, output.shape) == ("input1", ["batch", 3, 64, 64],
                                                                      "output1", ["batch", 4])
    resize = json.loads((folder / "visionml.json").read_text())["preprocessing"]["resize_size"]
    probabilities, _ = azure_client.classify(folder, sample_images, resize, multilabel=task == MULTILABEL)
    rows = _predict(folder, sample_images, tmp_path)
    assert probabilities.shape == (len(sample_images), len(LABELS))  # one run, a batch of three
    assert_client_probabilities(probabilities, rows)
    # The graph returns logits: the client's softmax is what makes a multi-class answer sum to 1.
    logits = session.run(None, {"input1": np.zeros((1, 3, 64, 64), np.float32)})[0]
    if task == MULTICLASS:
        assert abs(float(np.exp(logits).sum()) - 1) > 1e-3
        assert np.allclose(probabilities.sum(axis=1), 1)


def test_enable_onnx_normalization_takes_0_255_pixels(model_dirs, onnx_dirs, sample_images, tmp_path):
    """`--set enable_onnx_normalization=true`: the client skips the normalisation and feeds the
    pixels as they are; the answers are the normalised graph's."""
    folder = _export(model_dirs[MULTICLASS], tmp_path / "raw", "--set", "enable_onnx_normalization=true")
    manifest = json.loads((folder / "visionml.json").read_text())
    assert manifest["onnx"]["enable_onnx_normalization"] is True and manifest["onnx"]["input"]["pixels"] == "0-255"
    resize = manifest["preprocessing"]["resize_size"]
    raw, _ = azure_client.classify(folder, sample_images, resize, multilabel=False, normalise=False)
    normalised, _ = azure_client.classify(onnx_dirs[MULTICLASS], sample_images, resize, multilabel=False)
    np.testing.assert_allclose(raw, normalised, atol=1e-5, rtol=0)
    assert_client_probabilities(raw, _predict(folder, sample_images, tmp_path))


def test_a_model_trained_with_enable_onnx_normalization_exports_0_255_input(model_folder, sample_images, tmp_path):
    """The training hyperparameter (as Azure's job sets it) is what the export follows without a
    --set; --set enable_onnx_normalization=false overrides it."""
    model_dir = model_folder(MULTICLASS, enable_onnx_normalization=True)
    folder = _export(model_dir, tmp_path / "raw")
    manifest = json.loads((folder / "visionml.json").read_text())
    assert manifest["onnx"]["enable_onnx_normalization"] is True
    resize = manifest["preprocessing"]["resize_size"]
    raw, _ = azure_client.classify(folder, sample_images, resize, multilabel=False, normalise=False)
    assert_client_probabilities(raw, _predict(folder, sample_images, tmp_path))
    plain = _export(model_dir, tmp_path / "plain", "--set", "enable_onnx_normalization=false")
    assert json.loads((plain / "visionml.json").read_text())["onnx"]["enable_onnx_normalization"] is False
    normalised, _ = azure_client.classify(plain, sample_images, resize, multilabel=False)
    np.testing.assert_allclose(raw, normalised, atol=1e-5, rtol=0)


# -- object detection ---------------------------------------------------------------------------

def test_the_doc_detection_client_gets_visionml_s_boxes(onnx_dirs, graph_size_images, tmp_path):
    folder = onnx_dirs[DETECTION]
    classes, session = azure_client.open_model(folder)
    assert classes == ["--bg--", *LABELS]
    assert session.get_inputs()[0].name == "input" and session.get_inputs()[0].shape == [1, 3, 120, 160]
    assert [o.name for o in session.get_outputs()] == ["boxes", "labels", "scores"]  # Faster R-CNN's order
    images = graph_size_images[(160, 120)]
    rows = _predict(folder, images, tmp_path, "--set", "box_score_threshold=0.05")
    for image, row in zip(images, rows):  # batch 1: one image per run, as the doc's client at batch_size 1
        (client,) = azure_client.detect(folder, [image], score_threshold=0.05)
        assert_client_answers(client, row)


def test_a_batch_graph_as_azure_s_batch_generator_writes_it(model_dirs, onnx_dirs, graph_size_images, tmp_path):
    """`--batch-size 2` (Azure's generator's batch_size), here with 0-255 input: one run takes
    two images and answers with boxes_0, labels_0, scores_0, boxes_1, ...; the answers are the
    batch-1 graph's, and visionml predict runs it on three images (the last run filled up)."""
    folder = _export(model_dirs[DETECTION], tmp_path / "batch", "--batch-size", "2",
                     "--set", "enable_onnx_normalization=true")
    graph = onnx.load(str(folder / "model.onnx"))
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 120, 160]
    assert [o.name for o in graph.graph.output] == ["boxes_0", "labels_0", "scores_0",
                                                    "boxes_1", "labels_1", "scores_1"]
    images = graph_size_images[(160, 120)]
    client = azure_client.detect(folder, images, score_threshold=0.05, normalise=False)
    rows = _predict(folder, [*images, images[0]], tmp_path, "--set", "box_score_threshold=0.05")
    single = _predict(onnx_dirs[DETECTION], images, tmp_path, "--set", "box_score_threshold=0.05")
    for answer, row, one in zip(client, rows, single):
        assert_client_answers(answer, row)
        assert_client_answers(answer, one)
    assert rows[2]["boxes"] == rows[0]["boxes"]


# -- instance segmentation --------------------------------------------------------------------

def _polygon_mask(box: dict, width: int, height: int) -> np.ndarray:
    return polygons_abs_to_mask(polygon_norm_to_abs(box["polygon"], width, height), height, width)


def test_the_doc_segmentation_client_gets_visionml_s_boxes_and_masks(model_dirs, graph_size_images, tmp_path):
    """Mask R-CNN at batch 2: input [2, channel, height, width] of any size, four outputs per image;
    the client resizes to the size the model was trained at (here the images' own) and reads
    one mask per box at the input's size, which it resizes to the image and cuts at 0.5."""
    folder = _export(model_dirs[SEGMENTATION], tmp_path / "segmentation", "--batch-size", "2")
    classes, session = azure_client.open_model(folder)
    assert classes == ["--bg--", *LABELS]
    assert session.get_inputs()[0].shape == [2, "channel", "height", "width"]
    assert [o.name for o in session.get_outputs()][:4] == ["boxes_0", "labels_0", "scores_0", "masks_0"]
    images = graph_size_images[(128, 96)]
    client = azure_client.segment(folder, images, resize_height=96, resize_width=128, score_threshold=0.05)
    rows = _predict(folder, images, tmp_path, "--set", "box_score_threshold=0.05")
    for answer, row in zip(client, rows):
        assert_client_answers([{k: v for k, v in b.items() if k != "mask"} for b in answer], row)
        ours = sorted(row["boxes"], key=lambda b: -b["score"])
        for a, b in zip(sorted(answer, key=lambda b: -b["score"]), ours):
            polygon = _polygon_mask(b, 128, 96)
            union = np.logical_or(a["mask"], polygon).sum()
            # visionml answers with polygons (at most max_number_of_polygon_points): close, not equal
            assert union > 0 and np.logical_and(a["mask"], polygon).sum() / union >= 0.85
