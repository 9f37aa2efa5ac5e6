"""`visionml predict` as a user runs it: files, folders and JSONL in, JSON lines out."""

from __future__ import annotations

import json

import orjson
import pytest

from visionml.cli import main
from visionml.tasks import MULTICLASS, SEGMENTATION

from tests.support import LABELS, image_bytes


@pytest.fixture()
def image_tree(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(image_bytes(seed=1))
    (root / "sub" / "b.PNG").write_bytes(image_bytes(fmt="PNG", seed=2))
    (root / "notes.txt").write_text("not an image")
    return root


def read_lines(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_folder_and_files_to_jsonl(model_dirs, image_tree, tmp_path, capsys):
    single = tmp_path / "single.jpg"
    single.write_bytes(image_bytes(seed=3))
    out = tmp_path / "preds.jsonl"
    code = main(["predict", "--model", str(model_dirs[MULTICLASS]), str(image_tree), str(single),
                 "--output", str(out), "--batch-size", "2"])
    assert code == 0
    rows = read_lines(out)
    assert [r["filename"] for r in rows] == [str(image_tree / "a.jpg"), str(image_tree / "sub" / "b.PNG"), str(single)]
    for row in rows:
        assert set(row) == {"filename", "probs", "labels", "visualizations", "attributions"}
        assert row["labels"] == LABELS and sum(row["probs"]) == pytest.approx(1.0, abs=1e-5)
    assert "3 image(s) scored" in capsys.readouterr().err


def test_same_answer_as_the_python_api(model_dirs, image_tree, tmp_path, predictors):
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model_dirs[SEGMENTATION]), str(image_tree / "a.jpg"), "-o", str(out)]) == 0
    (row,) = read_lines(out)
    assert row == predictors[SEGMENTATION].predict([str(image_tree / "a.jpg")])[0]


def test_jsonl_input_uses_image_urls(model_dirs, image_tree, tmp_path):
    data = tmp_path / "data.jsonl"
    lines = [{"image_url": "images/a.jpg", "label": "can"}, {"image_url": "images/sub/b.PNG"}]
    data.write_text("\ufeff" + "\n".join(json.dumps(x) for x in lines) + "\n\n")
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(data), "-o", str(out)]) == 0
    assert [r["filename"] for r in read_lines(out)] == ["images/a.jpg", "images/sub/b.PNG"]


def test_unreadable_images_are_reported_and_skipped(model_dirs, image_tree, tmp_path, capsys):
    (image_tree / "broken.jpg").write_bytes(image_bytes()[:300])
    data = tmp_path / "data.jsonl"
    data.write_text('{"image_url": "images/a.jpg"}\n{"image_url": "../../etc/passwd"}\n{"label": "x"}\n')
    out = tmp_path / "preds.jsonl"
    code = main(["predict", "--model", str(model_dirs[MULTICLASS]), str(image_tree), str(data),
                 str(tmp_path / "missing.jpg"), "-o", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"{image_tree / 'broken.jpg'}: " in err and "missing.jpg: no such file" in err
    assert f"{data}:2: image_url:" in err and f"{data}:3: image_url: missing" in err
    assert len(read_lines(out)) == 3  # a.jpg, sub/b.PNG and the JSONL's a.jpg


def test_overrides_and_stdout(model_dirs, image_tree, capsysbinary):
    from visionml.tasks import DETECTION

    code = main(["predict", "--model", str(model_dirs[DETECTION]), str(image_tree / "a.jpg"),
                 "--set", "box_score_threshold=0.999"])
    assert code == 0
    (line,) = capsysbinary.readouterr().out.splitlines()
    assert orjson.loads(line)["boxes"] == []


def test_bad_usage_and_nothing_to_score(model_dirs, tmp_path, capsys):
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(tmp_path / "nope.jpg")]) == 1
    assert "nothing to score" in capsys.readouterr().err
    (tmp_path / "x.jpg").write_bytes(image_bytes())
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(tmp_path / "x.jpg"),
                 "--set", "nms_iou_threshold"]) == 2
    assert main(["predict", "--model", str(tmp_path), str(tmp_path / "x.jpg")]) == 1


def test_output_is_atomic(model_dirs, tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text("previous results\n")
    (tmp_path / "x.jpg").write_bytes(image_bytes())
    code = main(["predict", "--model", str(model_dirs[MULTICLASS]), str(tmp_path / "x.jpg"), "-o", str(out),
                 "--set", "validation_crop_size=999"])  # fails before scoring: crop larger than resize
    assert code == 2
    assert out.read_text() == "previous results\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_run_that_fails_midway_leaves_the_old_output(tmp_path):
    from visionml.predict.batch import JsonLinesOut

    out = tmp_path / "preds.jsonl"
    out.write_text("previous results\n")
    with pytest.raises(RuntimeError), JsonLinesOut(str(out)) as writer:
        writer.write({"filename": "a"})
        raise RuntimeError("model crashed")
    assert out.read_text() == "previous results\n"
    with JsonLinesOut(str(out)) as writer:
        writer.write({"filename": "b"})
    assert read_lines(out) == [{"filename": "b"}]
    assert [p.name for p in tmp_path.iterdir()] == ["preds.jsonl"]
