"""Odd and hostile data as a user meets it through `visionml validate` (and training's loader):
every failure is a FILE:LINE problem, never a traceback or a hang (issue 13, items 1, 5, 6, 11, 12)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import visionml
from .jsonl_testdata import box, write_image, write_jsonl
from PIL import Image

from visionml.cli import main
from visionml.data.images import load_rgb
from visionml.data.reader import read_dataset
from visionml.errors import DataError


def line(label, url="images/a.jpg", **extra) -> dict:
    return {"image_url": url, "label": label, **extra}


def _problems(out: str, src) -> dict[int, str]:
    """{line: 'field: reason'} of the FILE:LINE problems validate printed for ``src`` (without the
    [outcome] tag that says what training does about each)."""
    found = {}
    for text in out.splitlines():
        if text.startswith(f"{src}:") and not text.endswith(" [warning]"):
            number, rest = text[len(f"{src}:"):].split(": ", 1)
            found[int(number)] = rest.rsplit(" [", 1)[0]
    return found


# ----------------------------------------------------------------------------- item 5: any OSError


@pytest.fixture
def odd_paths(tmp_path, image_dir):
    """Lines whose image path fails in the ways the operating system can fail an open."""
    os.symlink("loop-b", image_dir / "loop-a.jpg")
    os.symlink("loop-a.jpg", image_dir / "loop-b")
    return write_jsonl(tmp_path / "t.jsonl", [
        line("cat"),
        line("cat", url="images/a.jpg/y.jpg"),  # ENOTDIR: a file used as a folder
        line("cat", url="images/" + "x" * 300 + ".jpg"),  # ENAMETOOLONG
        line("cat", url="images/loop-a.jpg"),  # ELOOP
        line("cat", url="/dev/null"),  # a character device: not a regular file
        line("dog", url="images/b.jpg"),
    ])


def test_any_os_error_on_an_image_path_is_a_file_line_problem(odd_paths, capsys):
    assert main(["validate", str(odd_paths)]) == 1
    out = capsys.readouterr().out
    problems = _problems(out, odd_paths)
    assert sorted(problems) == [2, 3, 4, 5], out
    assert problems[2].startswith("image_url: a part of the path is a file, not a folder")
    assert problems[3].startswith("image_url: file name too long")
    assert problems[4].startswith("image_url: too many levels of symbolic links")
    assert problems[5].startswith("image_url: not a regular file (a character device)")
    assert "Traceback" not in out and "INVALID: 4 problem(s) on 4 line(s)" in out


def test_skip_invalid_keeps_the_good_lines_and_names_the_bad(odd_paths):
    loaded = read_dataset(odd_paths, skip_invalid=True)
    assert [r.line for r in loaded.records] == [1, 6]
    assert [(p.line, p.field) for p in loaded.problems] == [(n, "image_url") for n in (2, 3, 4, 5)]
    with pytest.raises(DataError, match=r"t\.jsonl:3: image_url: file name too long"):
        read_dataset(odd_paths)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_image_is_a_problem(tmp_path, image_dir, capsys):
    (image_dir / "a.jpg").chmod(0)
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat"), line("dog", url="images/b.jpg")])
    assert main(["validate", str(src)]) == 1
    assert _problems(capsys.readouterr().out, src)[1].startswith("image_url: permission denied")


def test_any_other_os_error_is_a_problem_too(tmp_path, image_dir, monkeypatch, capsys):
    # EIO (a failing disk or network mount) cannot be made on demand: the open itself is made to fail.
    real_open = os.open

    def failing_open(path, *args, **kwargs):
        if os.fspath(path).endswith("a.jpg"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat"), line("dog", url="images/b.jpg")])
    assert main(["validate", str(src)]) == 1
    assert _problems(capsys.readouterr().out, src) == {
        1: f"image_url: cannot read the file (Input/output error): {image_dir / 'a.jpg'}"}


def test_a_fifo_as_an_image_is_refused_without_hanging(tmp_path, image_dir):
    os.mkfifo(image_dir / "pipe.jpg")
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat", url="images/pipe.jpg"), line("dog", url="images/b.jpg")])
    env = {**os.environ, "PYTHONPATH": str(Path(visionml.__file__).resolve().parents[1])}
    # In a child process: before the fix the open blocks forever waiting for a writer.
    done = subprocess.run([sys.executable, "-m", "visionml", "validate", str(src)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stderr
    assert f"{src}:1: image_url: not a regular file (a named pipe): {image_dir / 'pipe.jpg'}" in done.stdout
    # training's decoder refuses it the same way, without blocking
    with pytest.raises(ValueError, match="named pipe"):
        load_rgb(image_dir / "pipe.jpg")


# ----------------------------------------------------------------------------- item 6: pixel counts


@pytest.mark.parametrize("check", [[], ["--no-image-check"]], ids=["images", "lines-only"])
def test_image_details_sizes_are_ascii_digits_and_bounded(tmp_path, image_dir, capsys, check):
    src = write_jsonl(tmp_path / "t.jsonl", [
        line("cat", image_details={"width": "²px", "height": "30px"}),
        line("cat", image_details={"width": 1e308, "height": 30}),
        line("cat", image_details={"width": 40, "height": 2 ** 40}),
        line("cat", image_details={"width": "٤٠px", "height": 30}),  # Arabic-Indic digits
        line("cat", image_details={"width": "40px", "height": 2 ** 31 - 1}),
    ])
    # Azure never reads image_details (sizes come from the image): what is wrong with it is a warning.
    assert main(["validate", str(src), *check]) == 0
    out = capsys.readouterr().out
    notes = {n: [t for t in texts if t.startswith("image_details")] for n, texts in _warnings(out, src).items()}
    notes = {n: texts for n, texts in notes.items() if texts}
    assert sorted(notes) == ([1, 2, 3, 4] if check else [1, 2, 3, 4, 5]), out
    assert notes[1] == ["image_details.width: cannot read '²px' as a positive pixel count (write 400 or \"400px\"); "
                        "ignored (the size is read from the image itself, as Azure does)"]
    assert notes[2][0].startswith("image_details.width: 1e+308 is over the largest image side")
    assert notes[3][0].startswith(f"image_details.height: {2 ** 40} is over the largest image side")
    assert notes[4][0].startswith("image_details.width: cannot read '٤٠px'")
    if not check:  # the image was opened: the size it declares differs from the real one
        assert notes[5] == [f"image_details: says 40x{2 ** 31 - 1}, the image is 40x30; the image's own size is "
                            "used, as Azure does"]
    assert "0" * 30 not in out and "Traceback" not in out


def _warnings(out: str, src) -> dict[int, list[str]]:
    """{line: ['field: reason', ...]} of the warnings validate printed for ``src``."""
    found: dict[int, list[str]] = {}
    for text in out.splitlines():
        if text.startswith(f"{src}:") and text.endswith(" [warning]"):
            number, rest = text[len(f"{src}:"):].split(": ", 1)
            found.setdefault(int(number), []).append(rest[:-len(" [warning]")])
    return found


# ----------------------------------------------------------------------------- item 11: MLTable roots


@pytest.mark.parametrize("entry", ["pattern: '../outside/*.jsonl'", "pattern: 'sub/../../outside/*.jsonl'",
                                   "folder: ../outside", "file: ../outside/x.jsonl"])
def test_mltable_entries_may_not_leave_the_mltable_folder(tmp_path, capsys, entry):
    write_image(tmp_path / "outside" / "images" / "a.jpg")
    write_jsonl(tmp_path / "outside" / "x.jsonl", [line("cat")])
    table = tmp_path / "data" / "MLTable"
    table.parent.mkdir()
    table.write_text(f"paths:\n  - {entry}\n")
    assert main(["validate", str(table.parent)]) == 1
    err = capsys.readouterr().err
    assert f"{table}: paths[0]: " in err and "escapes the MLTable's folder" in err, err


def test_mltable_absolute_pattern_is_the_users_choice(tmp_path, capsys):
    write_image(tmp_path / "outside" / "images" / "a.jpg")
    write_jsonl(tmp_path / "outside" / "x.jsonl", [line("cat")])
    table = tmp_path / "data" / "MLTable"
    table.parent.mkdir()
    table.write_text(f"paths:\n  - pattern: '{tmp_path / 'outside'}/*.jsonl'\n")
    assert main(["validate", str(table.parent)]) == 0, capsys.readouterr()


def test_mltable_pattern_that_matches_nothing_says_so(tmp_path, capsys):
    table = tmp_path / "MLTable"
    table.write_text("paths:\n  - pattern: '*.jsonl'\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert f"{table}: paths[0]: pattern '*.jsonl' matches no file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 12: messages


def test_invalid_json_names_the_file_line_and_its_column(tmp_path, image_dir, capsys):
    src = tmp_path / "t.jsonl"
    src.write_bytes(orjson.dumps(line("cat")) + b"\n\n"
                    + b'{"image_url": "images/a.jpg",\n'  # cut short: the parser says "line 2 column 1"
                    + b'{"image_url": "images/a.jpg", "label": cat}\r\n'
                    + b'{"image_url": "images/a.jpg", "label": "\xff"}\n')
    assert main(["validate", str(src)]) == 1
    out = capsys.readouterr().out
    assert _problems(out, src) == {
        3: "line: invalid JSON (unexpected end of data at column 30, the end of the line)",
        4: "line: invalid JSON (unexpected character, expected a JSON value at column 40)",
        5: "line: not UTF-8 (byte 0xff at column 41); save the file as UTF-8",
    }, out


def test_a_list_of_lists_label_reads_as_english(tmp_path, image_dir, capsys):
    src = write_jsonl(tmp_path / "t.jsonl", [line([[0.1, 0.2]]), line("cat")])
    assert main(["validate", str(src)]) == 1
    assert _problems(capsys.readouterr().out, src) == {
        1: "label: expected a class name, a list of class names or a list of objects, got a list of lists"}


@pytest.mark.parametrize("check", [[], ["--no-image-check"]], ids=["images", "lines-only"])
def test_image_size_summary_names_real_images(tmp_path, capsys, check):
    sizes = {"wide": (300, 10), "square": (50, 50), "tall": (20, 400)}
    for name, size in sizes.items():
        write_image(tmp_path / "images" / f"{name}.png", size=size)
    src = write_jsonl(tmp_path / "t.jsonl", [
        line("cat", url=f"images/{name}.png", image_details={"width": w, "height": h})
        for name, (w, h) in sizes.items()])
    assert main(["validate", str(src), *check]) == 0
    out = capsys.readouterr().out
    # by pixel count: 50x50 (2,500) < 300x10 (3,000) < 20x400 (8,000); per axis it said 20x10 min
    assert "Image sizes (3 known): 50x50 min, 300x10 median, 20x400 max (width x height, by pixel count)" in out, out
    assert main(["validate", str(src), "--json", *check]) == 0
    assert orjson.loads(capsys.readouterr().out)["summary"]["image_sizes"] == {
        "known": 3, "min": {"width": 50, "height": 50}, "median": {"width": 300, "height": 10},
        "max": {"width": 20, "height": 400}}


def test_predict_finds_every_image_format_validate_accepts(tmp_path, model_folder, capsys):
    model = model_folder("image_classification")
    for name, fmt in (("a.gif", "GIF"), ("b.webp", "WEBP"), ("c.png", "PNG")):
        write_image(tmp_path / "images" / name, fmt=fmt)
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model), str(tmp_path / "images"), "--output", str(out)]) == 0
    names = [Path(orjson.loads(text)["filename"]).name for text in out.read_bytes().splitlines()]
    assert names == ["a.gif", "b.webp", "c.png"]
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat", url=f"images/{n}") for n in names])
    assert main(["validate", str(src)]) == 0


# ----------------------------------------------------------------------------- item 1: sizes a model can take


def _thin_png(path: Path, size) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, 128).save(path)
    return path


def test_validate_flags_an_image_no_detector_can_take(tmp_path, image_dir, capsys):
    _thin_png(image_dir / "thin.png", (100_000, 1))
    src = write_jsonl(tmp_path / "t.jsonl", [line([box()]), line([box()], url="images/thin.png")])
    assert main(["validate", str(src)]) == 1
    problems = _problems(capsys.readouterr().out, src)
    assert sorted(problems) == [2]
    assert problems[2].startswith("image_url: image is 100000x1 pixels (aspect ratio 100000:1): resized to fit "
                                  "min_size 600 / max_size 1333 it would be 1333x0")
    assert "crop or pad it" in problems[2] and problems[2].endswith(str(image_dir / "thin.png"))


def test_validate_flags_an_image_no_classifier_can_take(tmp_path, image_dir, capsys):
    _thin_png(image_dir / "thin.png", (1, 100_000))
    src = write_jsonl(tmp_path / "t.jsonl", [line("cat"), line("dog", url="images/thin.png")])
    assert main(["validate", str(src)]) == 1
    problems = _problems(capsys.readouterr().out, src)
    assert sorted(problems) == [2]
    assert problems[2].startswith("image_url: image is 1x100000 pixels (aspect ratio 100000:1): resizing its "
                                  "shorter side to 256 would make it ")
    assert "6,553,600,000 pixels, over the limit of 89,478,485; crop it" in problems[2]


def test_read_dataset_checks_sizes_against_the_settings_it_is_given(tmp_path, image_dir):
    _thin_png(image_dir / "thin.png", (400, 1))
    src = write_jsonl(tmp_path / "t.jsonl", [line([box()]), line([box()], url="images/thin.png")])
    assert len(read_dataset(src).records) == 2  # no settings given: sizes are not judged
    assert len(read_dataset(src, model_settings={}).records) == 2  # defaults: 400:1 fits max_size 1333
    loaded = read_dataset(src, skip_invalid=True, model_settings={"min_size": 160, "max_size": 224})
    assert [r.line for r in loaded.records] == [1]
    assert "min_size 160 / max_size 224 it would be 224x0" in loaded.problems[0].reason
