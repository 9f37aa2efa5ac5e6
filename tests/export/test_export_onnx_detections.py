"""The README's ONNX step on detectors that, as trained ones do, find objects on some images and
nothing on others (issue 13 item 4): the exported graph must answer as PyTorch on both kinds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from visionml.cli import main
from visionml.geometry import polygon_norm_to_abs, polygons_abs_to_mask
from visionml.tasks import SEGMENTATION

from . import azure_client
from .helpers import GATED, ONE_STAGE, assert_masks_close, mask_band

BOX_TOLERANCE = 1e-3  # of the image's width and height (the answers' boxes are normalised)
SCORE_TOLERANCE = 1e-3


def _read_rows(path) -> dict:
    return {row["filename"]: row for row in map(json.loads, path.read_text().splitlines())}


def _corners(box: dict) -> np.ndarray:
    return np.array([box["box"][k] for k in ("topX", "topY", "bottomX", "bottomY")])


def _mask(box: dict, size) -> np.ndarray:
    width, height = size
    return polygons_abs_to_mask(polygon_norm_to_abs(box["polygon"], width, height), height, width)


def assert_same_boxes(expected: list, got: list, size, polygons: dict | None) -> None:
    """One to one: each expected box has an answer with the same label, corners within
    BOX_TOLERANCE and score within SCORE_TOLERANCE; with ``polygons`` (the model's min_size and
    max_size), masks that differ only near their edges (helpers.mask_band)."""
    assert len(got) == len(expected)
    unused = list(got)
    for a in sorted(expected, key=lambda b: -b["score"]):
        close = [b for b in unused if b["label"] == a["label"] and abs(b["score"] - a["score"]) <= SCORE_TOLERANCE
                 and np.abs(_corners(b) - _corners(a)).max() <= BOX_TOLERANCE]
        assert close, f"no ONNX box matches {a['label']} {a['box']} {a['score']:.4f}"
        b = min(close, key=lambda b: np.abs(_corners(b) - _corners(a)).max())
        unused.remove(b)
        if polygons:
            assert_masks_close(_mask(a, size), _mask(b, size), mask_band(size, **polygons))


def _export_and_predict(model_dir, images, tmp_path, *settings) -> tuple[dict, dict, object]:
    """The README's commands: export, predict with --backend onnx; and predict with the torch
    backend for comparison. The two answers, by file name, and the exported folder."""
    exported = tmp_path / "exported" / "shapes-det-onnx"
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "-o", str(exported)]) == 0
    assert main(["predict", "--model", str(exported), "--backend", "onnx", str(images),
                 "--output", str(tmp_path / "onnx-preds.jsonl"), *settings]) == 0
    assert main(["predict", "--model", str(model_dir), str(images), "--output", str(tmp_path / "preds.jsonl"),
                 *settings]) == 0
    return _read_rows(tmp_path / "preds.jsonl"), _read_rows(tmp_path / "onnx-preds.jsonl"), exported


def _graph_takes_torch_s_input(exported, filename) -> bool:
    """Whether the exported graph sees what the torch model sees for this image: any image for
    a graph of any size (Mask R-CNN) or one the torch model stretches too (SSDlite's fixed
    320x320); for a fixed-size graph, an image the torch model's own resize (min_size/max_size,
    keeping the aspect) takes to exactly the graph's size. Other images are stretched to the
    graph's size, as Azure's ONNX client stretches them."""
    manifest = json.loads((exported / "visionml.json").read_text())
    resize, pre = manifest["onnx"]["input"]["resize"], manifest["preprocessing"]
    if resize["mode"] != "fixed" or pre.get("fixed_size"):
        return True
    width, height = Image.open(filename).size
    scale = min(pre["min_size"] / min(width, height), pre["max_size"] / max(width, height))
    return (int(height * scale), int(width * scale)) == (resize["height"], resize["width"])


@pytest.mark.parametrize("name", list(GATED))
def test_readme_export_then_predict_with_onnx_answers_as_torch(gated_detectors, detection_images, name, tmp_path):
    images, with_objects, without_objects = detection_images
    expected, got, exported = _export_and_predict(gated_detectors[name], images, tmp_path)
    assert sorted(got) == sorted(expected) == sorted(str(p) for p in [*with_objects, *without_objects])
    # What the model finds, as the fixture built it: boxes on the sample images, none elsewhere.
    assert all(expected[str(p)]["boxes"] for p in with_objects)
    assert not any(expected[str(p)]["boxes"] for p in without_objects)
    assert not any(got[str(p)]["boxes"] for p in without_objects)  # stretched or not
    compared = 0
    for filename, row in expected.items():
        if _graph_takes_torch_s_input(exported, filename):
            assert_same_boxes(row["boxes"], got[filename]["boxes"], Image.open(filename).size,
                              polygons=GATED[name][2] if GATED[name][0] == SEGMENTATION else None)
            compared += 1
    assert compared >= len(with_objects)


@pytest.mark.parametrize("name", list(ONE_STAGE))
def test_one_stage_detectors_export_and_answer_as_torch(one_stage_detectors, detection_images, name, tmp_path):
    """RetinaNet and SSDlite answer as torch, and Azure's client reads their outputs in their
    order (boxes, scores, labels), as the doc tells it to."""
    images, with_objects, _ = detection_images
    expected, got, exported = _export_and_predict(one_stage_detectors[name], images, tmp_path,
                                                  "--set", "box_score_threshold=0.05")
    assert sorted(got) == sorted(expected)
    assert any(row["boxes"] for row in expected.values())
    for filename, row in expected.items():
        if _graph_takes_torch_s_input(exported, filename):
            assert_same_boxes(row["boxes"], got[filename]["boxes"], Image.open(filename).size, polygons=None)

    classes, session = azure_client.open_model(exported)
    assert classes[0] == "--bg--" and [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels"]
    _, _, height, width = session.get_inputs()[0].shape
    at_size = tmp_path / "graph-size.png"  # no resize on either side: the answers are equal
    Image.open(with_objects[0]).convert("RGB").resize((width, height), Image.BILINEAR).save(at_size)
    (client,) = azure_client.detect(exported, [at_size], score_threshold=0.05)
    assert main(["predict", "--model", str(exported), "--backend", "onnx", str(at_size), "--set",
                 "box_score_threshold=0.05", "--output", str(tmp_path / "at-size.jsonl")]) == 0
    azure_client.assert_client_answers(client, _read_rows(tmp_path / "at-size.jsonl")[str(at_size)])


def test_a_retinanet_s_background_boxes_are_no_answer(one_stage_detectors, detection_images):
    """RetinaNet's head scores label 0, the background, like a class (the R-CNN and SSD heads
    skip it). visionml used to answer such a box as the last class (``labels[0 - 1]``), and the
    exported graph to hand it to Azure's client as ``--bg--``: neither answers one now."""
    import torch

    from visionml.predict import Predictor

    _, with_objects, _ = detection_images
    predictor = Predictor.from_folder(one_stage_detectors["retinanet_resnet50_fpn"],
                                      overrides={"box_score_threshold": "0.05"})
    pils = [Image.open(p).convert("RGB") for p in with_objects]
    with torch.no_grad():
        raw = predictor.model([predictor.preprocess(pil) for pil in pils])
    background = [int(((r["labels"] == 0) & (r["scores"] >= 0.05)).sum()) for r in raw]
    assert sum(background) > 0  # this model does score the background
    answers = predictor.predict(with_objects)
    for r, answer, bg in zip(raw, answers, background):
        assert len(answer["boxes"]) == int((r["scores"] >= 0.05).sum()) - bg


