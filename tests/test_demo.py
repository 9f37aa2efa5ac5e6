"""`make demo`'s script as a user runs it with its output piped (not a terminal), at tiny sizes:
progress on the log, the endpoint's answer, and a second run that reuses the finished run or
resumes an interrupted one instead of training again from scratch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _demo(demo_dir: Path, epochs: int = 1) -> str:
    env = {**os.environ, "DEMO_DIR": str(demo_dir), "PY": sys.executable, "DEMO_IMAGES": "10",
           "DEMO_EPOCHS": str(epochs), "DEMO_SET": "min_size=64 max_size=96 training_batch_size=4",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.mark.slow
def test_demo_reuses_a_finished_run_and_resumes_an_interrupted_one(tmp_path):
    run = tmp_path / "runs" / "shapes-det"
    first = _demo(tmp_path)
    assert "training fasterrcnn" in first and "epoch 1/1" in first
    assert "endpoint answer:" in first and "run folder: " + str(run) in first

    again = _demo(tmp_path)
    assert "is finished, reusing it" in again and "training fasterrcnn" not in again
    assert "endpoint answer:" in again

    # Interrupted after epoch 1 of 2: what last.pt and config.json hold at that point.
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    checkpoint.update(finished=False, stop_reason="")
    torch.save(checkpoint, run / "checkpoints" / "last.pt")
    config = json.loads((run / "config.json").read_text())
    config["hyperparameters"]["number_of_epochs"] = 2
    (run / "config.json").write_text(json.dumps(config))
    resumed = _demo(tmp_path)
    assert "resuming the interrupted run" in resumed and "epoch 2/2" in resumed and "epoch 1/2" not in resumed
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["finished"]
