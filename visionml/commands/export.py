"""``visionml export``: a model folder as ONNX (for onnxruntime, ``--backend onnx``) or as an
MLflow pyfunc model (for ``mlflow models serve`` and Azure ML)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export a model folder to ONNX or an MLflow model",
        description="Export a model folder. onnx: OUT gets model.onnx, labels.json and visionml.json laid "
        "out as Azure AutoML's, so the client code of Azure's doc 'Make predictions with ONNX on computer "
        "vision models from AutoML' runs on them unchanged; `visionml predict/serve --model OUT --backend "
        "onnx` run them with onnxruntime (docs/export.md). mlflow: OUT is an MLflow pyfunc model (needs "
        "pip install 'visionml[mlflow]') "
        "whose predict takes a DataFrame with an 'image' column of base64 strings, like an Azure AutoML "
        "mlflow-model; serve it with `mlflow models serve -m OUT --env-manager local`.")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model folder (RUN/model)")
    parser.add_argument("--format", required=True, choices=("onnx", "mlflow"), dest="fmt",
                        help="onnx (model.onnx as Azure AutoML exports it, for onnxruntime) or mlflow "
                        "(an MLflow pyfunc model folder)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="folder to write (created; for onnx, existing files of the same names are replaced)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an inference setting to fix in the export, e.g. --set nms_iou_threshold=0.6 "
                        "(onnx: the input size, NMS IoU and detection cap are part of the graph); onnx also "
                        "takes --set enable_onnx_normalization=true: input RGB in 0-255, normalised inside "
                        "the graph (default: the model's hyperparameter, else false)")
    onnx = parser.add_argument_group("ONNX detectors (Azure's batch generator's arguments)")
    onnx.add_argument("--batch-size", type=int, default=None, metavar="N",
                      help="images per run: input [N, 3, H, W], outputs boxes_0, labels_0, scores_0, boxes_1, "
                      "... (default 1: boxes, labels, scores). Classification graphs take any batch and "
                      "ignore it")
    onnx.add_argument("--height", type=int, default=None, metavar="H",
                      help="input height (Faster R-CNN, RetinaNet, SSDlite: fixed in the graph; Mask R-CNN: "
                      "the traced size, any size runs). Default: what min_size/max_size make of a 4:3 "
                      "landscape image, 600x800 at Azure's defaults; SSDlite 320x320")
    onnx.add_argument("--width", type=int, default=None, metavar="W", help="input width (see --height)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import sys
    import time

    from ..config import parse_set_arguments
    from ..export import export_model

    start = time.perf_counter()
    sizes = {"batch_size": args.batch_size, "height": args.height, "width": args.width}
    options = {k: v for k, v in sizes.items() if v is not None}
    if options and args.fmt != "onnx":
        from ..errors import UsageError

        flags = " ".join(f"--{k.replace('_', '-')}" for k in options)
        raise UsageError(f"{flags}: only for --format onnx (an MLflow model takes images of any size)")
    out = export_model(args.model, args.output, args.fmt, parse_set_arguments(args.overrides) or None, **options)
    files = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
    print(f"visionml export: {args.fmt} model written to {out} ({files}) in {time.perf_counter() - start:.1f}s",
          file=sys.stderr)
    return 0
