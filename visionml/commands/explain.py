"""``visionml explain``: explain a classifier's prediction for one image as a PNG and/or .npy."""

from __future__ import annotations

import argparse

from ._args import add_device

ALGORITHMS = ("xrai", "integrated_gradients", "guided_gradcam", "guided_backprop")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "explain", help="explain a classification model's prediction for one image",
        description="Explain why a multi-class or multi-label model predicts what it does for IMAGE: "
        "the predicted class (multi-class) or each class above "
        "confidence_score_threshold_multilabel (multi-label). Writes the visualization PNG (Azure's "
        "2x2 figure; --set visualization_style=overlay for the crop beside its heat map) and/or the pixel "
        "attributions as a float32 .npy ([3, crop, crop]; [K, 3, crop, crop] for K multi-label "
        "classes). Multi-label PNGs get the class name before the extension. With neither "
        "--output nor --attributions, writes IMAGE_STEM.ALGORITHM.png in the current folder.")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a classification model folder")
    parser.add_argument("image", metavar="IMAGE", help="the image file to explain")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default=None,
                        help="xai_algorithm (default: xrai, or the one given with --set)")
    parser.add_argument("--output", "-o", metavar="PNG", help="where to write the visualization PNG")
    parser.add_argument("--attributions", metavar="NPY", help="where to write the attributions (.npy)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="an xai_parameters value, e.g. --set n_steps=100 --set "
                        "confidence_score_threshold_multilabel=0.3 (repeatable)")
    add_device(parser)
    parser.set_defaults(func=run)
    return parser


def _xai_parameters(args) -> dict:
    from ..config import parse_set_arguments
    from ..errors import UsageError

    raw = parse_set_arguments(args.settings, example="n_steps=100")
    for key in ("visualizations", "attributions"):
        if key in raw:
            raise UsageError(f"--set {key}=...: use --output PNG / --attributions NPY to choose what is written")
    if args.algorithm:
        raw["xai_algorithm"] = args.algorithm
    return raw


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..errors import VisionMLError
    from ..explain import explain_arrays, parse_xai_parameters
    from ..explain.files import named_for_class, npy_bytes
    from ..fileio import write_bytes_atomic
    from ..predict import Predictor
    from ..predict.decode import decode_image

    raw = _xai_parameters(args)
    params = parse_xai_parameters(raw)  # bad values fail before the model loads
    output = args.output
    if output is None and args.attributions is None:
        output = f"{Path(args.image).stem}.{params.xai_algorithm}.png"
    predictor = Predictor.from_folder(args.model, device=args.device)
    if not predictor.task.explainable:
        raise VisionMLError(f"{args.model}: a {predictor.task} model; explanations are for image_classification "
                            "and image_classification_multilabel models only")
    image = decode_image(args.image, predictor.max_pixels)
    probs = predictor.raw_predict([image])[0]
    raw.update(visualizations=output is not None, attributions=args.attributions is not None)
    explanations = explain_arrays(predictor, image, probs, raw)
    if not explanations:
        best = int(probs.argmax())
        print(f"visionml explain: no class above confidence_score_threshold_multilabel="
              f"{params.confidence_score_threshold_multilabel} (highest: {predictor.labels[best]} "
              f"{probs[best]:.3f}); nothing written", file=sys.stderr)
        return 0
    several = len(explanations) > 1
    for e in explanations:
        line = f"{e.label}\t{e.probability:.4f}"
        if output is not None:
            path = named_for_class(output, e.label) if several else Path(output)
            write_bytes_atomic(path, e.png)
            line += f"\t{path}"
        print(line)
    if args.attributions is not None:
        import numpy as np

        stacked = np.stack([e.attribution for e in explanations])
        write_bytes_atomic(args.attributions, npy_bytes(predictor.task.pack_explanations(list(stacked))))
        print(f"attributions\t{args.attributions}\t{'/'.join(e.label for e in explanations)}")
    return 0
