"""Explanation speed and faithfulness: visionml's explain() against the bare library calls.

resnet18 (random weights: nothing is downloaded) at a 224 crop, one photograph (scikit-image's
"chelsea"), a real model folder and Predictor. Each round times every path once, interleaved,
so that a busy machine slows baseline and ours alike; medians over the rounds are reported.

Faithfulness: Spearman rank correlation of our attributions with the reference path's (the
bare library call in float32: captum IG with its default batching, saliency's XRAI computing
its own IG and segments), plus the overlap of XRAI's top-30% regions.

    .venv/bin/python benchmarks/bench_explain.py [--rounds 5] [--threads 2]
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


def reference_paths(model, x, target):
    """The bare library calls, float32, each library's defaults apart from steps/algorithm."""
    import saliency.core as saliency
    from captum.attr import GuidedBackprop, GuidedGradCam, IntegratedGradients

    def probability(inp):
        return torch.softmax(model(inp), dim=1)

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        batch = torch.tensor(x_batch, dtype=torch.float32).permute(0, 3, 1, 2).requires_grad_(True)
        out = probability(batch)[:, target]
        grads = torch.autograd.grad(out.sum(), batch)[0]
        return {saliency.INPUT_OUTPUT_GRADIENTS: grads.permute(0, 2, 3, 1).numpy()}

    x_hwc = x[0].permute(1, 2, 0).numpy().astype(np.float64)
    xrai_parameters = saliency.XRAIParameters(steps=STEPS, algorithm="fast")
    return {
        "integrated_gradients": lambda: IntegratedGradients(probability).attribute(x, target=target, n_steps=STEPS)[0],
        "guided_backprop": lambda: GuidedBackprop(model).attribute(x, target=target)[0],
        "guided_gradcam": lambda: GuidedGradCam(model, model.layer4).attribute(x, target=target)[0],
        "xrai": lambda: saliency.XRAI().GetMask(x_hwc, call_model, extra_parameters=xrai_parameters),
        "xrai (saliency, batch_size=25)": lambda: saliency.XRAI().GetMask(
            x_hwc, call_model, extra_parameters=xrai_parameters, batch_size=25),
    }


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
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
    algorithms = ["integrated_gradients", "guided_backprop", "guided_gradcam", "xrai"]

    def ours(algorithm):
        params = {"xai_algorithm": algorithm, "n_steps": STEPS, "visualizations": True, "attributions": True}
        return lambda: explain(predictor, image, probs, params)

    from visionml.explain.methods import ExplainModel, integrated_gradients

    fp32_model = ExplainModel(model, predictor.task, fast=False)  # batching alone, no bf16

    def ours_ig_fp32():
        return integrated_gradients(fp32_model, x, target, STEPS, "riemann_middle")[0]

    first_call, _ = timed(ours("guided_backprop"))  # makes the private model copy once
    times = {name: [] for name in [*references, *(f"ours {a}" for a in algorithms), "ours IG compute, fp32 batched"]}
    outputs = {}
    for _ in range(args.rounds):
        for algorithm in algorithms:
            for name in [n for n in references if n.startswith(algorithm)]:
                seconds, outputs[name] = timed(references[name])
                times[name].append(seconds)
            seconds, _ = timed(ours(algorithm))
            times[f"ours {algorithm}"].append(seconds)
        seconds, outputs["fp32"] = timed(ours_ig_fp32)
        times["ours IG compute, fp32 batched"].append(seconds)

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
    print(f"{'path':42s} {'median s':>9s} {'min s':>7s}")
    for name, values in times.items():
        print(f"{name:42s} {statistics.median(values):9.3f} {min(values):7.3f}")
    print("speed-up (median bare library / median ours, same rounds):")
    for algorithm in algorithms:
        ratio = statistics.median(times[algorithm]) / statistics.median(times[f"ours {algorithm}"])
        print(f"  {algorithm:22s} x{ratio:.2f}   faithfulness: {faithfulness[algorithm]}")
    reference = outputs["integrated_gradients"].detach().numpy()
    rho = spearmanr(outputs["fp32"].detach().numpy().ravel(), reference.ravel()).statistic
    ratio = statistics.median(times["integrated_gradients"]) / statistics.median(times["ours IG compute, fp32 batched"])
    print(f"  IG fp32 batched only     x{ratio:.2f}   faithfulness: Spearman {rho:.4f}")


if __name__ == "__main__":
    main()
