"""The onnx backend against the torch backend, in ms per image through ``Predictor.predict``.

Models (random weights: speed does not depend on them), each saved as a model folder and
exported with ``visionml.export.export_model(..., "onnx")``:

* resnet18 and mobilenet_v3_large, 10 classes, resize 256 / crop 224, batch 1 and 16;
* fasterrcnn_mobilenet_v3_large_fpn, min_size 320 / max_size 640, batch 1 (one 640x480 image
  scaled to 320x427 inside the model), Azure's default thresholds.

Inputs are decoded PIL images (640x480), so the figures are preprocessing + network +
postprocessing, what a user's ``m.predict`` costs, without JPEG decoding. Both backends use the
same thread count (``--threads``, default PyTorch's: one per core; the onnx backend follows
``torch.get_num_threads()``). The two backends alternate call by call,
so load from other processes on a shared machine hits both alike; the ratio is the median of
torch's times over the median of onnx's. It also checks the answers agree (classification
probabilities within 1e-4).

Run: ``.venv/bin/python benchmarks/bench_export.py`` (a few minutes on 2 cores).
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

import visionml
from visionml.config import resolve_hyperparameters
from visionml.export import export_model
from visionml.modelio import make_manifest, save_model_folder
from visionml.models.registry import build_model
from visionml.tasks import DETECTION, MULTICLASS

LABELS = [f"class_{i}" for i in range(10)]
CASES = [  # (model, task, batch size, rounds)
    ("resnet18", MULTICLASS, 1, 40),
    ("resnet18", MULTICLASS, 16, 6),
    ("mobilenet_v3_large", MULTICLASS, 1, 40),
    ("mobilenet_v3_large", MULTICLASS, 16, 6),
    ("fasterrcnn_mobilenet_v3_large_fpn", DETECTION, 1, 15),
]
HP = {MULTICLASS: {"validation_resize_size": 256, "validation_crop_size": 224},
      DETECTION: {"min_size": 320, "max_size": 640}}


def make_folders(name: str, task: str, root: Path) -> tuple[Path, Path]:
    hp = resolve_hyperparameters(task, {"model_name": name, **HP[task]})
    torch.manual_seed(0)
    model = build_model(name, task, len(LABELS), pretrained=False, hp=hp)
    model_dir = save_model_folder(root / name, model, make_manifest(task, name, LABELS, hp))
    start = time.perf_counter()
    onnx_dir = export_model(model_dir, root / f"{name}-onnx", "onnx")
    print(f"  exported {name} in {time.perf_counter() - start:.1f}s", flush=True)
    return model_dir, onnx_dir


def images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
        pixels[120:360, 200:440] = rng.integers(0, 255, size=3)
        out.append(Image.fromarray(pixels))
    return out


def interleaved(predictors: dict, batch: list, rounds: int) -> dict[str, list[float]]:
    """Seconds per call, backends alternating call by call (after two warm-up calls each)."""
    for predictor in predictors.values():
        predictor.predict(batch)
        predictor.predict(batch)
    times = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(batch)
            times[name].append(time.perf_counter() - start)
    return times


def check_agreement(predictors: dict, batch: list, task: str) -> None:
    if task != MULTICLASS:
        return
    a, b = (predictor.predict(batch[:2]) for predictor in predictors.values())
    worst = max(float(np.max(np.abs(np.subtract(x["probs"], y["probs"])))) for x, y in zip(a, b))
    assert worst <= 1e-4, f"onnx and torch probabilities differ by {worst}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of both backends (default: PyTorch's, one per core)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads} (torch intra-op = onnxruntime intra-op)")
    rows = []
    folders = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, task, batch_size, rounds in CASES:
            if name not in folders:
                folders[name] = make_folders(name, task, Path(tmp))
            model_dir, onnx_dir = folders[name]
            settings = {"validation_batch_size": batch_size}
            predictors = {"torch": visionml.load_model(model_dir, **settings),
                          "onnx": visionml.load_model(onnx_dir, backend="onnx", **settings)}
            batch = images(batch_size)
            check_agreement(predictors, batch, task)
            times = interleaved(predictors, batch, max(3, rounds // 4) if args.quick else rounds)
            ms = {k: 1000 * statistics.median(v) / batch_size for k, v in times.items()}
            rows.append((name, batch_size, ms["torch"], ms["onnx"], ms["torch"] / ms["onnx"]))
            print(f"  {name:36s} batch {batch_size:2d}: torch {ms['torch']:8.1f} ms/img  onnx {ms['onnx']:8.1f} "
                  f"ms/img  onnx speed-up {rows[-1][4]:.2f}x", flush=True)
    print("\n| model | batch | torch ms/image | onnx ms/image | onnx speed-up |\n| --- | --- | --- | --- | --- |")
    for name, batch_size, t, o, ratio in rows:
        size = "320-640 px" if "rcnn" in name else "224"
        print(f"| {name} ({size}) | {batch_size} | {t:.1f} | {o:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
