"""Explanation speed and faithfulness: visionml's explain() against the bare library calls.

resnet18 (random weights: nothing is downloaded) at a 224 crop, one photograph (scikit-image's
"chelsea"), a real model folder and Predictor. Each round times every path once, interleaved,
so that a busy machine slows baseline and ours alike; medians over the rounds are reported.

The references are the calls Azure AutoML makes (explainability/methods.py): integrated gradients
and guided backprop inside captum's NoiseTunnel (smoothgrad, 5 samples, stdev 0.2, 5 per batch) on
the class logit, IG with internal_batch_size 5; guided Grad-CAM plain; XRAI saliency's own, which
computes its own IG on the probability. Faithfulness: Spearman rank correlation of our attributions
with the reference's (the noise seeded alike, so NoiseTunnel's draws are the same), plus the overlap
of XRAI's top-30% regions. "ours IG, internal batch 25" shows what a bigger IG batch would change.

    .venv/bin/python benchmarks/bench_explain.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

STEPS = 50


def make_predictor(folder: Path):
    from visionml.config import resolve_hyperparameters
    from visionml.modelio import make_manifest, save_model_folder
    from visionml.models.registry import build_model
    from visionml.predict import Predictor

    task = "image_classification"
    hp = resolve_hyperparameters(task, {"model_name": "resnet18"})  # resize 256, crop 224
    torch.manual_seed(0)
    model = build_model("resnet18", task, 4, pretrained=False, hp=hp)
    save_model_folder(folder, model, make_manifest(task, "resnet18", ["can", "carton", "milk", "water"], hp))
    return Predictor.from_folder(folder)


NOISE = {"nt_type": "smoothgrad", "nt_samples": 5, "stdevs": 0.2, "nt_samples_batch_size": 5}  # Azure's


def reference_paths(model, x, target):
    """The bare library calls, float32, as Azure's code makes them."""
    import saliency.core as saliency
    from captum.attr import GuidedBackprop, GuidedGradCam, IntegratedGradients, NoiseTunnel

    def probability(inp):
        return torch.softmax(model(inp), dim=1)

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        batch = torch.tensor(x_batch, dtype=torch.float32).permute(0, 3, 1, 2).requires_grad_(True)
        out = probability(batch)[:, target]
        grads = torch.autograd.grad(out.sum(), batch)[0]
        return {saliency.INPUT_OUTPUT_GRADIENTS: grads.permute(0, 2, 3, 1).numpy()}

    def seeded(fn):  # the same noise as visionml's generator seeded with 0
        def run():
            torch.manual_seed(0)
            return fn()
        return run

    x_hwc = x[0].permute(1, 2, 0).numpy().astype(np.float64)
    xrai_parameters = saliency.XRAIParameters(steps=STEPS, algorithm="fast")
    return {
        "integrated_gradients": seeded(lambda: NoiseTunnel(IntegratedGradients(model)).attribute(
            x, target=target, n_steps=STEPS, method="riemann_middle", internal_batch_size=5, **NOISE)[0]),
        "guided_backprop": seeded(lambda: NoiseTunnel(GuidedBackprop(model)).attribute(
            x.clone().requires_grad_(True), target=target, **NOISE)[0]),
        "guided_gradcam": lambda: GuidedGradCam(model, model.layer4).attribute(x, target=target)[0],
        "xrai": lambda: saliency.XRAI().GetMask(x_hwc, call_model, extra_parameters=xrai_parameters),
        "xrai (saliency, batch_size=25)": lambda: saliency.XRAI().GetMask(
            x_hwc, call_model, extra_parameters=xrai_parameters, batch_size=25),
    }


