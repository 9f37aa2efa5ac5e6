"""fp32 ONNX vs int8 ONNX (``visionml export --quantize int8``) forward throughput: resnet18 at 224,
batch 1 and 16, or (``--model fasterrcnn_mobilenet_v3_large_fpn``) that detector at 320x320,
batch 1, whose int8 graph quantizes the backbone only; untrained weights (speed does not depend on them), in visionml's own onnxruntime
session settings (``predict.onnx_backend.session_options``). The two graphs are timed in turns,
REPEATS rounds, so that load from other processes falls on both alike; the median of each is
reported with the ratio.

    .venv/bin/python benchmarks/bench_quantize.py [--model NAME] [--threads N] [--repeats R] [--seconds S]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {  # name: (task, model, hyperparameters, export options, input shape at batch 1)
    "resnet18": ("image_classification", "resnet18", {}, {}, (3, 224, 224)),  # crop 224, as Azure's
    "fasterrcnn_mobilenet_v3_large_fpn": ("image_object_detection", "fasterrcnn_mobilenet_v3_large_fpn",
                                          {"min_size": 320, "max_size": 320}, {"height": 320, "width": 320},
                                          (3, 320, 320)),
}


def make_exports(root: Path, case: str) -> tuple[Path, Path]:
    from visionml.config import resolve_hyperparameters
    from visionml.data.sample import make_sample_data
    from visionml.export.onnx import export_onnx
    from visionml.export.quantize import QuantizeOptions, export_int8
    from visionml.modelio import make_manifest, save_model_folder
    from visionml.models.registry import build_model

    task, name, overrides, options, _ = CASES[case]
    labels = ["circle", "square", "star", "triangle"]
    hp = resolve_hyperparameters(task, {"model_name": name, **overrides})
    model = build_model(name, task, len(labels), pretrained=False, hp=hp, fetch_weights=False)
    model_dir = save_model_folder(root / "model", model, make_manifest(task, name, labels, hp))
    data = make_sample_data(task, root / "data", n=40, seed=0)
    export_onnx(model_dir, root / "fp32", **options)
    # Untrained: the accuracy guard is not what is measured here.
    export_int8(model_dir, root / "int8", None, QuantizeOptions(data["train"], data["val"], max_drop=1.0), **options)
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
    parser.add_argument("--model", choices=tuple(CASES), default="resnet18",
                        help="resnet18 at 224 (batch 1 and 16) or the detector at 320x320 (batch 1)")
    args = parser.parse_args()
    _, _, _, _, shape = CASES[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir, int8_dir = make_exports(Path(tmp), args.model)
        sessions = {name: open_session(d / "model.onnx", "cpu", args.threads)
                    for name, d in (("fp32", fp32_dir), ("int8", int8_dir))}
        sizes = {name: (d / "model.onnx").stat().st_size for name, d in (("fp32", fp32_dir), ("int8", int8_dir))}
        rng = np.random.default_rng(0)
        print(f"model.onnx: fp32 {sizes['fp32'] / 1e6:.1f} MB, int8 {sizes['int8'] / 1e6:.1f} MB")
        for batch_size in (1, 16) if args.model == "resnet18" else (1,):  # a detector graph's batch is fixed
            batch = rng.standard_normal((batch_size, *shape), dtype=np.float32)
            rates = {name: [] for name in sessions}
            for _ in range(args.repeats):
                for name, session in sessions.items():
                    rates[name].append(images_per_second(session, batch, args.seconds))
            median = {name: statistics.median(r) for name, r in rates.items()}
            spread = {name: f"{min(r):.1f}-{max(r):.1f}" for name, r in rates.items()}
            print(f"{args.model} {shape[1]}x{shape[2]} batch {batch_size}: fp32 {median['fp32']:.1f} img/s ({spread['fp32']}), "
                  f"int8 {median['int8']:.1f} img/s ({spread['int8']}), int8/fp32 {median['int8'] / median['fp32']:.2f}x")


if __name__ == "__main__":
    main()
