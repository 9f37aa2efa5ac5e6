"""`visionml train` on data with the defects Azure's trainer tolerates (ignore_data_errors, Azure's
default): training keeps exactly the images and objects Azure keeps, RUN/data_report.json and
RUN/invalid_lines.jsonl name each drop by FILE:LINE, the terminal says what was left out;
ignore_data_errors=false stops before any work, and so does a class left with nothing usable."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.support import train_args
from visionml.cli import main
from visionml.train.loaders import load_data
from visionml.train.options import TrainOptions
from visionml.train.settings import settings_for


def _sample(tmp_path, capsys, task: str) -> dict:
    """`visionml sample-data --n 12` (10 training lines, 2 validation lines), tiny images."""
    out = tmp_path / "data"
    assert main(["sample-data", "--task", task, "-o", str(out), "--n", "12", "--size", "160x120"]) == 0
    capsys.readouterr()
    return {"train": out / "train.jsonl", "val": out / "val.jsonl", "images": out / "images"}


def _lines(path) -> list[dict]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def _write(path, lines) -> None:
    path.write_text("".join((text if isinstance(text, str) else json.dumps(text)) + "\n" for text in lines))


@pytest.fixture
def defective_detection(tmp_path, capsys):
    """Sample detection data with one of each defect Azure tolerates; returns (data, expected)."""
    data = _sample(tmp_path, capsys, "object-detection")
    (data["images"] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG at all")
    lines = _lines(data["train"])
    two = 7  # a line whose first box goes out of the image while its others stay
    objects = lines[two]["label"] if len(lines[two]["label"]) > 1 else lines[two]["label"] * 2
    rows = list(lines)
    rows[two] = dict(lines[two], label=[dict(objects[0], bottomX=1.5), *objects[1:]])
    rows[2] = dict(lines[2], label=[dict(o, topX=0.9, bottomX=0.1) for o in lines[2]["label"]])  # all inverted
    rows[3] = dict(lines[3], label=[dict(lines[3]["label"][0], isCrowd="yes"), *lines[3]["label"][1:]])
    rows[4] = dict(lines[4], image_details={"format": "jpg", "width": 999, "height": 999})
    rows += [dict(lines[5], image_url="images/gone.jpg"), dict(lines[5], image_url="images/broken.jpg"),
             dict(lines[0], label=lines[6]["label"]), "{not json"]
    _write(data["train"], rows)
    # What Azure's trainer keeps: every line but the inverted one, the missing and the broken image and
    # the bad JSON; the duplicate of line 1 adds its objects to line 1's image; one box of `two` goes.
    n = len(lines)
    kept = [entry for i, entry in enumerate(rows[:-1]) if i not in (2, n, n + 1)]
    expected = {"images": len({entry["image_url"] for entry in kept}),
                "objects": sum(len(entry["label"]) for entry in kept) - 1,
                "inverted": len(lines[2]["label"]),
                "lines": {"object": two + 1, "inverted": 3, "crowd": 4, "details": 5, "gone": n + 1, "broken": n + 2,
                          "duplicate": n + 3, "json": n + 4}}
    return data, expected


@pytest.mark.slow
def test_training_keeps_what_azure_keeps_and_reports_each_drop(defective_detection, tmp_path, capsys):
    data, expected = defective_detection
    train, at = data["train"], expected["lines"]
    run = tmp_path / "run"
    assert main(train_args("object-detection", data, run)) == 0
    err = capsys.readouterr().err
    assert f"on {expected['images']} images (2 for validation)" in err

    report = json.loads((run / "data_report.json").read_text())
    assert report["ignore_data_errors"] is True
    assert (report["training"]["images"], report["training"]["objects"]) == (expected["images"], expected["objects"])
    assert report["left_out"] == {"images": 4, "objects": 1, "segments": 0, "kept": 1, "fatal": 0}
    found = [(p["source"], p["line"], p["field"], p["training"]) for p in report["problems"]]
    source = str(train)
    assert found == sorted([
        (source, at["object"], "label[0].bottomX", "dropped object"),
        *[(source, at["inverted"], f"label[{i}]", "dropped object") for i in range(expected["inverted"])],
        (source, at["inverted"], "label", "dropped image"),
        (source, at["crowd"], "label[0].isCrowd", "kept"),
        (source, at["gone"], "image_url", "dropped image"),
        (source, at["broken"], "image_url", "dropped image"),
        (source, at["json"], "line", "dropped image"),
    ], key=lambda p: p[1])
    assert all(p["problem"].startswith(f"{source}:{p['line']}: {p['field']}: ") for p in report["problems"])
    assert [(w["line"], w["kind"]) for w in report["warnings"]] == [
        (at["details"], "image_details differs from the image"), (at["duplicate"], "duplicate image_url merged")]

    invalid = [json.loads(text) for text in (run / "invalid_lines.jsonl").read_text().splitlines()]
    assert [entry["line"] for entry in invalid] == sorted({at["object"], at["inverted"], at["crowd"], at["gone"],
                                                           at["broken"], at["json"]})
    assert all(error.startswith(f"{train}:{entry['line']}: ") for entry in invalid for error in entry["errors"])

    # the terminal: what was left out, counted per reason, and the first lines
    assert ("ignore_data_errors=true (Azure's default): training leaves out 4 image(s) and 1 object(s), and reads "
            "1 value(s) as Azure reads them") in err
    assert "dropped object   box coordinate outside [0, 1]" in err
    assert f"  {train}:{min(at['object'], at['inverted'])}: label[0]" in err
    assert str(run / "data_report.json") in err


def test_ignore_data_errors_false_stops_before_any_work(defective_detection, tmp_path, capsys):
    data, expected = defective_detection
    run = tmp_path / "strict"
    assert main(train_args("object-detection", data, run, "--set", "ignore_data_errors=false")) == 1
    err = capsys.readouterr().err
    assert f"{data['train']}:{expected['lines']['crowd']}: label[0].isCrowd:" in err
    assert f"{data['train']}:{expected['lines']['gone']}: image_url: file not found" in err
    assert "ignore_data_errors=false" in err and "Traceback" not in err
    assert not run.exists()  # nothing written


def test_skip_invalid_is_the_default_and_contradicting_it_is_refused(defective_detection, tmp_path, capsys):
    data, _ = defective_detection
    run = tmp_path / "both"
    assert main(train_args("object-detection", data, run, "--skip-invalid", "--set", "ignore_data_errors=false")) == 2
    assert "--skip-invalid means ignore_data_errors=true" in capsys.readouterr().err
    assert not run.exists()


def test_a_class_with_nothing_usable_left_stops_training(tmp_path, capsys):
    data = _sample(tmp_path, capsys, "multiclass")
    lines = _lines(data["train"])
    _write(data["train"], lines + [{"image_url": "images/gone.jpg", "label": "hexagon"},
                                   {"image_url": "images/also_gone.jpg", "label": "hexagon"}])
    run = tmp_path / "run"
    assert main(train_args("multiclass", data, run)) == 1
    err = capsys.readouterr().err
    assert (f"class 'hexagon' has nothing usable left in the training data: every line naming it was left out "
            f"({data['train']}:{len(lines) + 1}, {data['train']}:{len(lines) + 2})") in err
    assert not run.exists()


def test_the_validation_file_with_nothing_usable_stops_training(tmp_path, capsys):
    data = _sample(tmp_path, capsys, "multiclass")
    _write(data["val"], ["{broken", {"image_url": "images/gone.jpg", "label": "circle"}])
    run = tmp_path / "run"
    assert main(train_args("multiclass", data, run)) == 1
    assert f"no usable line is left in the validation data ({data['val']})" in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.slow
def test_integer_labels_train_and_are_served_as_strings_in_azure_order(tmp_path, capsys):
    data = _sample(tmp_path, capsys, "multiclass")
    names = {"circle": 10, "square": 2, "star": 33, "triangle": 4}
    for split in ("train", "val"):
        _write(data[split], [dict(entry, label=names[entry["label"]]) for entry in _lines(data[split])])
    lines = _lines(data["train"])
    # a second line for the first image with another label: Azure trains on the last line's label
    _write(data["train"], lines + [dict(lines[0], label=names["star"] if lines[0]["label"] != 33 else 2)])
    run = tmp_path / "run"
    assert main(train_args("multiclass", data, run)) == 0
    capsys.readouterr()
    manifest = json.loads((run / "model" / "visionml.json").read_text())
    assert manifest["labels"] == ["2", "4", "10", "33"]  # numbers, sorted as numbers, written as Azure shows them
    report = json.loads((run / "data_report.json").read_text())
    assert [(p["line"], p["training"], p["kind"]) for p in report["problems"]] == [
        (1, "dropped image", "duplicate image_url, another label")]

    image = data["images"] / json.loads(data["val"].read_text().splitlines()[0])["image_url"].split("/")[-1]
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(run / "model"), str(image), "--output", str(out)]) == 0
    (prediction,) = [json.loads(text) for text in out.read_text().splitlines()]
    assert prediction["labels"] == ["2", "4", "10", "33"] and len(prediction["probs"]) == 4


def test_segmentation_loaders_keep_the_segments_azure_keeps(tmp_path, capsys):
    data = _sample(tmp_path, capsys, "instance-segmentation")
    lines = _lines(data["train"])
    first = lines[0]["label"][0]
    square = [0.1, 0.1, 0.4, 0.1, 0.4, 0.4, 0.1, 0.4]
    lines[0]["label"][0] = dict(first, polygon=[*first["polygon"], [0.2, 0.2, 0.3, 0.3], [0.5, 0.5, 1.2, 0.5, 0.9, 0.9]])
    lines[1]["label"] = [dict(lines[1]["label"][0], polygon=[[0.1, 0.1, 0.2, 0.2]]), *lines[1]["label"][1:],
                         {"label": "circle", "polygon": [square], "isCrowd": "True"}]
    lines[2]["label"] = [dict(o, polygon=[o["polygon"][0][:5]]) for o in lines[2]["label"]]  # odd count
    _write(data["train"], lines)
    settings = settings_for(TrainOptions(task="instance-segmentation", training_data=data["train"],
                                         validation_data=data["val"], seed=0), tmp_path / "run")
    train, _, report, _ = load_data(settings)
    by_url = {r.image_url: r for r in train}
    assert lines[2]["image_url"] not in by_url  # an odd count: Azure skips the image
    assert by_url[lines[0]["image_url"]].objects[0].polygon == first["polygon"]  # the two bad segments gone
    second = by_url[lines[1]["image_url"]].objects
    assert len(second) == len(lines[1]["label"]) - 1 and second[-1].polygon == [square] and second[-1].is_crowd
    assert [(p.line, p.field, p.training) for p in report.problems] == [
        (1, "label[0].polygon[1]", "dropped segment"), (1, "label[0].polygon[2]", "dropped segment"),
        (2, "label[0].polygon[0]", "dropped segment"), (2, "label[0].polygon", "dropped object"),
        *[(3, f"label[{i}].polygon[0]", "dropped image") for i in range(len(lines[2]["label"]))]]
    assert not (tmp_path / "run").exists()  # the loaders write nothing


def test_a_run_from_before_ignore_data_errors_resumes_as_it_started(tmp_path, capsys):
    data = _sample(tmp_path, capsys, "multiclass")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "task": "image_classification", "model_name": "resnet18", "labels": ["circle"], "hyperparameters": {},
        "run": {"training_data": str(data["train"]), "validation_data": None, "pretrained": False, "preset": None,
                "checkpoint": None, "skip_invalid": False, "seed": 0, "precision": "fp32", "datastores": []}}))
    settings = settings_for(TrainOptions(resume=True, output=run), run)
    assert settings.hp["ignore_data_errors"] is False  # it was strict: it stays strict
    shutil.rmtree(run)
