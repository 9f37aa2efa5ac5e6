"""``visionml predict``: score images, folders or JSONL files into JSON lines (Azure's objects)."""

from __future__ import annotations

import argparse

from ._args import int_at_least


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help="score images, folders or JSONL files with a model folder",
        description="Score images and write one JSON object per image, exactly as the REST endpoint "
        "answers (filename = the input). INPUT is an image, a folder (searched recursively for "
        "jpg/jpeg/png/jpe/jfif/bmp/tif/tiff) or a JSONL file (its image_url values). Unreadable "
        "images are reported and skipped; the exit code is then 1.")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model folder (RUN/model)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or JSONL files")
    parser.add_argument("--output", "-o", metavar="FILE", help="JSON lines file to write (default: stdout)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                        help="images per forward pass (default: the model's validation_batch_size)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch (the model folder) or onnx (a folder from `visionml export --format onnx`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change an inference setting, e.g. --set box_score_threshold=0.5 (repeatable)")
    parser.add_argument("--device", default="auto",
                        help="auto (default: cuda when available, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--datastore", action="append", default=[], metavar="NAME=DIR",
                        help="map an azureml:// datastore in JSONL inputs to a local folder (repeatable)")
    parser.set_defaults(func=run)
    return parser




def run(args) -> int:
    import sys

    from tqdm import tqdm

    from ..config import parse_set_arguments
    from ..data.resolve import parse_datastores
    from ..errors import VisionMLError
    from ..predict import Predictor
    from ..predict.batch import JsonLinesOut, collect_inputs, score_inputs

    inputs, problems = collect_inputs(args.inputs, parse_datastores(args.datastore))
    if not inputs:
        raise VisionMLError("nothing to score:\n" + "\n".join(problems))
    predictor = Predictor.from_folder(args.model, backend=args.backend, device=args.device,
                                      overrides=parse_set_arguments(args.overrides) or None)
    batch_size = args.batch_size or predictor.batch_size
    with JsonLinesOut(args.output) as out, tqdm(total=len(inputs), unit="img", file=sys.stderr,
                                                 disable=None, desc="predict") as bar:
        problems += score_inputs(predictor, inputs, out.write, batch_size, bar)
    for problem in problems:
        print(f"visionml predict: skipped {problem}", file=sys.stderr)
    print(f"visionml predict: {out.written} image(s) scored, {len(problems)} problem(s), results in "
          f"{args.output or 'stdout'}", file=sys.stderr)
    return 1 if problems else 0
