"""Reading JSONL/MLTable: every task's shapes, every bad-input case with its exact line, skip-invalid."""

from __future__ import annotations

import orjson
import pytest
from .jsonl_testdata import box, png_header_only, poly, write_image, write_jsonl

from visionml.errors import DataError, UsageError, VisionMLError
from visionml.data.reader import load_dataset, read_dataset, write_invalid_lines
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION


def line(label, url="images/a.jpg", **extra) -> dict:
    return {"image_url": url, "label": label, **extra}


# ----------------------------------------------------------------------------- good data, all tasks


def test_multiclass_with_azure_image_details(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "train.jsonl", [
        line("cat", image_details={"format": "jpg", "width": "400px", "height": "258px"}),
        line("dog", url="images/b.jpg", image_details={"format": "JPEG", "width": 397, "height": "296"}),
    ])
    data = read_dataset(src, check_images=False)
    assert data.task == MULTICLASS and data.task_inferred
    assert data.labels == ["cat", "dog"]
    first, second = data.records
    assert (first.line, first.label, first.width, first.height, first.format) == (1, "cat", 400, 258, "jpg")
    assert (second.width, second.height, second.format) == (397, 296, "jpeg")
    assert first.path == str(image_dir / "a.jpg")
    assert first.image_url == "images/a.jpg"


def test_image_check_replaces_declared_size_with_the_real_one(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "train.jsonl", [line("cat", image_details={"width": 999, "height": 999})])
    record, = read_dataset(src).records
    assert (record.width, record.height, record.format) == (40, 30, "jpeg")


def test_multilabel(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "t.jsonl", [line(["cat", "dog", "cat"]), line([], url="images/b.jpg"),
                                            line(["bird"], url="images/c.jpg")])
    data = read_dataset(src)
    assert data.task == MULTILABEL
    assert data.labels == ["bird", "cat", "dog"]
    assert [r.label for r in data.records] == [["cat", "dog"], [], ["bird"]]


def test_detection_clips_slack_and_reads_iscrowd_forms(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line([box("cat", -5e-7, 0.0, 1.0000005, 0.5, isCrowd=0), box("dog", 0, 0, 1, 1, isCrowd=True),
              box("dog", isCrowd=1), box("cat", isCrowd=False), box("cat")]),
        line([], url="images/b.jpg"),
    ])
    data = read_dataset(src)
    assert data.task == DETECTION
    objects = data.records[0].objects
    assert objects[0].box == (0.0, 0.0, 1.0, 0.5)
    assert objects[1].box == (0.0, 0.0, 1.0, 1.0)
    assert [o.is_crowd for o in objects] == [False, True, True, False, False]
    assert data.records[1].objects == [] and data.records[1].label is None


def test_segmentation_box_is_polygon_extent(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "t.jsonl", [line([
        {"label": "can", "isCrowd": 0, "polygon": [[0.2, 0.3, 0.6, 0.3, 0.4, 0.8], [0.1, 0.35, 0.15, 0.35, 0.12, 0.4]]},
        poly("carton", (0.0, 0.0, 1.0000004, 0.0, 0.5, 0.5)),
    ])])
    data = read_dataset(src)
    assert data.task == SEGMENTATION
    can, carton = data.records[0].objects
    assert can.box == pytest.approx((0.1, 0.3, 0.6, 0.8))
    assert len(can.polygon) == 2
    assert carton.polygon == [[0.0, 0.0, 1.0, 0.0, 0.5, 0.5]]


def test_bom_blank_lines_and_crlf(tmp_path, image_dir):
    src = tmp_path / "t.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(line("cat")) + b"\r\n\r\n   \n"
                    + orjson.dumps(line("dog", url="images/b.jpg")) + b"\r\n\n")
    data = read_dataset(src)
    assert [(r.line, r.label) for r in data.records] == [(1, "cat"), (4, "dog")]


# ----------------------------------------------------------------------------- every bad input, exact line

