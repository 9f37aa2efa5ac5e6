"""Issue 18 item 2: faults, each tried for real on `visionml` subprocesses.

* ``kill -9`` of training mid-epoch, then ``--resume``: the same weights as an uninterrupted run;
  SIGKILL while checkpoints are being saved: every checkpoint under its final name loads.
* SIGINT/SIGTERM of ``predict``, ``convert``, ``export``, ``evaluate`` while they write: the final
  name is absent or whole; a rerun completes.
* ``visionml serve`` under overload: 503 with ``Retry-After``, each 200 answer equal to the offline
  prediction of its own image, memory flat, full service after.
* A full disk (a real 2 MB tmpfs) during training and export: one error line, exit 1, earlier
  checkpoints intact.

Every process is started in a ``try`` whose ``finally`` kills it, so a failing test leaves none
behind. On CPU the same seed gives bit-identical runs (tests/train/test_resume.py), which is what
lets a resumed run be compared with an uninterrupted one exactly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support import FAST_TRAINING

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VISIONML_OFFLINE": "1"}


def _visionml(*args) -> list[str]:
    return [sys.executable, "-m", "visionml", *map(str, args)]


def _start(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(_visionml(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            **kw)


def _run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(_visionml(*args), capture_output=True, text=True, env=ENV, timeout=timeout)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def _wait_for(predicate, proc: subprocess.Popen, timeout=180.0, poll=0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    return False


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.name.endswith(".tmp"))


# ---- training: kill -9 mid-epoch, kill -9 during the save ----

def _train_cmd(data, output, epochs, *extra) -> list[str]:
    """tests/train/test_resume.py's settings, through the CLI: seed 3, no warm-up, no early stop."""
    sets = ["number_of_epochs=%d" % epochs, *FAST_TRAINING["image_classification"],
            "warmup_cosine_lr_warmup_epochs=0", "early_stopping=False", *extra]
    return ["train", "--task", "multiclass", "--training-data", data["train"], "--validation-data", data["val"],
            "--output", output, "--no-pretrained", "--preset", "cpu", "--seed", "3", "--precision", "fp32",
            "--device", "cpu", *[x for s in sets for x in ("--set", s)]]


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "weights.safetensors"), device="cpu")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert torch.equal(value, b[name]), name


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights(sample_data, tmp_path):
    data = sample_data("multiclass")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _run(*_train_cmd(data, whole, 3))
    assert done.returncode == 0, done.stderr

    proc = _start(*_train_cmd(data, killed, 3))
    try:
        # last.pt exists once epoch 1 is saved: epoch 2 is under way. Kill it there, mid-epoch.
        assert _wait_for(lambda: (killed / "checkpoints/last.pt").is_file(), proc), proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == -signal.SIGKILL
    state = _checkpoint(killed / "checkpoints/last.pt")
    assert state["epoch"] < 3 and not state["finished"], "the run finished before the kill: nothing was tried"

    resumed = _run("train", "--resume", "--output", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    _assert_same_weights(_weights(whole), _weights(killed))
    a, b = _checkpoint(whole / "checkpoints/last.pt"), _checkpoint(killed / "checkpoints/last.pt")
    assert b["finished"] and b["epoch"] == 3
    _assert_same_weights(a["model"], b["model"])
