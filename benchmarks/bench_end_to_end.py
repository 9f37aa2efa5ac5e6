"""End to end: ``m.predict([path])`` on a JPEG file, decoding, resize, normalisation and
postprocessing included, for the torch backend, the onnx backend (fp32 export) and the onnx
backend on the int8 export (``visionml export --quantize int8``); resnet18 at 224 (resize 256,
crop 224), batch 1, random weights (speed does not depend on them), 4 classes (issue 21 items 1
and 5: onnx >= 1.5x torch, int8 >= 2.5x).

Each round calls every predictor once, in turn, so load from other processes falls on all three
alike; the figures are medians over the rounds, the ratios torch's median over each one's. A
breakdown of each call (decode, preprocess, network, the rest) is timed the same way, to show
where the time goes. Threads: ``--threads``, else ``visionml.predict.threads.default_threads()``
(PyTorch's count within this machine's CPUs), set for PyTorch and the onnxruntime sessions alike.

    .venv/bin/python benchmarks/bench_end_to_end.py [--rounds 60] [--threads N] [--no-int8] [--smoke]

``--smoke``: 5 rounds (a check that it runs; the figures mean nothing). The int8 export
calibrates on 40 sample-data images and takes a minute or so on 2 cores.
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

LABELS = ["circle", "square", "star", "triangle"]
TASK, MODEL = "image_classification", "resnet18"
HP = {"model_name": MODEL, "validation_resize_size": 256, "validation_crop_size": 224}


def make_models(root: Path, int8: bool) -> dict[str, tuple[Path, str]]:
    """{label: (folder, backend)}: the model folder, its fp32 ONNX export and (``int8``) its int8 one."""
    from visionml.config import resolve_hyperparameters
    from visionml.export.onnx import export_onnx
    from visionml.modelio import make_manifest, save_model_folder
    from visionml.models.registry import build_model

    hp = resolve_hyperparameters(TASK, HP)
    torch.manual_seed(0)
    model = build_model(MODEL, TASK, len(LABELS), pretrained=False, hp=hp, fetch_weights=False)
    model_dir = save_model_folder(root / "model", model, make_manifest(TASK, MODEL, LABELS, hp))
    export_onnx(model_dir, root / "onnx")
    out = {"torch": (model_dir, "torch"), "onnx": (root / "onnx", "onnx")}
    if int8:
        from visionml.data.sample import make_sample_data
        from visionml.export.quantize import QuantizeOptions, export_int8

        data = make_sample_data(TASK, root / "data", n=40, seed=0)
        start = time.perf_counter()
        # Untrained: the accuracy guard is not what is measured here.
        export_int8(model_dir, root / "int8", None, QuantizeOptions(data["train"], data["val"], max_drop=1.0))
        print(f"int8 export: {time.perf_counter() - start:.0f} s", flush=True)
        out["onnx-int8"] = (root / "int8", "onnx")
    return out


def photo(path: Path) -> Path:
    """A 640x480 JPEG with smooth regions and edges (random noise would be an unusually costly decode)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((640, 480), Image.BICUBIC)
    pixels = np.array(image)
    pixels[120:360, 200:440] = (230, 200, 40)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def stages(predictor, path: str) -> dict[str, float]:
    """One call split into its parts, seconds each: what ``Predictor.predict`` does, in order."""
    from visionml.predict.decode import read_header

    t0 = time.perf_counter()
    pil = read_header(path, predictor.max_pixels).decode(predictor.max_pixels)
    t1 = time.perf_counter()
    batch = predictor.task.batch([predictor.preprocess(pil)])
    t2 = time.perf_counter()
    outputs = predictor.backend.run(batch)
    t3 = time.perf_counter()
    predictor.to_output(predictor.task.postprocess(outputs, predictor.settings)[0], pil, path)
    t4 = time.perf_counter()
    return {"decode": t1 - t0, "preprocess": t2 - t1, "network": t3 - t2, "rest": t4 - t3}


def main() -> None:
    from visionml.predict import Predictor
    from visionml.predict.threads import use_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: this machine's)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 export (a minute of calibration)")
    parser.add_argument("--smoke", action="store_true", help="5 rounds: does it run")
    args = parser.parse_args()
    rounds = 5 if args.smoke else args.rounds
    threads = use_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = str(photo(root / "photo.jpg"))
        predictors = {name: Predictor.from_folder(folder, backend=backend, threads=threads)
                      for name, (folder, backend) in make_models(root, not args.no_int8).items()}
        for predictor in predictors.values():  # warm-up
            predictor.predict([path])
            stages(predictor, path)
        calls = {name: [] for name in predictors}
        parts = {name: [] for name in predictors}
        for _ in range(rounds):
            for name, predictor in predictors.items():
                start = time.perf_counter()
                predictor.predict([path])
                calls[name].append(time.perf_counter() - start)
                parts[name].append(stages(predictor, path))
    print(f"resnet18 @224 (resize 256, crop 224), batch 1, m.predict on a 640x480 JPEG file; {threads} intra-op "
          f"thread(s); torch {torch.__version__}; medians of {rounds} interleaved rounds")
    torch_ms = 1000 * statistics.median(calls["torch"])
    print(f"{'backend':10s} {'ms/call':>8s} {'vs torch':>9s} | {'decode':>7s} {'preproc':>7s} {'network':>8s} {'rest':>6s}")
    for name in predictors:
        ms = 1000 * statistics.median(calls[name])
        split = {k: 1000 * statistics.median(p[k] for p in parts[name]) for k in parts[name][0]}
        print(f"{name:10s} {ms:8.1f} {torch_ms / ms:8.2f}x | {split['decode']:7.1f} {split['preprocess']:7.1f} "
              f"{split['network']:8.1f} {split['rest']:6.1f}")


if __name__ == "__main__":
    main()