def timed(fn):
    """(wall seconds, this process's CPU seconds, result): on a shared machine the CPU time is what the
    call costs, the wall time what it cost while others ran."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - start, time.process_time() - cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--algorithms", nargs="+", default=["integrated_gradients", "guided_backprop",
                                                            "guided_gradcam", "xrai"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import warnings

    from skimage import data

    from visionml.explain import explain, explain_arrays
    from visionml.explain.methods import bf16_available

    warnings.filterwarnings("ignore", category=UserWarning)  # captum's notes about hooks and requires_grad
    with tempfile.TemporaryDirectory() as tmp:
        predictor = make_predictor(Path(tmp) / "model")
    image = Image.fromarray(data.chelsea())
    probs = predictor.raw_predict([image])[0]
    target = int(np.argmax(probs))
    x = predictor.preprocess(image)[None]
    model = predictor.model
    references = reference_paths(model, x, target)
    algorithms = args.algorithms
    references = {name: fn for name, fn in references.items() if name.split(" ")[0] in algorithms}
    load_before = os.getloadavg()[0]

    def ours(algorithm):
        params = {"xai_algorithm": algorithm, "n_steps": STEPS, "visualizations": True, "attributions": True}
        return lambda: explain(predictor, image, probs, params)

    from visionml.explain import methods

    def ours_ig_batch(rows):
        def run():
            saved, methods.IG_INTERNAL_BATCH = methods.IG_INTERNAL_BATCH, rows
            try:
                return ours("integrated_gradients")()
            finally:
                methods.IG_INTERNAL_BATCH = saved
        return run

    (first_call, _), _ = timed(ours("guided_backprop"))  # makes the private model copy once
    times = {name: [] for name in [*references, *(f"ours {a}" for a in algorithms)]}
    if "integrated_gradients" in algorithms:
        times["ours IG, internal batch 25"] = []
    outputs = {}
    for _ in range(args.rounds):
        for algorithm in algorithms:
            for name in [n for n in references if n.startswith(algorithm)]:
                seconds, outputs[name] = timed(references[name])
                times[name].append(seconds)
            seconds, _ = timed(ours(algorithm))
            times[f"ours {algorithm}"].append(seconds)
        if "integrated_gradients" in algorithms:
            seconds, _ = timed(ours_ig_batch(25))
            times["ours IG, internal batch 25"].append(seconds)

    # Faithfulness: our arrays (same parameters) against the references' last outputs.
    faithfulness = {}
    for algorithm in algorithms:
        (ours_result,) = explain_arrays(predictor, image, probs, {"xai_algorithm": algorithm, "n_steps": STEPS,
                                                                  "visualizations": False})
        reference = outputs[algorithm]
        reference = reference.detach().numpy() if isinstance(reference, torch.Tensor) else reference
        mine = ours_result.attribution[0] if algorithm == "xrai" else ours_result.attribution
        rho = spearmanr(mine.ravel(), np.asarray(reference).ravel()).statistic
        extra = ""
        if algorithm == "xrai":
            top_ours = mine >= np.percentile(mine, 70)
            top_ref = reference >= np.percentile(reference, 70)
            extra = f"; top-30% region IoU {np.sum(top_ours & top_ref) / np.sum(top_ours | top_ref):.3f}"
        else:
            extra = f"; max |diff| / max |ref| {np.abs(mine - reference).max() / np.abs(reference).max():.2e}"
        faithfulness[algorithm] = f"Spearman {rho:.4f}{extra}"

    print(f"torch {torch.__version__}, threads {args.threads}, bf16 autocast {'on' if bf16_available(x.device) else 'off'}, "
          f"rounds {args.rounds}; first explain() call (private model copy) {first_call:.3f} s")
    print(f"load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'path':42s} {'median s':>9s} {'min s':>7s} {'median CPU s':>13s}")
    for name, values in times.items():
        walls, cpus = [v[0] for v in values], [v[1] for v in values]
        print(f"{name:42s} {statistics.median(walls):9.3f} {min(walls):7.3f} {statistics.median(cpus):13.3f}")
    print("speed-up (median bare library / median ours, same rounds, wall time):")

    def median_wall(name):
        return statistics.median(v[0] for v in times[name])

    for algorithm in algorithms:
        print(f"  {algorithm:22s} x{median_wall(algorithm) / median_wall(f'ours {algorithm}'):.2f}   "
              f"faithfulness: {faithfulness[algorithm]}")
    if "integrated_gradients" in algorithms:
        ratio = median_wall("ours integrated_gradients") / median_wall("ours IG, internal batch 25")
        print(f"  IG internal batch 25 vs 5: x{ratio:.2f}")

if __name__ == "__main__":
    main()
