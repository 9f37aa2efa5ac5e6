"""Class-per-folder trees and CSV label files -> classification JSONL."""

from __future__ import annotations

from .helpers import cli, make_image, read_jsonl, validate_ok


def test_imagefolder_to_multiclass(tmp_path, capsys):
    for cls, names in {"cat": ["1.jpg", "sub/2.png"], "dog": ["3.jpg"], "empty": []}.items():
        (tmp_path / "tree" / cls).mkdir(parents=True, exist_ok=True)
        for n in names:
            make_image(tmp_path / "tree" / cls / n, 32, 24)
    (tmp_path / "tree" / "dog" / "notes.txt").write_text("not an image")
    out = tmp_path / "tree" / "data.jsonl"
    assert cli("convert", tmp_path / "tree", "--from", "imagefolder", "--to", "jsonl",
               "-o", out) == 0
    lines = read_jsonl(out)
    assert [(ln["image_url"], ln["label"]) for ln in lines] == [
        ("cat/1.jpg", "cat"), ("cat/sub/2.png", "cat"), ("dog/3.jpg", "dog")]
    assert "has no images" in capsys.readouterr().out
    validate_ok(out, "image_classification")


def test_imagefolder_broken_image_is_reported(tmp_path, capsys):
    make_image(tmp_path / "t" / "a" / "ok.jpg", 10, 10)
    (tmp_path / "t" / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    assert cli("convert", tmp_path / "t", "--from", "imagefolder", "--to", "jsonl", "-o",
               tmp_path / "o.jsonl") == 1
    assert "bad.jpg" in capsys.readouterr().err


def test_csv_labels_column_with_separator(tmp_path):
    for n in ("a.jpg", "b.jpg", "c.png"):
        make_image(tmp_path / "imgs" / n, 20, 20)
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,labels\na.jpg,cat;dog\nb,dog\nc.png,\n")
    out = tmp_path / "imgs" / "ml.jsonl"
    assert cli("convert", csv, "--from", "csv", "--to", "jsonl", "-o", out, "--images",
               tmp_path / "imgs", "--separator", ";") == 0
    assert [(ln["image_url"], ln["label"]) for ln in read_jsonl(out)] == [
        ("a.jpg", ["cat", "dog"]), ("b.jpg", ["dog"]), ("c.png", [])]
    validate_ok(out, "image_classification_multilabel")


def test_csv_one_hot_and_row_problems(tmp_path, capsys):
    make_image(tmp_path / "a.jpg", 20, 20)
    make_image(tmp_path / "b.jpg", 20, 20)
    csv = tmp_path / "onehot.csv"
    csv.write_text("image,cat,dog\na.jpg,1,1\nb.jpg,0,2\nmissing.jpg,1,0\n")
    out = tmp_path / "o.jsonl"
    assert cli("convert", csv, "--from", "csv", "--to", "jsonl", "-o", out) == 1
    err = capsys.readouterr().err
    assert f"{csv}:3: one-hot columns ['dog'] must be 0 or 1" in err
    assert f"{csv}:4: image file" in err and "missing.jpg not found" in err
    assert cli("convert", csv, "--from", "csv", "--to", "jsonl", "-o", out, "--skip-invalid") == 0
    assert [ln["label"] for ln in read_jsonl(out)] == [["cat", "dog"]]


def test_csv_rows_naming_one_image_make_one_line(tmp_path, capsys):
    """A row per label (a common multi-label layout) and repeated rows: one JSONL line per image,
    which validate and training take (two lines for one image are a problem to the reader)."""
    make_image(tmp_path / "a.jpg", 20, 20)
    make_image(tmp_path / "b.jpg", 20, 20)
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,label\na.jpg,cat\nb.jpg,dog\na.jpg,dog\n./a.jpg,cat\nb.jpg,\n")
    out = tmp_path / "ml.jsonl"
    assert cli("convert", csv, "--from", "csv", "--to", "jsonl", "-o", out) == 0
    assert [(ln["image_url"], ln["label"]) for ln in read_jsonl(out)] == [("a.jpg", ["cat", "dog"]), ("b.jpg", ["dog"])]
    validate_ok(out, "image_classification_multilabel")

    # Multi-class: the same label again is the same line; another label is a problem naming both rows.
    csv.write_text("filename,label\na.jpg,cat\nb.jpg,dog\na.jpg,cat\nb.jpg,cat\n")
    mc = tmp_path / "mc.jsonl"
    assert cli("convert", csv, "--from", "csv", "--to", "jsonl", "--task", "multiclass", "-o", mc) == 1
    assert f"{csv}:5: b.jpg is labelled 'dog' on line 3 and 'cat' here: multi-class takes one label per image" \
        in capsys.readouterr().err and not mc.exists()
    assert cli("convert", csv, "--from", "csv", "--to", "jsonl", "--task", "multiclass", "-o", mc,
               "--skip-invalid") == 0
    assert [(ln["image_url"], ln["label"]) for ln in read_jsonl(mc)] == [("a.jpg", "cat"), ("b.jpg", "dog")]
    validate_ok(mc, "image_classification")
