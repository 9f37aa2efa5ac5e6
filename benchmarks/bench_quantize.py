"""fp32 ONNX vs int8 ONNX (``visionml export --quantize int8``) forward throughput: resnet18 at 224,
batch 1 and 16, untrained weights (speed does not depend on them), in visionml's own onnxruntime
session settings (``predict.onnx_backend.session_options``). The two graphs are timed in turns,
REPEATS rounds, so that load from other processes falls on both alike; the median of each is
reported with the ratio.

    .venv/bin/python benchmarks/bench_quantize.py [--threads N] [--repeats R] [--seconds S]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_exports(root: Path) -> tuple[Path, Path]:
    from visionml.config import resolve_hyperparameters
    from visionml.data.sample import make_sample_data
    from visionml.export.onnx import export_onnx
    from visionml.export.quantize import QuantizeOptions, export_int8
    from visionml.modelio import make_manifest, save_model_folder
    from visionml.models.registry import build_model

    task, labels = "image_classification", ["circle", "square", "star", "triangle"]
    hp = resolve_hyperparameters(task, {"model_name": "resnet18"})  # crop 224, as Azure's
    model = build_model("resnet18", task, len(labels), pretrained=False, hp=hp)
    model_dir = save_model_folder(root / "model", model, make_manifest(task, "resnet18", labels, hp))
    data = make_sample_data(task, root / "data", n=40, seed=0)
    export_onnx(model_dir, root / "fp32")
    # Untrained: the accuracy guard is not what is measured here.
    export_int8(model_dir, root / "int8", None, QuantizeOptions(data["train"], data["val"], max_drop=1.0))
    return root / "fp32", root / "int8"


def images_per_second(session, batch: np.ndarray, seconds: float) -> float:
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, feed)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def main() -> None:
    from visionml.predict.onnx_backend import open_session

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's count)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per graph, batch and round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir, int8_dir = make_exports(Path(tmp))
        sessions = {name: open_session(d / "model.onnx", "cpu", args.threads)
                    for name, d in (("fp32", fp32_dir), ("int8", int8_dir))}
        sizes = {name: (d / "model.onnx").stat().st_size for name, d in (("fp32", fp32_dir), ("int8", int8_dir))}
        rng = np.random.default_rng(0)
        print(f"model.onnx: fp32 {sizes['fp32'] / 1e6:.1f} MB, int8 {sizes['int8'] / 1e6:.1f} MB")
        for batch_size in (1, 16):
            batch = rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32)
            rates = {name: [] for name in sessions}
            for _ in range(args.repeats):
                for name, session in sessions.items():
                    rates[name].append(images_per_second(session, batch, args.seconds))
            median = {name: statistics.median(r) for name, r in rates.items()}
            spread = {name: f"{min(r):.1f}-{max(r):.1f}" for name, r in rates.items()}
            print(f"resnet18 224 batch {batch_size}: fp32 {median['fp32']:.1f} img/s ({spread['fp32']}), "
                  f"int8 {median['int8']:.1f} img/s ({spread['int8']}), int8/fp32 {median['int8'] / median['fp32']:.2f}x")


if __name__ == "__main__":
    main()
