"""Predictor overhead: `m.predict(images)` on already-decoded PIL images vs a bare `model(x)`
forward in `torch.inference_mode()` on the same batch (issue 5: at most 1.15x).

Models are randomly initialised (no downloads); timings are interleaved (bare, predict, bare,
...) in one process so that a busy machine slows both alike. Usage:

    .venv/bin/python benchmarks/bench_predict.py [--repeats 7] [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from visionml.config import resolve_hyperparameters
from visionml.modelio import make_manifest, save_model_folder
from visionml.models.registry import build_model
from visionml.predict import Predictor
from visionml.tasks import DETECTION, MULTICLASS

LABELS = [f"class_{i}" for i in range(4)]
CASES = [
    # name, task, model, image size, hyperparameters
    ("resnet18 @224", MULTICLASS, "resnet18", (256, 256), {}),
    ("fasterrcnn_mobilenet_v3_large_fpn @320", DETECTION, "fasterrcnn_mobilenet_v3_large_fpn", (320, 320),
     {"min_size": 320, "max_size": 320}),
]


def make_predictor(root: Path, task: str, name: str, hp: dict) -> Predictor:
    hp = resolve_hyperparameters(task, {"model_name": name, **hp})
    torch.manual_seed(0)
    model = build_model(name, task, len(LABELS), pretrained=False, hp=hp)
    folder = save_model_folder(root / name, model, make_manifest(task, name, LABELS, hp))
    return Predictor.from_folder(folder)


def images(n: int, size) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def bench_case(predictor: Predictor, pils, repeats: int) -> tuple[float, float]:
    """Median seconds of (bare forward, predictor.predict) over interleaved repeats."""
    if predictor.task == MULTICLASS:
        x = torch.stack([predictor.preprocess(p) for p in pils])
    else:
        x = [predictor.preprocess(p) for p in pils]
    model = predictor.model

    def bare():
        with torch.inference_mode():
            model(x)

    def full():
        predictor.predict(pils)

    bare(), full()  # warm-up
    bare_times, full_times = [], []
    for _ in range(repeats):
        for fn, out in ((bare, bare_times), (full, full_times)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(bare_times), statistics.median(full_times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'model':42s} {'bare ms':>9s} {'predict ms':>11s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, task, name, size, hp in CASES:
            predictor = make_predictor(Path(tmp), task, name, hp)
            predictor.batch_size = args.batch
            bare, full = bench_case(predictor, images(args.batch, size), args.repeats)
            print(f"{label:42s} {bare * 1000:9.1f} {full * 1000:11.1f} {full / bare:6.3f}")


if __name__ == "__main__":
    main()
