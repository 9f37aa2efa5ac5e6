"""Files named like images that are not regular files: a named pipe would block a reader for ever,
so the converters report it from ``stat`` (one image list and one opener with validate)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


def convert(*argv) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: the old converter opened the pipe and never returned.
    return subprocess.run([sys.executable, "-m", "visionml", "convert", *map(str, argv)],
                          capture_output=True, text=True, timeout=120)


def test_a_named_pipe_in_a_class_folder_is_reported_not_hung_on(tmp_path):
    src = tmp_path / "tree"
    (src / "cat").mkdir(parents=True)
    Image.new("RGB", (20, 10), (200, 30, 30)).save(src / "cat" / "real.jpg")
    os.mkfifo(src / "cat" / "x.jpg")
    Image.new("RGB", (12, 12), (0, 0, 200)).save(src / "cat" / "anim.gif")  # gif is an image like validate says
    out = tmp_path / "out.jsonl"

    done = convert(src, "--from", "imagefolder", "--to", "jsonl", "-o", out)
    assert done.returncode == 1, done.stderr
    assert f"{src / 'cat' / 'x.jpg'}: image: image {src / 'cat' / 'x.jpg'}: not a regular file (a named pipe)" \
        in done.stderr
    assert not out.exists()

    done = convert(src, "--from", "imagefolder", "--to", "jsonl", "-o", out, "--skip-invalid")
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(os.path.basename(line["image_url"]) for line in lines) == ["anim.gif", "real.jpg"]
