"""visionml.fileio, the one place that writes files and folders: the JSON writer (numpy values,
NaN refused, atomic), folders created with the user's umask (not mkdtemp's 0700), and the
download cache, which writes through it too."""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager

import numpy as np
import pytest

from visionml import fileio
from visionml.cli import main
from visionml.errors import VisionMLError


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# ---- the JSON writer ----

def test_numpy_values_and_paths_are_written_as_plain_json(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    fileio.write_json(target, {"accuracy": np.float32(0.75), "count": np.int64(3), "flag": np.bool_(True),
                               "per_class": np.array([0.5, 1.0]), "where": tmp_path, "plain": [1, "a", None]})
    text = target.read_text()
    assert text.endswith("}\n") and text.startswith("{\n  ")  # indented, one trailing newline
    assert json.loads(text) == {"accuracy": 0.75, "count": 3, "flag": True, "per_class": [0.5, 1.0],
                                "where": str(tmp_path), "plain": [1, "a", None]}


@pytest.mark.parametrize("value, where", [
    ({"per_label": {"cat": {"recall": float("nan")}}}, "per_label.cat.recall is nan"),
    ({"scores": [0.5, np.float32("inf")]}, "scores[1] is inf"),
    ({"curve": np.array([0.1, np.nan])}, "curve[1] is nan"),
])
def test_nan_and_infinity_are_refused_naming_the_key_and_nothing_is_written(tmp_path, value, where):
    target = tmp_path / "metrics.json"
    target.write_text('{"previous": true}\n')
    with pytest.raises(ValueError) as info:
        fileio.write_json(target, value)
    assert str(info.value) == f"cannot write {target}: {where}, which JSON cannot hold"
    assert target.read_text() == '{"previous": true}\n' and leftovers(tmp_path) == []


def test_a_json_write_that_fails_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    fileio.write_json(target, {"version": 1})

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))

    monkeypatch.setattr(fileio.os, "replace", full_disk)
    with pytest.raises(VisionMLError, match=f"cannot write {target}: No space left on device; free some space"):
        fileio.write_json(target, {"version": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1} and leftovers(tmp_path) == []


# ---- folders: the umask ----

@pytest.mark.parametrize("mask, mode", [(0o022, 0o755), (0o077, 0o700)])
def test_an_atomic_folder_follows_the_umask(tmp_path, mask, mode):
    target = tmp_path / "out"
    with umask(mask):
        with fileio.atomic_folder(target) as staging:
            assert oct(staging.stat().st_mode & 0o777) == oct(mode)
            (staging / "a.txt").write_text("a")
    assert oct(target.stat().st_mode & 0o777) == oct(mode)
    assert (target / "a.txt").read_text() == "a" and leftovers(tmp_path) == []


def test_an_atomic_folder_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_folder(target) as staging:
            (staging / "new.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"] and leftovers(tmp_path) == []
    with fileio.atomic_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"] and leftovers(tmp_path) == []


def test_publishing_into_a_folder_keeps_other_files(tmp_path):
    target = tmp_path / "export"
    (target / "sub").mkdir(parents=True)
    (target / "README").write_text("mine")
    (target / "sub" / "stale").write_text("stale")
    with fileio.staging_folder(target) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "fresh").write_text("fresh")
        (staging / "visionml.json").write_text("{}")
        fileio.publish_folder(staging, target, last=("visionml.json",))
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "README", "sub", "sub/fresh", "visionml.json"]
    assert leftovers(tmp_path) == []


def test_a_converted_folder_follows_the_umask(tmp_path):
    """`visionml convert --to yolo` built its folder with mkdtemp: 0700 whatever the umask."""
    data = tmp_path / "data"
    assert main(["sample-data", "--task", "image_object_detection", "-o", str(data), "--n", "4", "--size", "160x120"]) == 0
    out = tmp_path / "yolo"
    with umask(0o022):
        assert main(["convert", str(data / "train.jsonl"), "--from", "jsonl", "--to", "yolo", "-o", str(out)]) == 0
    folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in folders} == \
        {p.relative_to(tmp_path).as_posix(): oct(0o755) for p in folders}
    assert leftovers(tmp_path) == []


# ---- the download cache ----

def _fake_download(url, out, timeout, max_bytes):
    out.write(b"image bytes")


def test_downloaded_images_follow_the_umask(tmp_path, monkeypatch):
    from visionml.data import resolve

    monkeypatch.setattr(resolve, "_download", _fake_download)
    with umask(0o022):
        path = resolve.fetch("https://example.invalid/cat.jpg", tmp_path / "cache")
    assert path.read_bytes() == b"image bytes"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # mkstemp made it 0600
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_cache_that_cannot_be_written_is_a_clear_value_error(tmp_path, monkeypatch):
    """The readers catch ValueError per image: a cache under a file must be one, naming the file."""
    from visionml.data import resolve

    monkeypatch.setattr(resolve, "_download", _fake_download)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError) as info:
        resolve.fetch("https://example.invalid/cat.jpg", blocker / "cache")
    message = str(info.value)
    assert message.startswith(f"cannot write {blocker / 'cache'}")
    assert "a part of the path is a file, not a folder" in message and resolve.CACHE_ENV in message
