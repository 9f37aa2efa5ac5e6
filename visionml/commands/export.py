"""``visionml export``: a model folder as ONNX (for onnxruntime, ``--backend onnx``) or as an
MLflow pyfunc model (for ``mlflow models serve`` and Azure ML)."""

from __future__ import annotations

import argparse

from ._args import add_datastore


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
    _add_quantize_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_quantize_arguments(parser) -> None:
    from ..export.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_MAX_DROP
    from ._args import int_at_least

    group = parser.add_argument_group("int8 ONNX (docs/export.md)")
    group.add_argument("--quantize", choices=("int8",), default=None,
                       help="int8: static int8 graph (QDQ, per-channel weights; detectors: the backbone's "
                       "convolutions) calibrated on --calibration-data, refused when it loses more than "
                       "--max-drop of the primary metric on --validation-data")
    group.add_argument("--calibration-data", metavar="DATA", default=None,
                       help="JSONL or MLTable whose images calibrate the int8 ranges (the training data)")
    group.add_argument("--calibration-size", type=int_at_least(1), default=DEFAULT_CALIBRATION_SIZE, metavar="N",
                       help=f"images drawn from --calibration-data (default {DEFAULT_CALIBRATION_SIZE})")
    group.add_argument("--validation-data", metavar="DATA", default=None,
                       help="labelled JSONL or MLTable on which fp32 and int8 are compared (default: the "
                       "calibration data, which flatters both)")
    group.add_argument("--max-drop", type=_fraction, default=DEFAULT_MAX_DROP, metavar="D",
                       help=f"largest loss of the primary metric int8 may have (default {DEFAULT_MAX_DROP}: one "
                       "accuracy point)")
    add_datastore(group, "map an azureml:// datastore in the data to a local folder (repeatable)")


def _fraction(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a number at least 0, e.g. 0.01")
    return value


def _quantize_options(args):
    """``QuantizeOptions`` from the flags, or None without --quantize; flags that need another
    one are usage errors."""
    from ..errors import UsageError

    given = [flag for flag, value in (("--calibration-data", args.calibration_data),
                                      ("--validation-data", args.validation_data)) if value is not None]
    if args.quantize is None:
        if given:
            raise UsageError(f"{' '.join(given)}: only with --quantize int8")
        return None
    if args.fmt != "onnx":
        raise UsageError(f"--quantize: only for --format onnx (not --format {args.fmt})")
    if args.calibration_data is None:
        raise UsageError("--quantize int8 needs --calibration-data TRAIN.jsonl: the training images its "
                         "activation ranges are calibrated on")
    from ..data.resolve import parse_datastores
    from ..export.quantize import QuantizeOptions

    return QuantizeOptions(args.calibration_data, args.validation_data, max_drop=args.max_drop,
                           calibration_size=args.calibration_size, precision=args.quantize,
                           datastores=parse_datastores(args.datastore))


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
    quantize = _quantize_options(args)
    out = export_model(args.model, args.output, args.fmt, parse_set_arguments(args.overrides) or None,
                       quantize=quantize, **options)
    files = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
    kind = f"{args.fmt} {quantize.precision}" if quantize else args.fmt
    print(f"visionml export: {kind} model written to {out} ({files}) in {time.perf_counter() - start:.1f}s",
          file=sys.stderr)
    if quantize:
        print(_quantization_summary(out))
    return 0


def _quantization_summary(out) -> str:
    import json

    from ..modelio import MANIFEST

    block = json.loads((out / MANIFEST).read_text(encoding="utf-8"))["quantization"]
    e = block["evaluation"]
    kept = block["nodes_kept_fp32"]
    return (f"{e['metric']}: fp32 {e['fp32']:.4f}, int8 {e['int8']:.4f} (drop {e['drop']:.4f}, --max-drop "
            f"{e['max_drop']:g}) on {e['images']} images of {e['data']}"
            + (f"; kept in fp32: {', '.join(kept)}" if kept else ""))
