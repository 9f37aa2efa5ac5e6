"""The same `visionml train` under torchrun: two CPU processes, gloo, DistributedDataParallel."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.support import train_args


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_one_model(sample_data, tmp_path):
    run = tmp_path / "ddp"
    args = train_args("multiclass", sample_data("multiclass"), run, "--device", "cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VISIONML_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "visionml", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DistributedDataParallel over 2 processes" in done.stderr
    assert done.stdout.count("model folder:") == 1  # rank 0 reports; every file is written once

    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and "accuracy" in metrics
    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert len(checkpoint["rng"]) == 2  # each rank's generators, for an exact resume
    assert not any(k.startswith("module.") for k in checkpoint["model"])  # plain model, not the DDP wrapper
