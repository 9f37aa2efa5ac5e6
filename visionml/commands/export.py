"""``visionml export``: a model folder as ONNX (for onnxruntime, ``--backend onnx``) or as an
MLflow pyfunc model (for ``mlflow models serve`` and Azure ML)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export a model folder to ONNX or an MLflow model",
        description="Export a model folder. onnx: OUT gets model.onnx, labels.json and visionml.json; "
        "`visionml predict/serve --model OUT --backend onnx` run it with onnxruntime and answer as the "
        "torch backend does. mlflow: OUT is an MLflow pyfunc model (needs pip install 'visionml[mlflow]') "
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
                        "(onnx: resize sizes, NMS IoU and detection cap are part of the graph)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import sys
    import time

    from ..config import parse_set_arguments
    from ..export import export_model

    start = time.perf_counter()
    out = export_model(args.model, args.output, args.fmt, parse_set_arguments(args.overrides) or None)
    files = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
    print(f"visionml export: {args.fmt} model written to {out} ({files}) in {time.perf_counter() - start:.1f}s",
          file=sys.stderr)
    return 0
