"""`--backend openvino` (issue 21, item 3): the exported model.onnx of each task, run by OpenVINO,
answers as the onnx backend does; without the extra, the error names the install line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

import visionml
from visionml.cli import main
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from .helpers import LOW_THRESHOLD, assert_same_detections, mask_band

pytest.importorskip("openvino", reason="the openvino extra (make setup installs it)")


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_classifiers_answer_as_onnxruntime(onnx_dirs, sample_images, task):
    onnx_out = visionml.load_model(onnx_dirs[task], backend="onnx").predict(sample_images)
    openvino_out = visionml.load_model(onnx_dirs[task], backend="openvino").predict(sample_images)
    assert len(openvino_out) == len(sample_images)
    for a, b in zip(onnx_out, openvino_out):
        assert a["filename"] == b["filename"] and a["labels"] == b["labels"]
        np.testing.assert_allclose(b["probs"], a["probs"], atol=1e-4, rtol=0)
    assert len({tuple(np.round(o["probs"], 6)) for o in openvino_out}) > 1  # the images really differ


def test_detector_answers_as_onnxruntime(onnx_dirs, sample_images):
    images = sample_images[:2]
    onnx_out = visionml.load_model(onnx_dirs[DETECTION], backend="onnx", **LOW_THRESHOLD).predict(images)
    openvino_out = visionml.load_model(onnx_dirs[DETECTION], backend="openvino", **LOW_THRESHOLD).predict(images)
    assert sum(assert_same_detections(a, b) for a, b in zip(onnx_out, openvino_out)) >= len(images)


def test_segmentation_answers_as_onnxruntime_through_the_cli(onnx_dirs, sample_images, tmp_path):
    rows = {}
    for backend in ("onnx", "openvino"):
        out = tmp_path / f"{backend}.jsonl"
        assert main(["predict", "--model", str(onnx_dirs[SEGMENTATION]), "--backend", backend,
                     *map(str, sample_images), "--set", "box_score_threshold=0.05", "--output", str(out)]) == 0
        rows[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    sizes = json.loads((onnx_dirs[SEGMENTATION] / "visionml.json").read_text())["preprocessing"]
    matched = 0
    for path, a, b in zip(sample_images, rows["onnx"], rows["openvino"]):
        size = Image.open(path).size
        band = mask_band(size, sizes["min_size"], sizes["max_size"])
        matched += assert_same_detections(a, b, polygons=True, size=size, band=band)
    assert matched >= len(sample_images)


def test_a_gpu_is_refused_with_what_to_use(onnx_dirs, sample_images, tmp_path, capsys):
    assert main(["predict", "--model", str(onnx_dirs[MULTICLASS]), "--backend", "openvino", "--device", "cuda",
                 str(sample_images[0]), "--output", str(tmp_path / "unused.jsonl")]) == 2
    assert "OpenVINO on the CPU only" in capsys.readouterr().err


def test_without_openvino_the_error_names_the_extra(onnx_dirs, sample_images, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert main(["predict", "--model", str(onnx_dirs[MULTICLASS]), "--backend", "openvino", str(sample_images[0]),
                 "--output", str(tmp_path / "unused.jsonl")]) == 2
    assert not (tmp_path / "unused.jsonl").exists()
    assert "pip install 'visionml[openvino]'" in capsys.readouterr().err
