"""Issue 13 items 8-10: a damaged model folder fails loudly instead of answering NaN or allocating
gigabytes, and model files are readable by others as the umask says.

* item 8: the manifest records the SHA-256 of weights.safetensors and loading checks it (an older
  manifest without one still loads); a model whose outputs are not finite is refused.
* item 9: every manifest value goes through its hyperparameter's type and range at load.
* item 10: files are created with the user's umask (0644 under 022), not mkstemp's 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from visionml.cli import main
from visionml.modelio import MANIFEST, WEIGHTS

from tests.support import LABELS, free_port, make_untrained_model_folder

SMALL = {"validation_resize_size": 64, "validation_crop_size": 64}


@pytest.fixture(scope="module")
def source(model_folder):
    """The classifier the tests copy and damage (shared: never changed in place)."""
    return model_folder("image_classification", "mobilenet_v3_small", **SMALL)


@pytest.fixture(scope="module")
def detector(model_folder):
    return model_folder("image_object_detection")


@pytest.fixture()
def model_dir(source, tmp_path):
    """A fresh copy of the classifier to damage."""
    return shutil.copytree(source, tmp_path / "model")


@pytest.fixture()
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "image.png"
    Image.new("RGB", (80, 60), (200, 30, 30)).save(path)
    return path


def edit_manifest(folder, change) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def predict(folder, image, capsys) -> tuple[int, str, str]:
    code = main(["predict", "--model", str(folder), str(image)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# ---- item 8: damaged weights, non-finite outputs ----

def test_the_manifest_records_the_weights_sha256(model_dir):
    import hashlib

    recorded = json.loads((model_dir / MANIFEST).read_text())["sha256"][WEIGHTS]
    assert recorded == hashlib.sha256((model_dir / WEIGHTS).read_bytes()).hexdigest()


def test_weights_overwritten_in_the_middle_are_refused(model_dir, image, capsys):
    weights = model_dir / WEIGHTS
    with open(weights, "r+b") as fp:  # what the issue did: 4 KB of garbage in the middle
        fp.seek(weights.stat().st_size // 2)
        fp.write(os.urandom(4096))
    code, out, err = predict(model_dir, image, capsys)
    assert code == 1 and out == ""
    assert f"{weights}: the file is damaged" in err
    assert "Copy the model folder again" in err


def test_a_manifest_without_the_hash_still_loads(model_dir, image, capsys):
    edit_manifest(model_dir, lambda m: m.pop("sha256"))  # as written before hashes were recorded
    code, out, _ = predict(model_dir, image, capsys)
    assert code == 0
    assert len(json.loads(out)["probs"]) == len(LABELS)


def _nan_head(model):
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.fill_(float("nan"))


def test_non_finite_outputs_are_refused(tmp_path, image, capsys):
    folder = make_untrained_model_folder(tmp_path / "nan", "image_classification", "mobilenet_v3_small", LABELS,
                                         SMALL, adjust=_nan_head)
    code, out, err = predict(folder, image, capsys)
    assert code == 1 and out == ""
    assert "the model's output is not finite (NaN or infinity)" in err
    assert "null" not in out


# ---- item 9: manifest values range-checked at load ----

@pytest.mark.parametrize("field, value, expected", [
    (("preprocessing", "crop_size"), 100000, "preprocessing.crop_size: 100000 is not valid: it must be an integer "
                                             "in [1, 4096]"),
    (("preprocessing", "resize_size"), -3, "preprocessing.resize_size: -3 is not valid"),
    (("preprocessing", "std"), [0, 0, 0], "preprocessing.std: [0, 0, 0] must be 3 finite numbers"),
    (("hyperparameters", "validation_batch_size"), "many", "hyperparameters.validation_batch_size: 'many' is not valid"),
    (("hyperparameters", "learning_rate"), 7, "hyperparameters.learning_rate: 7 is not valid"),
])
def test_out_of_range_manifest_values_are_refused_naming_the_field(model_dir, image, capsys, field, value, expected):
    edit_manifest(model_dir, lambda m: m[field[0]].__setitem__(field[1], value))
    code, out, err = predict(model_dir, image, capsys)
    assert code == 1 and out == ""
    assert f"{model_dir / MANIFEST}: {expected}" in err


@pytest.mark.parametrize("field, value, expected", [
    (("preprocessing", "min_size"), 100000, "preprocessing.min_size: 100000 is not valid: it must be an integer "
                                            "in [1, 8192]"),
    (("inference", "box_score_threshold"), 5, "inference.box_score_threshold: 5 is not valid"),
    (("inference", "box_detections_per_image"), 0, "inference.box_detections_per_image: 0 is not valid"),
])
def test_out_of_range_detector_values_are_refused(detector, tmp_path, image, capsys, field, value, expected):
    folder = shutil.copytree(detector, tmp_path / "detector")
    edit_manifest(folder, lambda m: m[field[0]].__setitem__(field[1], value))
    code, _, err = predict(folder, image, capsys)
    assert code == 1
    assert f"{folder / MANIFEST}: {expected}" in err


def test_serve_refuses_to_start_on_a_bad_manifest(model_dir):
    edit_manifest(model_dir, lambda m: m["preprocessing"].__setitem__("crop_size", 100000))
    done = subprocess.run([sys.executable, "-m", "visionml", "serve", "--model", str(model_dir), "--port",
                           str(free_port())], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr
    assert "preprocessing.crop_size: 100000 is not valid" in done.stderr


# ---- item 10: the umask ----

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_model_and_output_files_follow_the_umask(tmp_path, source, image, umask, mode, capsys):
    previous = os.umask(umask)
    try:
        folder = make_untrained_model_folder(tmp_path / "model", "image_classification", "mobilenet_v3_small",
                                             LABELS, SMALL)
        assert main(["predict", "--model", str(source), str(image), "--output", str(tmp_path / "preds.jsonl")]) == 0
    finally:
        os.umask(previous)
    written = [folder / MANIFEST, folder / WEIGHTS, tmp_path / "preds.jsonl"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}