BAD_LINES = [
    # (line written at line 3, task, field, words in the reason)
    ('{"image_url": "images/a.jpg", "label": "cat"', None, "line", "invalid JSON"),
    ('["images/a.jpg", "cat"]', None, "line", "expected a JSON object"),
    ({"label": "cat"}, None, "image_url", "missing"),
    ({"image_url": "", "label": "cat"}, None, "image_url", "non-empty string"),
    ({"image_url": "images/a.jpg"}, None, "label", "missing"),
    (line(""), None, "label", "empty class name"),
    (line(5.5), None, "label", "got a number"),
    (line("cat"), DETECTION, "label", "object detection"),
    (line([box()]), MULTICLASS, "label", "multi-class"),
    (line([poly()]), DETECTION, "label", "instance segmentation"),
    (line(["cat", 3.5]), MULTILABEL, "label[1]", "class name"),
    (line([box(x1=1.2)]), DETECTION, "label[0].bottomX", "outside [0, 1]"),
    (line([box(x0=-0.01)]), DETECTION, "label[0].topX", "outside [0, 1]"),
    (line([box(x0=0.6, x1=0.2)]), DETECTION, "label[0]", "inverted box"),
    (line([box(y0=0.4, y1=0.4)]), DETECTION, "label[0]", "zero-area box"),
    (line([box(x0="0.1")]), DETECTION, "label[0].topX", "read as the number 0.1"),
    (line([box(x0=True)]), DETECTION, "label[0].topX", "expected a number"),
    (line([{"label": "cat", "topX": 0.1, "topY": 0.1, "bottomX": 0.5}]), DETECTION, "label[0].bottomY", "missing"),
    (line([box(label="")]), DETECTION, "label[0].label", "class name"),
    (line([box(isCrowd=2)]), DETECTION, "label[0].isCrowd", "read as 0"),
    (line([box(isCrowd="yes")]), DETECTION, "label[0].isCrowd", "read as 0"),
    (line([poly(points=(0.1, 0.1, 0.5, 0.1, 0.3))]), SEGMENTATION, "label[0].polygon[0]", "odd number"),
    (line([poly(points=(0.1, 0.1, 0.5, 0.1))]), SEGMENTATION, "label[0].polygon[0]", "at least 3"),
    (line([poly(points=(0.1, 0.1, 1.5, 0.1, 0.3, 0.6))]), SEGMENTATION, "label[0].polygon[0]", "outside [0, 1]"),
    (line([{"label": "cat", "polygon": [0.1, 0.1, 0.5, 0.1, 0.3, 0.6]}]), SEGMENTATION, "label[0].polygon", "flat list"),
    (line([poly(points=(0.1, 0.1, 0.2, 0.2, 0.3, 0.3))]), SEGMENTATION, "label[0].polygon", "no area"),
    (line("cat", url="../outside.jpg"), None, "image_url", "escapes"),
    (line("cat", url="ftp://host/a.jpg"), None, "image_url", "unsupported URL scheme"),
    (line("cat", url="images/missing.jpg"), None, "image_url", "file not found"),
    (line("cat", url="images/notes.txt"), None, "image_url", "not an image"),
    (line("cat", url="images/cut.jpg"), None, "image_url", "truncated"),
    (line("cat", url="images/half.jpg"), None, "image_url", "truncated"),
    (line("cat", url="images/cut.png"), None, "image_url", "truncated"),
    (line("cat", url="images/bomb.png"), None, "image_url", "over"),
]


def _good(task) -> dict:
    """A valid line for ``task`` (or multi-class when the task is inferred)."""
    return {None: line("cat"), MULTICLASS: line("cat"), MULTILABEL: line(["cat"]),
            DETECTION: line([box()]), SEGMENTATION: line([poly()])}[task]


