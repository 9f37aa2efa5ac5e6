"""What `visionml predict` writes beside its JSON lines, as Azure's batch scoring offers it (issue 20):
segmentation masks as image files (item 5) and the predictions as a labeled data set that
`visionml validate` accepts and `visionml train` trains on (item 6). Each file is read back."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest
from PIL import Image

from visionml.cli import main
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from tests.support import LABELS, image_bytes, train_args


def read_lines(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture()
def images(tmp_path):
    """Three images inside the data folder, two of them with the same file name in different folders."""
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    paths = [root / "a" / "photo.jpg", root / "b" / "photo.jpg", root / "b" / "other.png"]
    for seed, path in enumerate(paths):
        path.write_bytes(image_bytes(width=120 + 8 * seed, height=90, fmt="PNG" if path.suffix == ".png" else "JPEG",
                                     seed=seed))
    return paths


MASK_NAME = re.compile(r"(?P<root>.+)_(?P<index>\d+)_label_(?P<label>.+)_conf_(?P<conf>\d+)\.(?P<ext>png|jpg|bmp)$")


@pytest.mark.parametrize("image_type", ["png", "bmp"])
def test_masks_written_as_image_files_one_per_instance(model_dirs, predictors, images, tmp_path, capsys,
                                                       image_type):
    out = tmp_path / "out" / "preds.jsonl"
    out.parent.mkdir()
    code = main(["predict", "--model", str(model_dirs[SEGMENTATION]), *map(str, images), "--output", str(out),
                 "--set", "export_as_image=true", "--set", f"image_type={image_type}"])
    assert code == 0
    rows = read_lines(out)
    raws = predictors[SEGMENTATION].raw_predict([Image.open(p).convert("RGB") for p in images])
    files = sorted((out.parent / "masks").rglob("*.*"))
    assert len(files) == sum(len(row["boxes"]) for row in rows) > 0
    assert f"{len(files)} mask image(s)" in capsys.readouterr().err
    roots = {"photo": 0, "photo_2": 1, "other": 2}  # a second photo.jpg does not overwrite the first's masks
    seen = set()
    for path in files:
        match = MASK_NAME.match(path.name)
        assert match, path.name
        assert path.parent == out.parent / "masks" / match["root"] / match["label"]
        row, raw = rows[roots[match["root"]]], raws[roots[match["root"]]]
        index = int(match["index"])
        box = row["boxes"][index]
        assert match["label"] == box["label"] and match["ext"] == image_type
        assert match["conf"] == str(box["score"]).replace(".", "")[:4]
        with Image.open(path) as mask:
            assert mask.mode == "L" and mask.size == Image.open(images[roots[match["root"]]]).size
            pixels = np.asarray(mask)
        assert set(np.unique(pixels)) <= {0, 255}
        np.testing.assert_array_equal(pixels == 255, np.asarray(raw["masks"][index], dtype=bool))
        seen.add((match["root"], index))
    assert len(seen) == len(files)


def test_export_as_image_needs_an_output_file_and_a_segmentation_model(model_dirs, images, capsys):
    code = main(["predict", "--model", str(model_dirs[SEGMENTATION]), str(images[0]), "--set", "export_as_image=true"])
    assert code == 2 and "pass --output" in capsys.readouterr().err
    code = main(["predict", "--model", str(model_dirs[DETECTION]), str(images[0]), "--set", "export_as_image=true"])
    assert code != 0 and "export_as_image" in capsys.readouterr().err


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL, DETECTION, SEGMENTATION])
def test_labeled_dataset_is_training_data_that_validate_accepts(model_dirs, images, tmp_path, capsys, task):
    labeled = images[0].parent.parent / "labeled.jsonl"  # beside the images: image_url relative to it
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model_dirs[task]), *map(str, images), "--output", str(out),
                 "--labeled-dataset", str(labeled)]) == 0
    lines, preds = read_lines(labeled), read_lines(out)
    assert [line["image_url"] for line in lines] == ["a/photo.jpg", "b/photo.jpg", "b/other.png"]
    for line, pred in zip(lines, preds):
        if task == MULTICLASS:
            best = int(np.argmax(pred["probs"]))
            assert (line["label"], line["label_confidence"]) == (LABELS[best], pred["probs"][best])
        elif task == MULTILABEL:
            chosen = [i for i, p in enumerate(pred["probs"]) if p > 0.5]
            assert line["label"] == [LABELS[i] for i in chosen]
            assert line["label_confidence"] == [pred["probs"][i] for i in chosen]
        else:
            kept = [b for b in pred["boxes"] if task == DETECTION or b["polygon"]]
            assert line["label_confidence"] == [b["score"] for b in kept]
            assert [{k: o[k] for k in ("topX", "topY", "bottomX", "bottomY")} for o in line["label"]] == [
                b["box"] for b in kept]
            assert [o["label"] for o in line["label"]] == [b["label"] for b in kept]
            if task == SEGMENTATION:
                assert [o["polygon"] for o in line["label"]] == [b["polygon"] for b in kept]
    capsys.readouterr()
    code = main(["validate", str(labeled), "--task", task])
    assert code == 0, capsys.readouterr()


def test_labeled_dataset_trains_a_model(model_dirs, images, tmp_path):
    labeled = images[0].parent.parent / "labeled.jsonl"
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), *map(str, images),
                 "--labeled-dataset", str(labeled)]) == 0
    run = tmp_path / "run"
    assert main(train_args(MULTICLASS, {"train": labeled, "val": labeled}, run)) == 0
    assert (run / "model" / "visionml.json").is_file()


def test_labeled_dataset_may_not_overwrite_the_predictions(model_dirs, images, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    code = main(["predict", "--model", str(model_dirs[MULTICLASS]), str(images[0]), "--output", str(out),
                 "--labeled-dataset", str(out)])
    assert code == 2 and "--labeled-dataset" in capsys.readouterr().err
    assert not out.exists()


def test_featurize_writes_one_vector_per_image_and_refuses_a_detector(model_dirs, predictors, images, tmp_path,
                                                                      capsys):
    out = tmp_path / "features.jsonl"
    assert main(["featurize", "--model", str(model_dirs[MULTILABEL]), str(images[0].parent.parent), "-o", str(out),
                 "--batch-size", "2"]) == 0
    lines = read_lines(out)
    assert [line["filename"] for line in lines] == [str(p) for p in sorted(images)]
    expected = predictors[MULTILABEL].features([Image.open(p).convert("RGB") for p in sorted(images)])
    for line, vector in zip(lines, expected):
        assert set(line) == {"filename", "feature_vector"} and len(line["feature_vector"]) == 512
        np.testing.assert_allclose(line["feature_vector"], vector, rtol=1e-5, atol=1e-6)
    refused = tmp_path / "refused.jsonl"
    capsys.readouterr()
    assert main(["featurize", "--model", str(model_dirs[DETECTION]), str(images[0]), "-o", str(refused)]) == 1
    assert "classification" in capsys.readouterr().err and not refused.exists()