def test_a_graph_that_fails_without_proposals_is_refused_and_explained(gated_detectors, detection_images, tmp_path,
                                                                       monkeypatch, capsys):
    """Traced with boxes, torchvision's box decoder freezes its branch for "there are boxes" and
    the graph fails where the RPN proposes nothing. The exporter works around it; without the
    workaround its check must refuse the graph, and a graph that fails anyway (an export from an
    earlier visionml) makes predict say what to do instead of printing a traceback."""
    import contextlib

    import visionml.export.onnx as exporter
    import visionml.export.onnx_detector as detector_exporter

    model_dir = gated_detectors["fasterrcnn_mobilenet_v3_large_fpn"]
    monkeypatch.setattr(detector_exporter, "decode_any_count", lambda model: contextlib.nullcontext())
    out = tmp_path / "exported"
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "onnxruntime fails on check image 1" in err and "RegionProposalNetwork's score threshold" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []

    monkeypatch.setattr(exporter, "verify", lambda *args: None)
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "-o", str(out)]) == 0
    images, _, without_objects = detection_images
    assert main(["predict", "--model", str(out), "--backend", "onnx", str(without_objects[0]),
                 "--output", str(tmp_path / "preds.jsonl")]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'model.onnx'}: onnxruntime fails on a 150x210 image" in err
    assert "export the model again" in err and "Traceback" not in err


def test_the_export_check_tells_a_tie_from_a_broken_graph():
    """``detection_differences`` (the export's check) lets onnxruntime keep another of two
    overlapping boxes where a tie was broken the other way, and refuses missing or moved boxes."""
    from visionml.export.onnx import detection_differences

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (20, 2))
    torch_out = {"boxes": np.hstack([corners, corners + rng.uniform(5, 50, (20, 2))]).astype(np.float32),
                 "labels": rng.integers(1, 5, 20), "scores": np.sort(rng.uniform(0.01, 1, 20))[::-1].copy()}
    assert detection_differences(torch_out, dict(torch_out), size=150, cap=100) is None
    swapped = {k: v.copy() for k, v in torch_out.items()}
    swapped["boxes"][7] += 3  # one box of twenty replaced by a neighbour
    assert detection_differences(torch_out, swapped, size=150, cap=100) is None
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, int), "scores": np.zeros(0, np.float32)}
    assert "20 detections against 0" in detection_differences(torch_out, empty, size=150, cap=100)
    assert "0 detections against 20" in detection_differences(empty, torch_out, size=150, cap=100)
    moved = {**torch_out, "boxes": torch_out["boxes"] + 1}
    assert "has no match" in detection_differences(torch_out, moved, size=150, cap=100)
    relabelled = {**torch_out, "labels": torch_out["labels"] % 4 + 1}
    assert "has no match" in detection_differences(torch_out, relabelled, size=150, cap=100)
    assert detection_differences(empty, dict(empty), size=150, cap=100) is None
