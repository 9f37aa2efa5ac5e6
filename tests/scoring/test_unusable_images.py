"""Images a model cannot take, and inputs that are not images, as batch scoring, evaluation, the
Python API and `explain` meet them (issue 13, items 1 and 12): reported by name and skipped
where the command says so, never a traceback or a Python object in the message."""

from __future__ import annotations

import io
import json
import re

import orjson
import pytest
from PIL import Image

import visionml
from visionml.cli import main
from visionml.predict.decode import DecodeError
from visionml.tasks import DETECTION, MULTICLASS

from tests.support import image_bytes

OBJECT_REPR = re.compile(r"object at 0x[0-9a-f]+")


def _thin_png(path, width=100000, height=1):
    Image.new("RGB", (width, height), (200, 40, 40)).save(path, format="PNG")
    return path


@pytest.fixture()
def images_with_a_thin_one(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.jpg").write_bytes(image_bytes(seed=1))
    _thin_png(root / "b_thin.png")
    (root / "c.jpg").write_bytes(image_bytes(seed=2))
    return root


@pytest.mark.parametrize("task", [DETECTION, MULTICLASS])
def test_predict_skips_an_image_the_model_cannot_take(model_dirs, images_with_a_thin_one, tmp_path, capsys, task):
    out = tmp_path / "preds.jsonl"
    code = main(["predict", "--model", str(model_dirs[task]), str(images_with_a_thin_one), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [row["filename"] for row in rows] == [str(images_with_a_thin_one / n) for n in ("a.jpg", "c.jpg")]
    assert f"skipped {images_with_a_thin_one / 'b_thin.png'}: image is 100000x1 pixels" in err
    assert "2 image(s) scored, 1 problem(s)" in err and "Traceback" not in err


def test_python_api_names_the_item_the_model_cannot_take(model_dirs, tmp_path):
    model = visionml.load_model(model_dirs[DETECTION])
    thin = _thin_png(tmp_path / "thin.png")
    with pytest.raises(DecodeError, match=r"thin\.png: image is 100000x1 pixels") as caught:
        model.predict([image_bytes(), str(thin)])
    assert caught.value.index == 1


def test_python_api_says_no_such_file_for_a_missing_path(model_dirs, tmp_path, monkeypatch):
    model = visionml.load_model(model_dirs[MULTICLASS])
    monkeypatch.chdir(tmp_path)
    for missing in ("missing.jpg", "/nonexistent.jpg", "photos/2024/cat.png"):
        with pytest.raises(DecodeError, match=f"^no such file: {re.escape(missing)}$"):
            model.predict([missing])
    with pytest.raises(DecodeError, match="not base64"):  # neither a path nor base64
        model.predict(["this is not base64!"])


def test_python_api_non_image_message_has_no_python_repr(model_dirs):
    model = visionml.load_model(model_dirs[MULTICLASS])
    for src in (b"just some text", io.BytesIO(b"just some text")):
        with pytest.raises(DecodeError) as caught:
            model.predict([src])
        message = str(caught.value)
        assert "not a readable image (cannot identify image file)" in message
        assert not OBJECT_REPR.search(message), message


def test_explain_cli_says_no_such_file(model_dirs, capsys):
    code = main(["explain", "--model", str(model_dirs[MULTICLASS]), "/nonexistent.jpg"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no such file: /nonexistent.jpg" in err and "base64" not in err


def test_evaluate_skips_and_reports_an_image_the_model_cannot_take(model_dirs, images_with_a_thin_one, tmp_path,
                                                                    capsys):
    data = tmp_path / "val.jsonl"
    box = {"label": "circle", "topX": 0.1, "topY": 0.1, "bottomX": 0.6, "bottomY": 0.7}
    lines = [{"image_url": f"images/{name}", "label": [box]} for name in ("a.jpg", "b_thin.png", "c.jpg")]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    output = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(model_dirs[DETECTION]), "--data", str(data), "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.loads(output.read_text())
    assert metrics["per_label"]["circle"]["num_ground_truth"] == 2  # the skipped image is not counted
    notes = [n for n in metrics["notes"] if "skipped" in n]
    assert len(notes) == 1 and "1 image(s)" in notes[0] and f"{data}:2" in notes[0]
    assert f"{data}:2" in captured.err and "100000x1" in captured.err
