"""The data Azure's trainer accepts, read as Azure's own code reads it (reference/azure-parity.md,
"Data"): with ignore_data_errors (Azure's default) the reader keeps exactly what Azure keeps and
names every drop by FILE:LINE; `visionml validate` still fails on each problem and says which
ones training tolerates; and the streamed summary (--no-image-check) agrees with the loaded one."""

from __future__ import annotations

import orjson
import pytest

from visionml.cli import main
from visionml.data.reader import load_dataset, read_dataset
from visionml.data.validate import scan_dataset, summarize
from visionml.errors import DataError
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION

from .jsonl_testdata import box, poly, write_image, write_jsonl

SQUARE = (0.1, 0.1, 0.5, 0.1, 0.5, 0.5, 0.1, 0.5)
TRIANGLE = (0.6, 0.6, 0.9, 0.6, 0.75, 0.9)


def line(label, url="images/a.jpg", **extra) -> dict:
    return {"image_url": url, "label": label, **extra}


def problems_of(data) -> list[tuple[int, str, str]]:
    return [(p.line, p.field, p.training) for p in data.problems]


@pytest.fixture
def images(image_dir):
    for name in "defgh":
        write_image(image_dir / f"{name}.jpg")
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return image_dir


# ----------------------------------------------------------------------------- isCrowd


CROWD = [("true", True), ("True", True), ("1", True), (1, True), (True, True), (1.0, True),
         (0, False), (False, False), ("false", False), ("0", False), (None, False)]
ODD_CROWD = ["yes", "TRUE", 2, 0.5, "1.0", [1]]


def test_iscrowd_as_azure_reads_it(tmp_path, images):
    objects = [box("cat", isCrowd=value) for value, _ in CROWD] + [box("cat", isCrowd=v) for v in ODD_CROWD]
    src = write_jsonl(tmp_path / "t.jsonl", [line(objects)])
    data = load_dataset(src)
    (record,) = data.records
    assert [o.is_crowd for o in record.objects] == [crowd for _, crowd in CROWD] + [False] * len(ODD_CROWD)
    # Azure's values (and the plain spellings of 0) pass silently; anything else is 0 and is reported
    odd = [(p.field, p.training, p.kind) for p in data.problems]
    assert odd == [(f"label[{len(CROWD) + i}].isCrowd", "kept", "isCrowd read as 0") for i in range(len(ODD_CROWD))]
    assert "'yes' is read as 0 (not crowd)" in data.problems[0].reason


# ----------------------------------------------------------------------------- integer labels


def test_integer_labels_are_class_names_in_azure_order(tmp_path, images):
    src = write_jsonl(tmp_path / "t.jsonl", [line(10), line(2, url="images/b.jpg"), line(3, url="images/c.jpg")])
    data = read_dataset(src)  # no problem at all
    assert data.task == MULTICLASS and data.integer_labels
    assert [r.label for r in data.records] == ["10", "2", "3"]
    assert data.labels == ["2", "3", "10"]  # Azure sorts the integers themselves

    src = write_jsonl(tmp_path / "det.jsonl", [line([box(7), box(12)]), line([box(7)], url="images/b.jpg")])
    data = read_dataset(src)
    assert data.task == DETECTION and data.labels == ["7", "12"]
    assert [o.label for o in data.records[0].objects] == ["7", "12"]

    src = write_jsonl(tmp_path / "ml.jsonl", [line([1, 0]), line([], url="images/b.jpg")])
    data = read_dataset(src)
    assert data.task == MULTILABEL and data.records[0].label == ["1", "0"] and data.labels == ["0", "1"]


def test_one_type_of_class_name_per_file(tmp_path, images, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", [line([box("cat")]), line([box(1)], url="images/b.jpg"),
                                            line([box("dog")], url="images/c.jpg")])
    data = load_dataset(src)
    assert problems_of(data) == [(2, "label", "fatal")]
    assert "Azure refuses a file whose class names are of two types" in data.problems[0].reason
    with pytest.raises(DataError, match="Azure refuses these too"):
        read_dataset(src, skip_invalid=True)  # ignore_data_errors does not get past it
    assert main(["validate", str(src)]) == 1
    out = capsys.readouterr().out
    assert f"{src}:2: label: names a class by integer 1" in out and out.splitlines()[0].endswith(" [fatal]")
    assert "Training would stop" in out


