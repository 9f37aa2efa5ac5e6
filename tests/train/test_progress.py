"""What `visionml train` shows while it runs when stderr is a log, not a terminal (make demo piped,
CI, nohup): plain progress lines, never a tqdm bar's carriage returns."""

from __future__ import annotations

import re

from visionml.cli import main
from visionml.train import loop

from tests.support import train_args

LINE = re.compile(r"^epoch 1  step (\d+)/(\d+)  loss \d+\.\d{4}  \d+\.\d+ img/s  \d+s$")


def test_plain_progress_lines_when_stderr_is_not_a_terminal(sample_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "LINE_SECONDS", 0.0)  # a line at every step instead of every 30 s
    assert main(train_args("multiclass", sample_data("multiclass"), tmp_path / "run",
                           "--set", "training_batch_size=2")) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    steps = [LINE.match(line) for line in err.splitlines() if line.startswith("epoch 1  step")]
    assert steps and all(steps), err
    assert [int(m.group(1)) for m in steps] == list(range(1, len(steps) + 1))
    assert {int(m.group(2)) for m in steps} == {len(steps)}  # 8 images in batches of 2: 4 steps
    assert len(steps) == 4


def test_no_lines_between_epochs_within_the_interval(sample_data, tmp_path, capsys):
    assert main(train_args("multiclass", sample_data("multiclass"), tmp_path / "run")) == 0
    err = capsys.readouterr().err
    assert "step" not in err and "epoch 1/1" in err  # a few seconds of training: only the epoch line


def test_progress_mode():
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert loop.progress_mode(None, Stream(True)) == "bar"
    assert loop.progress_mode(None, Stream(False)) == "lines"
    assert loop.progress_mode(True, Stream(False)) == "bar"
    assert loop.progress_mode(False, Stream(True)) == "off"  # sweeps' trials: their own lines
