"""ONNX detector throughput: a graph exported for 16 images per run against one for 1 image
(``visionml export --format onnx --batch-size N --height H --width W``, Azure's batch generator's
arguments), in images per second.

Model: fasterrcnn_mobilenet_v3_large_fpn, weights=None (random: speed does not depend on the
values), 4 classes, exported at 320x320 (``--height 320 --width 320``) with the proposal counts
torchvision gives its 320 px variant (``rpn_pre_nms_top_n_test`` = ``rpn_post_nms_top_n_test``
= 150). A random RPN scores every anchor about 0.5 (its head starts at zero bias), past its 0.05
floor, so the box head runs on the full proposal count, as on a trained model's real images. A
random box classifier gives every class about 1/5, so boxes tie at the detection cap and the
export's check (onnxruntime against PyTorch) would see the runtimes break the ties differently;
its weights are scaled by 4, as the export tests do, to spread the scores. (At torchvision's
default 1000 proposals, a first run was stopped after 17 minutes on the loaded machine, the
process at 11 GiB resident, still in the batch-16 export.)

Two measurements, each interleaved (batch 1 and batch 16 alternate repeat by repeat, the first
of each pair swapping, so load from other processes hits both alike):

* ``graph``: ``session.run`` on the graph's input as Azure's doc's client builds it (16 images
  resized and normalised already): 16 runs of the batch-1 graph against 1 run of the batch-16 one;
* ``predict``: ``Predictor.predict`` with ``--backend onnx`` on 16 decoded 640x480 PIL images
  (resize to 320x320, the runs, boxes scaled back, Azure's objects), ``validation_batch_size`` 16.

The figure quoted is the median images/s of each, and the ratio of the medians.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_onnx_batch.py`` (about 5 minutes on
2 cores; ``--quick`` for fewer repeats).
"""

from __future__ import annotations

import argparse
import resource
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
from visionml.predict.onnx_backend import open_session
from visionml.tasks import DETECTION

from bench_export import images as pictures  # the same test pictures (a script beside this one)

NAME = "fasterrcnn_mobilenet_v3_large_fpn"
LABELS = ["circle", "square", "star", "triangle"]
SIDE = 320
IMAGES = 16


def model_folder(root: Path) -> Path:
    hp = resolve_hyperparameters(DETECTION, {"model_name": NAME, "min_size": SIDE, "max_size": SIDE,
                                             "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150})
    torch.manual_seed(0)
    model = build_model(NAME, DETECTION, len(LABELS), pretrained=False, hp=hp)
    with torch.no_grad():  # box scores spread apart, so no boxes tie at the detection cap
        model.roi_heads.box_predictor.cls_score.weight.mul_(4)
    return save_model_folder(root / NAME, model, make_manifest(DETECTION, NAME, LABELS, hp))


def export(model_dir: Path, out: Path, batch_size: int) -> Path:
    start = time.perf_counter()
    export_model(model_dir, out, "onnx", batch_size=batch_size, height=SIDE, width=SIDE)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  exported batch {batch_size} in {time.perf_counter() - start:.1f}s (peak memory so far {peak:.1f} GiB)",
          flush=True)
    return out


def client_input(images: list[Image.Image]) -> np.ndarray:
    """Azure's doc's preprocessing: resize to the graph's size, ImageNet-normalise, NCHW."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    arrays = [((np.asarray(im.resize((SIDE, SIDE)), np.float64) / 255 - mean) / std).transpose(2, 0, 1)
              for im in images]
    return np.stack(arrays).astype(np.float32)


def interleaved(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each of two callables, alternating (after one warm-up call each),
    the first of each pair swapping repeat by repeat."""
    for call in calls.values():
        call()
    names = list(calls)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def report(what: str, times: dict[str, list[float]]) -> tuple[float, float, float]:
    rate = {k: IMAGES / statistics.median(v) for k, v in times.items()}
    ratio = rate["batch 16"] / rate["batch 1"]
    spread = {k: f"{IMAGES / max(v):.2f}-{IMAGES / min(v):.2f}" for k, v in times.items()}
    print(f"  {what:8s} batch 1 {rate['batch 1']:6.2f} img/s ({spread['batch 1']})  batch 16 "
          f"{rate['batch 16']:6.2f} img/s ({spread['batch 16']})  ratio {ratio:.2f}x", flush=True)
    return rate["batch 1"], rate["batch 16"], ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of onnxruntime (default: PyTorch's, one per core)")
    parser.add_argument("--repeats", type=int, default=8, help="interleaved repeats of each measurement")
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    print(f"{NAME} at {SIDE}x{SIDE}, {IMAGES} images, {args.threads} thread(s), {repeats} repeats")
    images = pictures(IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model_folder(Path(tmp))
        folders = {n: export(model_dir, Path(tmp) / f"onnx-{n}", n) for n in (1, IMAGES)}
        sessions = {n: open_session(folders[n] / "model.onnx", "cpu", args.threads) for n in folders}
        data = client_input(images)
        flat = sessions[IMAGES].run(None, {"input": data})
        found = [len(flat[i]) for i in range(0, len(flat), 3)]
        print(f"  detections per image (graph, every score above 0): {statistics.mean(found):.0f}")
        graph = interleaved({"batch 1": lambda: [sessions[1].run(None, {"input": data[i:i + 1]})
                                                 for i in range(IMAGES)],
                             "batch 16": lambda: sessions[IMAGES].run(None, {"input": data})}, repeats)
        rows = [("graph", *report("graph", graph))]
        predictors = {f"batch {n}": visionml.load_model(folders[n], backend="onnx", validation_batch_size=IMAGES)
                      for n in folders}
        predicted = interleaved({k: (lambda p=p: p.predict(images)) for k, p in predictors.items()}, repeats)
        rows.append(("predict", *report("predict", predicted)))
    print("\n| measured | batch 1 images/s | batch 16 images/s | batch 16 / batch 1 |\n| --- | --- | --- | --- |")
    for what, one, sixteen, ratio in rows:
        print(f"| {what} | {one:.2f} | {sixteen:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