# ----------------------------------------------------------------------------- image_details


def test_image_details_is_optional_and_never_fatal(tmp_path, images, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line("cat"),  # none at all
        line("cat", url="images/b.jpg", image_details={"format": "heic", "width": "wide", "height": -3}),
        line("dog", url="images/c.jpg", image_details="400x300"),
        line("dog", url="images/d.jpg", image_details={"width": 400, "height": 300}),  # the image is 40x30
    ])
    data = read_dataset(src)  # strict: warnings are not problems
    assert [(r.line, r.width, r.height) for r in data.records] == [(1, 40, 30), (2, 40, 30), (3, 40, 30), (4, 40, 30)]
    assert [(w.line, w.field, w.training) for w in data.warnings] == [
        (2, "image_details.width", "warning"), (2, "image_details.height", "warning"),
        (2, "image_details.format", "warning"), (3, "image_details", "warning"), (4, "image_details", "warning")]
    assert data.warnings[-1].reason.startswith("says 400x300, the image is 40x30; the image's own size is used")
    assert main(["validate", str(src)]) == 0
    out = capsys.readouterr().out
    assert f"{src}:4: image_details: says 400x300" in out and "OK: the data is valid. 5 warning(s)" in out


# ----------------------------------------------------------------------------- boxes


def test_an_invalid_box_drops_its_object_not_its_line(tmp_path, images):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line([box("cat"), box("dog", x1=1.4), box("dog", x0=0.6, x1=0.2), box("cat", y0=0.3, y1=0.3)]),
        line([box("dog", x1=2.0)], url="images/b.jpg"),  # every object invalid: Azure skips the image
        line([box("cat", x0="0.2"), box("dog", y1=" 0.7 ")], url="images/c.jpg"),  # float() reads strings
        line([box("cat"), {"label": "dog", "topX": 0.1, "topY": 0.1, "bottomX": 0.5}], url="images/d.jpg"),
        line([box("cat"), box("dog", x0=None)], url="images/e.jpg"),  # not a number: Azure skips the image
        line([], url="images/f.jpg"),  # an image with nothing in it stays
    ])
    data = read_dataset(src, DETECTION, skip_invalid=True)
    assert [(r.line, [o.label for o in r.objects]) for r in data.records] == [
        (1, ["cat"]), (3, ["cat", "dog"]), (6, [])]
    assert data.records[1].objects[0].box == (0.2, 0.1, 0.5, 0.6)
    assert data.records[1].objects[1].box == (0.1, 0.1, 0.5, 0.7)
    assert problems_of(data) == [
        (1, "label[1].bottomX", "dropped object"), (1, "label[2]", "dropped object"), (1, "label[3]", "dropped object"),
        (2, "label[0].bottomX", "dropped object"), (2, "label", "dropped image"),
        (3, "label[0].topX", "kept"), (3, "label[1].bottomY", "kept"),
        (4, "label[1].bottomY", "dropped image"), (5, "label[1].topX", "dropped image")]
    with pytest.raises(DataError):
        read_dataset(src, DETECTION)  # strict: every one of them stops


# ----------------------------------------------------------------------------- polygons


