"""`visionml predict --engine ray` against the single-process path: images/s end to end (model
loading and, for Ray, starting the workers included) for 1 and 2 Ray workers, on the same inputs
(issue 19: with 1 worker at least 0.8x the single process).

Each Ray worker holds one CPU and so runs torch with one thread: the single process is timed with
1 thread (what a worker has: the ratio is the engine's overhead) and with all of this machine's
threads up to 2 (what `visionml predict` uses here). Ray is started once (or joined: --address), so
every run pays what a `visionml predict --engine ray` run pays on a running cluster: new workers,
each loading the model. The rounds are interleaved (local, local, ray 1, ray 2, local, ...) so a
busy machine slows all alike; medians are printed, and what one Ray run costs before its first
image (a run of one image). Models are randomly initialised (no downloads). Usage:

    .venv/bin/python benchmarks/bench_ray.py [--images 200] [--rounds 3] [--address ADDR]
    .venv/bin/python benchmarks/bench_ray.py --smoke     # seconds: proves the script runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support's model folders

LABELS = ["circle", "square", "star", "triangle"]
CASES = [
    # name, task, model, image size, hyperparameters
    ("resnet18 @224", "image_classification", "resnet18", (256, 256), {}),
    ("fasterrcnn_mobilenet_v3_large_fpn @320", "image_object_detection", "fasterrcnn_mobilenet_v3_large_fpn",
     (320, 320), {"min_size": 320, "max_size": 320}),
]
SMOKE = [("resnet18 @64 (smoke)", "image_classification", "resnet18", (160, 120),
          {"validation_resize_size": 72, "validation_crop_size": 64})]


def timed_run(model, inputs, batch: int, workers: int | None) -> list[float]:
    """One scoring run as `visionml predict` makes it, in this process (workers None: the single
    process path, model loading included; else `--engine ray --workers N`, starting the workers
    included): the seconds from its start at which each line was written."""
    from visionml.predict import Predictor
    from visionml.predict.batch import score_inputs
    from visionml.predict.ray_engine import score_on_ray

    start = time.perf_counter()
    stamps = []
    write = lambda obj: stamps.append(time.perf_counter() - start)  # noqa: E731
    if workers is None:
        problems = score_inputs(Predictor.from_folder(model), inputs, write, batch)
    else:
        problems = score_on_ray(model, inputs, write, batch, options={"device": "cpu"}, workers=workers)
    assert not problems and len(stamps) == len(inputs), (problems, len(stamps))
    return stamps


def bench_case(tmp: Path, case, args) -> None:
    import torch

    from tests.support import make_untrained_model_folder
    from visionml.data.sample import make_sample_data
    from visionml.predict.batch import collect_inputs

    label, task, name, size, hp = case
    model = make_untrained_model_folder(tmp / name / "model", task, name, LABELS, hp)
    data = make_sample_data(task, tmp / name / "data", n=args.images, seed=0, size=size)["train"]
    inputs, _ = collect_inputs([str(data)])
    n = len(inputs)
    many = min(2, os.cpu_count() or 1)
    runs = {"local, 1 thread": (1, None), f"local, {many} threads": (many, None),
            "ray, 1 worker": (1, 1), "ray, 2 workers": (1, 2)}
    stamps = {key: [] for key in runs}
    threads = torch.get_num_threads()
    for _ in range(args.rounds):
        for key, (count, workers) in runs.items():
            torch.set_num_threads(count)
            stamps[key].append(timed_run(model, inputs, args.batch, workers))
    torch.set_num_threads(threads)
    # Steady: after the first batch of every worker, when the start-up (model loading, workers) is paid.
    first = {key: args.batch * (workers or 1) for key, (_, workers) in runs.items()}
    total = {key: n / statistics.median(s[-1] for s in runs_) for key, runs_ in stamps.items()}
    steady = {key: (n - first[key]) / statistics.median(s[-1] - s[first[key] - 1] for s in runs_)
              if n > first[key] else float("nan") for key, runs_ in stamps.items()}
    startup = {key: statistics.median(s[0] for s in runs_) for key, runs_ in stamps.items()}
    print(f"\n{label}: {n} images, batch {args.batch}, median of {args.rounds} interleaved rounds")
    print(f"{'run':18s} {'first line s':>12s} {'images/s':>9s} {'ratio':>6s} {'steady img/s':>13s} {'ratio':>6s}")
    base = "local, 1 thread"
    for key in runs:
        print(f"{key:18s} {startup[key]:12.2f} {total[key]:9.2f} {total[key] / total[base]:5.2f}x "
              f"{steady[key]:13.2f} {steady[key] / steady[base]:5.2f}x")
    print("ratio: against the single process with one thread (what each Ray worker has); steady: the images "
          "after each worker's first batch, per second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--address", default=None, help="a running Ray cluster (default: one started here)")
    parser.add_argument("--smoke", action="store_true", help="a few tiny images, one round, one small model")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.rounds, args.batch = 30, 1, 4
    os.environ.setdefault("VISIONML_OFFLINE", "1")
    import ray

    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:  # two CPUs: two workers at once, as on this 2-core machine
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 object_store_memory=200 * 1024 * 1024)
    print(f"ray {ray.__version__}, cluster {ray.cluster_resources().get('CPU', 0):g} CPU(s); "
          f"this machine {os.cpu_count()} CPU(s)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for case in SMOKE if args.smoke else CASES:
                bench_case(Path(tmp), case, args)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