@pytest.fixture
def bad_images(image_dir):
    (image_dir / "notes.txt").write_text("not an image")
    whole = (image_dir / "a.jpg").read_bytes()
    (image_dir / "cut.jpg").write_bytes(whole[:-30])  # header intact, end marker gone
    (image_dir / "half.jpg").write_bytes(whole[: len(whole) // 2])
    write_image(image_dir / "whole.png")
    whole_png = (image_dir / "whole.png").read_bytes()
    (image_dir / "cut.png").write_bytes(whole_png[:-20])
    png_header_only(image_dir / "bomb.png", 12_000, 12_000)
    return image_dir


@pytest.mark.parametrize("bad, task, field, words", BAD_LINES, ids=[f"{c[2]}-{c[3]}" for c in BAD_LINES])
def test_bad_line_is_reported_with_its_line_number(tmp_path, bad_images, bad, task, field, words):
    # good, blank, bad, good: the blank line still counts, so the bad one is line 3
    src = write_jsonl(tmp_path / "train.jsonl", [_good(task), "", bad, _good(task)])
    with pytest.raises(DataError) as caught:
        read_dataset(src, task)
    problems = caught.value.problems
    assert (problems[0].line, problems[0].field) == (3, field), problems
    # A dropped object can leave its polygon, then its line, with nothing usable: said on the same line.
    assert {p.line for p in problems} == {3}
    assert {p.kind for p in problems[1:]} <= {"polygon with no usable segment", "no usable object left"}, problems
    assert words in problems[0].reason
    assert str(problems[0]).startswith(f"{src}:3: {field}: ")
    assert f"{src}:3: {field}:" in str(caught.value)


WEIRD = [None, True, 7, -1.5, "", "x", [], [1], {}, {"a": 1}]
PLACES = ["image_url", "image_details", "image_details.format", "image_details.width", "label",
          "label[0]", "label[0].label", "label[0].topX", "label[0].isCrowd", "label[0].polygon",
          "label[0].polygon[0]"]


@pytest.mark.parametrize("place", PLACES)
def test_any_value_anywhere_gives_problems_not_a_crash(tmp_path, image_dir, place):
    lines = []
    for value in WEIRD:
        obj = line([poly()] if "polygon" in place else [box()],
                   image_details={"format": "jpg", "width": 40, "height": 30})
        target, *path = place.replace("[0]", ".0").split(".")
        holder = obj
        for key in [target, *path][:-1]:
            holder = holder[int(key)] if key.isdigit() else holder[key]
        last = ([target, *path])[-1]
        holder[int(last) if last.isdigit() else last] = value
        lines.append(obj)
    data = load_dataset(write_jsonl(tmp_path / "t.jsonl", lines), check_images=False)
    bad_lines = {p.line for p in data.problems}
    noted = {w.line for w in data.warnings if w.kind.startswith("image_details")}
    merged = {w.line for w in data.warnings if w.kind.startswith("duplicate")}  # every line names images/a.jpg
    assert bad_lines or noted  # every place has values it must refuse (or, image_details, warn about)
    assert sorted(bad_lines | noted | merged | {r.line for r in data.records}) == list(range(1, len(WEIRD) + 1))
    for p in data.problems:
        assert str(p).startswith(f"{tmp_path / 't.jsonl'}:{p.line}: ") and p.raw


def test_mixed_file_strict_lists_everything_and_skip_invalid_keeps_what_azure_keeps(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "train.jsonl", [
        line([box("cat")]),
        line([box("cat", x1=2.0), box("dog", isCrowd=7)], url="images/c.jpg"),
        "{not json",
        line([box("dog")], url="images/b.jpg"),
        line([box("dog")], url="images/gone.jpg"),
    ])
    with pytest.raises(DataError) as caught:
        read_dataset(src)
    found = [(p.line, p.field) for p in caught.value.problems]
    assert found == [(2, "label[0].bottomX"), (2, "label[1].isCrowd"), (3, "line"), (5, "image_url")]

    data = read_dataset(src, skip_invalid=True)
    assert [r.line for r in data.records] == [1, 2, 4]
    assert [(o.label, o.is_crowd) for o in data.records[1].objects] == [("dog", False)]  # the box outside is dropped
    assert data.labels == ["cat", "dog"]
    out = tmp_path / "invalid_lines.jsonl"
    assert write_invalid_lines(data.problems, out) == 3
    entries = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [e["line"] for e in entries] == [2, 3, 5]
    assert entries[0]["source"] == str(src)
    assert len(entries[0]["errors"]) == 2 and entries[0]["errors"][0].startswith(f"{src}:2: label[0].bottomX: ")
    assert entries[0]["training"] == ["dropped object", "kept"]
    assert entries[1]["raw"] == "{not json" and entries[1]["training"] == ["dropped image"]
    assert orjson.loads(entries[2]["raw"])["image_url"] == "images/gone.jpg"


def test_skip_invalid_with_no_valid_line_still_fails(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", ["nope", "{}"])
    with pytest.raises(DataError, match="no valid line"):
        read_dataset(src, skip_invalid=True)


# ----------------------------------------------------------------------------- the task


def test_inferred_task_is_the_majority_and_odd_lines_are_named(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "t.jsonl", [line([box()]), line("cat", url="images/b.jpg"),
                                            line([box("dog")], url="images/c.jpg"), line([], url="images/d.jpg")])
    data = load_dataset(src, check_images=False)
    assert data.task == DETECTION
    assert [r.line for r in data.records] == [1, 3, 4]
    (problem,) = data.problems
    assert (problem.line, problem.field) == (2, "label")
    assert "pass --task" in problem.reason and "object detection" in problem.reason
    assert orjson.loads(problem.raw) == line("cat", url="images/b.jpg")


def test_given_task_alias_and_mismatch_names_the_line(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [line(["cat"]), line("dog")])
    data = load_dataset(src, "multilabel", check_images=False)
    assert data.task == MULTILABEL and not data.task_inferred
    assert [str(p) for p in data.problems] == [
        f"{src}:2: label: expected a list of class names (multi-label classification) "
        "(task image_classification_multilabel was given), got a class name (multi-class classification; a string, "
        "or an integer as Azure allows)"]


def test_every_label_empty_asks_for_the_task(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [line([]), line([])])
    with pytest.raises(UsageError, match="--task"):
        read_dataset(src, check_images=False)
    assert read_dataset(src, "object-detection", check_images=False).task == DETECTION


def test_empty_list_is_not_a_multiclass_label(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat"), line([])])
    data = load_dataset(src, MULTICLASS, check_images=False)
    assert [(p.line, p.field) for p in data.problems] == [(2, "label")]


# ----------------------------------------------------------------------------- MLTable


def test_mltable_folder_with_several_files(tmp_path, image_dir):
    write_jsonl(tmp_path / "part1.jsonl", [line("cat")])
    write_jsonl(tmp_path / "sub" / "part2.jsonl", [line("dog", url="../images/b.jpg"), "oops"])
    (tmp_path / "MLTable").write_text(
        "paths:\n  - file: ./part1.jsonl\n  - file: sub/part2.jsonl\n"
        "transformations:\n  - read_json_lines:\n      encoding: utf8\n      invalid_lines: error\n")
    data = load_dataset(tmp_path)
    assert data.sources == [str(tmp_path / "part1.jsonl"), str(tmp_path / "sub" / "part2.jsonl")]
    assert [r.label for r in data.records] == ["cat"]
    # image paths are relative to each JSONL's own folder, and may not climb out of it
    assert [(p.source, p.line, p.field) for p in data.problems] == [
        (str(tmp_path / "sub" / "part2.jsonl"), 1, "image_url"), (str(tmp_path / "sub" / "part2.jsonl"), 2, "line")]


def test_mltable_file_by_name_and_pattern(tmp_path, image_dir):
    write_jsonl(tmp_path / "a.jsonl", [line("cat")])
    write_jsonl(tmp_path / "b.jsonl", [line("dog", url="images/b.jpg")])
    table = tmp_path / "train.mltable"
    table.write_text("paths:\n  - pattern: '*.jsonl'\n")
    data = read_dataset(table)
    assert data.labels == ["cat", "dog"] and len(data.sources) == 2


@pytest.mark.parametrize("content, words", [
    ("paths: []\n", "at least one"),
    ("paths:\n  - file: missing.jsonl\n", "not found"),
    ("paths:\n  - file: ../../etc/x.jsonl\n", "escapes"),
    ("paths: [\n", "not valid YAML"),
])
def test_bad_mltable(tmp_path, content, words):
    (tmp_path / "MLTable").write_text(content)
    with pytest.raises(VisionMLError, match=words):
        read_dataset(tmp_path)


def test_missing_data_file_and_folder_without_mltable(tmp_path):
    with pytest.raises(VisionMLError, match="no such file"):
        read_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(VisionMLError, match="MLTable"):
        read_dataset(tmp_path)


def test_pixel_cap_is_configurable(tmp_path, image_dir):
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat")])
    assert read_dataset(src, max_pixels=40 * 30).records
    data = load_dataset(src, max_pixels=40 * 30 - 1)
    assert "over the limit of 1,199" in data.problems[0].reason