def test_polygon_segments_azure_drops_leave_the_object(tmp_path, images):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line([{"label": "can", "polygon": [list(SQUARE), [0.2, 0.2, 0.3, 0.3], list(TRIANGLE)]},  # 2 points
              {"label": "can", "polygon": [list(SQUARE), [0.1, 0.1, 1.3, 0.1, 0.5, 0.5]]}]),  # outside [0, 1]
        line([{"label": "carton", "polygon": [[0.1, 0.1, 0.2, 0.2]]}, poly("can")], url="images/b.jpg"),
        line([poly("can"), {"label": "can", "polygon": [[0.1, 0.1, 0.5, 0.1, 0.3]]}], url="images/c.jpg"),  # odd
        line([{"label": "can", "polygon": [[0.1, 0.1, 1.5, 0.1, 0.3, 0.6]]}], url="images/d.jpg"),
        line([poly("can"), box("carton")], url="images/e.jpg"),  # a box in segmentation data has no mask
    ])
    data = read_dataset(src, SEGMENTATION, skip_invalid=True)
    first, second, fifth = data.records
    assert [len(o.polygon) for o in first.objects] == [2, 1]
    assert first.objects[0].polygon == [list(SQUARE), list(TRIANGLE)]
    assert first.objects[1].box == (0.1, 0.1, 0.5, 0.5)  # the extent of what is left
    assert [o.label for o in second.objects] == ["can"] and second.line == 2
    assert fifth.line == 5 and [o.label for o in fifth.objects] == ["can"]
    assert problems_of(data) == [
        (1, "label[0].polygon[1]", "dropped segment"), (1, "label[1].polygon[1]", "dropped segment"),
        (2, "label[0].polygon[0]", "dropped segment"), (2, "label[0].polygon", "dropped object"),
        (3, "label[1].polygon[0]", "dropped image"),
        (4, "label[0].polygon[0]", "dropped segment"), (4, "label[0].polygon", "dropped object"),
        (4, "label", "dropped image"),
        (5, "label[1].polygon", "dropped object")]
    # each thing once: the segments of objects kept, the objects of images kept
    assert summarize(data)["left_out"] == {"images": 2, "objects": 2, "segments": 2, "kept": 0, "fatal": 0}


# ----------------------------------------------------------------------------- duplicate image_url


def test_duplicate_lines_merge_for_detection(tmp_path, images):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line([box("cat")]), line([box("dog")], url="images/b.jpg"), line([box("dog", x1=0.9)]), line([]),
    ])
    data = read_dataset(src)  # no problem: Azure merges the lines of one image
    assert [(r.line, [o.label for o in r.objects]) for r in data.records] == [(1, ["cat", "dog"]), (2, ["dog"])]
    assert [(w.line, w.kind) for w in data.warnings] == [(3, "duplicate image_url merged"),
                                                         (4, "duplicate image_url merged")]
    assert f"the same image as {src}:1" in data.warnings[0].reason
    assert data.kept_lines == 4 and data.class_counts == {"cat": 1, "dog": 2}


def test_duplicate_lines_last_label_wins_for_classification(tmp_path, images):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line("cat"), line("dog", url="images/b.jpg"), line("bird"), line("cat", url="images/b.jpg"),
        line("bird"),
    ])
    data = load_dataset(src)
    assert [(r.line, r.label) for r in data.records] == [(5, "bird"), (4, "cat")]
    # a line whose label is overruled loses it: a problem; the same label again is a warning
    assert problems_of(data) == [(1, "label", "dropped image"), (2, "label", "dropped image")]
    assert data.problems[0].reason.startswith(f"'cat' is overruled: {src}:5 labels the same image 'bird'")
    assert orjson.loads(data.problems[0].raw) == line("cat")
    assert [(w.line, w.kind) for w in data.warnings] == [(3, "duplicate image_url")]
    assert data.labels == ["bird", "cat"]


# ----------------------------------------------------------------------------- images


def test_missing_and_undecodable_images_drop_their_lines(tmp_path, images):
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat"), line("dog", url="images/gone.jpg"),
                                            line("dog", url="images/broken.jpg"), line("dog", url="images/b.jpg")])
    data = read_dataset(src, skip_invalid=True)
    assert [r.line for r in data.records] == [1, 4]
    assert [(p.line, p.training, p.kind) for p in data.problems] == [
        (2, "dropped image", "image file not found"), (3, "dropped image", "image unreadable")]


# ----------------------------------------------------------------------------- validate


