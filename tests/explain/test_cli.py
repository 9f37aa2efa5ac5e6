"""`visionml explain` on a real model folder (saved as `visionml train` saves one)."""

import numpy as np
import pytest
from PIL import Image

from visionml.cli import main
from visionml.commands.explain import ALGORITHMS
from visionml.explain import XAI_ALGORITHMS
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL

from .helpers import LABELS


@pytest.fixture(scope="module")
def folders(model_folder):
    return {task: model_folder(task, labels=LABELS) for task in (MULTICLASS, MULTILABEL)}


@pytest.fixture()
def image_file(tmp_path):
    from skimage import data

    path = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).resize((150, 100)).save(path)
    return path


def test_writes_png_and_attributions(folders, image_file, tmp_path, capsys):
    png, npy = tmp_path / "out" / "viz.png", tmp_path / "out" / "attr.npy"
    code = main(["explain", "--model", str(folders[MULTICLASS]), str(image_file), "--algorithm",
                 "integrated_gradients", "--output", str(png), "--attributions", str(npy), "--set", "n_steps=8"])
    assert code == 0
    assert Image.open(png).format == "PNG"
    attribution = np.load(npy)
    assert attribution.shape == (3, 64, 64) and attribution.dtype == np.float32
    assert np.isfinite(attribution).all() and np.abs(attribution).sum() > 0
    label, prob, path = capsys.readouterr().out.splitlines()[0].split("\t")
    assert label in LABELS and 0 < float(prob) <= 1 and path == str(png)
    assert not list(png.parent.glob(".*.tmp"))  # the temporary files were renamed away


def test_default_output_is_named_after_image_and_algorithm(folders, image_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--model", str(folders[MULTICLASS]), str(image_file), "--set", "n_steps=4"]) == 0
    Image.open(tmp_path / "cat.xrai.png").verify()


def test_multilabel_writes_one_png_per_class(folders, image_file, tmp_path, capsys):
    png, npy = tmp_path / "viz.png", tmp_path / "attr.npy"
    assert main(["explain", "--model", str(folders[MULTILABEL]), str(image_file), "--algorithm", "guided_backprop",
                 "--set", "confidence_score_threshold_multilabel=0", "-o", str(png), "--attributions", str(npy)]) == 0
    written = sorted(p.name for p in tmp_path.glob("viz.*.png"))
    assert written == ["viz.can.png", "viz.carton.png", "viz.milk_bottle.png", "viz.water_bottle.png"]
    assert np.load(npy).shape == (4, 3, 64, 64)
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_bad_parameter_exits_1_naming_valid_values(folders, image_file, capsys):
    assert main(["explain", "--model", str(folders[MULTICLASS]), str(image_file), "--set", "n_steps=0"]) == 1
    assert "n_steps" in capsys.readouterr().err
    assert main(["explain", "--model", str(folders[MULTICLASS]), str(image_file), "--set", "nsteps"]) == 2


def test_vit_guided_gradcam_is_a_clear_error(model_folder, image_file, capsys):
    folder = model_folder(MULTICLASS, "vits16r224", labels=LABELS)  # timm ViT-S: quick to build
    assert main(["explain", "--model", str(folder), str(image_file), "--algorithm", "guided_gradcam"]) == 1
    err = capsys.readouterr().err
    assert "convolutional layer" in err and "vits16r224" in err


def test_detection_model_is_refused(model_folder, image_file, capsys):
    folder = model_folder(DETECTION)
    assert main(["explain", "--model", str(folder), str(image_file)]) == 1
    assert "classification" in capsys.readouterr().err


def test_cli_choices_are_the_library_algorithms():
    assert ALGORITHMS == XAI_ALGORITHMS
