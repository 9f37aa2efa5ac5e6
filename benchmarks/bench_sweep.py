"""Sweep overhead and early termination (issue 7), measured in one run.

1. Overhead: 8 trials of a tiny model on sample data, max_concurrent_trials 2; the sweep's wall
   time against the sum of the trials' own training times divided by 2 (target <= 1.2x).
2. Early termination: the same 8 configurations (a grid) with and without a bandit policy;
   wall time and best primary metric of each (target: faster, best within 0.02).

Run: .venv/bin/python benchmarks/bench_sweep.py [--epochs 4] [--n 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

from visionml.cli import main
from visionml.data.sample import make_sample_data

PARAMS = {"number_of_epochs": 4, "training_crop_size": 64, "validation_resize_size": 64, "validation_crop_size": 64,
          "training_batch_size": 8, "model_name": "mobilenet_v3_small", "optimizer": "sgd", "precision": "fp32",
          "early_stopping": False}
LRS = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]


def write_job(path: Path, data: dict, params: dict, policy: str | None) -> Path:
    lines = ["type: automl", "task: image_classification",
             f"training_data: {{path: {data['train']}, type: mltable}}",
             f"validation_data: {{path: {data['val']}, type: mltable}}",
             "limits: {max_trials: 8, max_concurrent_trials: 2}",
             "training_parameters: " + json.dumps(params),
             "sweep:", "  sampling_algorithm: grid"]
    if policy:
        lines.append(f"  early_termination: {policy}")
    lines.append("search_space: [{learning_rate: " + json.dumps(f"choice({', '.join(map(str, LRS))})") + "}]")
    path.write_text("\n".join(lines) + "\n")
    return path


def sweep(job: Path, out: Path) -> tuple[float, list[dict]]:
    start, started_at = time.perf_counter(), time.time()
    code = main(["run", str(job), "--output", str(out), "--no-pretrained"])
    wall = time.perf_counter() - start
    timeline(out, started_at)
    if code != 0:
        sys.exit(f"sweep failed ({code})")
    with open(out / "trials.csv", newline="") as f:
        return wall, list(csv.DictReader(f))


def load_study(out: Path):
    """The Optuna study of the sweep in run folder ``out`` (sweep.json names its storage and study)."""
    import optuna

    from visionml.sweep.storage import open_storage

    info = json.loads((out / "sweep.json").read_text())
    return optuna.load_study(study_name=info["study"], storage=open_storage(info["storage"]))


def train_seconds(out: Path) -> float:
    # A failed trial (lr 0.3 diverges) has no train_seconds but held its slot: count its process's
    # wall seconds, as measured by the sweep.
    return sum(float(t.user_attrs.get("train_seconds") or t.user_attrs.get("seconds") or 0)
               for t in load_study(out).trials)


def timeline(out: Path, started: float) -> None:
    """Each trial's start and end in seconds since the command started: gaps between a trial's end
    and the next start on that slot are the sweep's own overhead; a slot idle at the end is packing."""
    for t in sorted(load_study(out).trials, key=lambda t: t.datetime_start):
        own = t.user_attrs.get("train_seconds")
        print(f"  trial {t.number}: {t.datetime_start.timestamp() - started:6.2f} -> "
              f"{t.datetime_complete.timestamp() - started:6.2f} s, {t.state.name.lower()}"
              + (f", own {own:.2f} s" if own else ""))


def main_bench() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n", type=int, default=60)
    args = ap.parse_args()
    params = {**PARAMS, "number_of_epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_sample_data("image_classification", tmp / "data", n=args.n, seed=0, size=(160, 120))
        plain_job = write_job(tmp / "plain.yml", data, params, None)
        bandit_job = write_job(tmp / "bandit.yml", data, params,
                               "{type: bandit, slack_factor: 0.1, evaluation_interval: 1, delay_evaluation: 1}")
        wall_plain, rows_plain = sweep(plain_job, tmp / "plain")
        own = train_seconds(tmp / "plain")
        wall_bandit, rows_bandit = sweep(bandit_job, tmp / "bandit")
        best = lambda rows: max(float(r["primary_metric"]) for r in rows if r["primary_metric"])  # noqa: E731
        pruned = sum(r["status"] == "pruned" for r in rows_bandit)
        print(f"overhead: wall {wall_plain:.1f} s, trials' own training {own:.1f} s, "
              f"ratio wall / (own / 2) = {wall_plain / (own / 2):.2f} (target <= 1.2)")
        print(f"early termination: no policy {wall_plain:.1f} s best {best(rows_plain):.3f}; "
              f"bandit {wall_bandit:.1f} s best {best(rows_bandit):.3f}, {pruned} of 8 pruned; "
              f"time ratio {wall_bandit / wall_plain:.2f}")


if __name__ == "__main__":
    main_bench()