@pytest.fixture
def every_defect(tmp_path, images):
    return write_jsonl(tmp_path / "t.jsonl", [
        line([box("cat"), box("dog", x1=1.4), box("dog", isCrowd="yes")]),
        line([box("dog", x0=0.6, x1=0.2)], url="images/b.jpg"),
        line([box("cat")], url="images/gone.jpg"),
        line([box("cat")], url="images/c.jpg", image_details={"width": "wide"}),
        line([box("bird")]),
        "{oops",
    ])


def test_validate_marks_what_training_does_about_each_problem(every_defect, capsys):
    assert main(["validate", str(every_defect)]) == 1  # every problem still fails validate
    out = capsys.readouterr().out.splitlines()
    src = str(every_defect)
    tagged = [text for text in out if text.startswith(f"{src}:")]
    assert [t.rsplit(" [", 1)[1] for t in tagged] == [
        "dropped object]", "kept]", "dropped object]", "dropped image]", "dropped image]", "warning]", "warning]",
        "dropped image]"]
    assert tagged[5].startswith(f"{src}:4: image_details.width: cannot read 'wide'")
    assert tagged[6].startswith(f"{src}:5: image_url: the same image as {src}:1")
    assert out[-1].startswith("INVALID: 6 problem(s) on 4 line(s). Training with ignore_data_errors=true (the "
                              "default, as Azure) leaves out 3 image(s) and 1 object(s), and reads 1 value(s)")

    assert main(["validate", str(every_defect), "--json"]) == 1
    doc = orjson.loads(capsys.readouterr().out)
    assert [(p["line"], p["training"], p["tolerated"]) for p in doc["problems"]] == [
        (1, "dropped object", True), (1, "kept", True), (2, "dropped object", True), (2, "dropped image", True),
        (3, "dropped image", True), (6, "dropped image", True)]
    assert [(w["line"], w["kind"]) for w in doc["warnings"]] == [(4, "image_details ignored"),
                                                                 (5, "duplicate image_url merged")]
    assert doc["summary"]["left_out"] == {"images": 3, "objects": 1, "segments": 0, "kept": 1, "fatal": 0}
    assert doc["summary"]["classes"] == [{"name": "bird", "boxes": 1}, {"name": "cat", "boxes": 2},
                                         {"name": "dog", "boxes": 1}]
    assert doc["training_stops"] == []


def test_validate_says_when_training_would_stop(tmp_path, images, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", [line([box("cat")]), line([box("dog", x1=3.0)], url="images/b.jpg")])
    assert main(["validate", str(src), "--json"]) == 1
    stops = orjson.loads(capsys.readouterr().out)["training_stops"]
    assert stops == [(f"class 'dog' has nothing usable left in the training data: every line naming it was left "
                     f"out ({src}:2)")]


@pytest.mark.parametrize("name", ["every_defect", "duplicates", "polygons"])
def test_streamed_summary_agrees_on_every_defect(tmp_path, images, every_defect, name):
    files = {
        "every_defect": every_defect,
        "duplicates": write_jsonl(tmp_path / "d.jsonl", [
            line("cat"), line("dog", url="images/b.jpg"), line("bird"), line("cat", url="images/b.jpg"),
            line(["cat"], url="images/c.jpg"), line("bird", image_details={"width": 10, "height": 20})]),
        "polygons": write_jsonl(tmp_path / "p.jsonl", [
            line([{"label": "can", "polygon": [list(SQUARE), [0.2, 0.2, 0.3, 0.3]]}]),
            line([poly("can")]), line([poly("carton"), box("can")], url="images/b.jpg"),
            line([{"label": 3, "polygon": [list(SQUARE)]}], url="images/c.jpg")]),
    }
    src = files[name]
    loaded = load_dataset(src, check_images=False)
    streamed, problems, warnings = scan_dataset(src)
    assert streamed == summarize(loaded)
    assert [(p.line, p.field, p.reason, p.training, p.raw) for p in problems] == \
        [(p.line, p.field, p.reason, p.training, p.raw) for p in loaded.problems]
    assert [(w.line, w.field, w.reason) for w in warnings] == [(w.line, w.field, w.reason) for w in loaded.warnings]
