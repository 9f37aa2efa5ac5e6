"""Issue 13 item 8 for ONNX exports: the exported manifest records the SHA-256 of model.onnx (not
the source's weights, which the export does not hold) and the onnx backend checks it before
opening the graph, so a damaged copy is refused instead of answering."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from PIL import Image

from visionml.cli import main
from visionml.modelio import MANIFEST

from tests.support import make_untrained_model_folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_integrity")
    model = make_untrained_model_folder(root / "model", "image_classification", "mobilenet_v3_small",
                                        ["circle", "square"], {"validation_resize_size": 64,
                                                               "validation_crop_size": 64})
    assert main(["export", "--model", str(model), "--format", "onnx", "-o", str(root / "onnx")]) == 0
    return root / "onnx"


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "image.png"
    Image.new("RGB", (80, 60), (200, 30, 30)).save(path)
    return path


def test_the_exported_manifest_records_the_graph_sha256(exported):
    recorded = json.loads((exported / MANIFEST).read_text())["sha256"]
    assert recorded == {"model.onnx": hashlib.sha256((exported / "model.onnx").read_bytes()).hexdigest()}


def test_a_graph_overwritten_in_the_middle_is_refused(exported, image, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(exported, tmp_path / "copy")
    assert main(["predict", "--model", str(copy), "--backend", "onnx", str(image)]) == 0
    capsys.readouterr()
    graph = copy / "model.onnx"
    with open(graph, "r+b") as fp:  # 4 KB of garbage in the middle, as a partial copy leaves
        fp.seek(graph.stat().st_size // 2)
        fp.write(os.urandom(4096))
    assert main(["predict", "--model", str(copy), "--backend", "onnx", str(image)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert f"{graph}: the file is damaged: its SHA-256 is" in err
    assert "export it again" in err


def test_an_export_without_the_hash_still_loads_and_a_broken_one_is_named(exported, image, tmp_path, capsys):
    """Exports written before the hash was recorded are trusted as before; a graph that is not one
    is then onnxruntime's error, naming the file."""
    import shutil

    copy = shutil.copytree(exported, tmp_path / "old")
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["sha256"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert main(["predict", "--model", str(copy), "--backend", "onnx", str(image)]) == 0
    capsys.readouterr()
    (copy / "model.onnx").write_bytes(b"not a protobuf")
    assert main(["predict", "--model", str(copy), "--backend", "onnx", str(image)]) == 1
    assert f"{copy / 'model.onnx'}: onnxruntime cannot load it" in capsys.readouterr().err
