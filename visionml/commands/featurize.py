"""``visionml featurize``: each image's penultimate-layer embedding as JSON lines, as Azure's
featurize script writes them (``{"filename", "feature_vector"}``)."""

from __future__ import annotations

import argparse

from ._args import add_datastore, add_device, int_at_least


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "featurize", help="write each image's embedding (the classifier's penultimate layer) as JSON lines",
        description="Run a classification model folder up to its last layer and write one JSON object per "
        "image, {\"filename\": INPUT, \"feature_vector\": [...]}, as Azure's featurize script does: the "
        "vector the classification head takes (512 numbers for resnet18, 2048 for resnet50). The image is "
        "preprocessed exactly as for predict. INPUT is an image, a folder or a JSONL file, as for predict; "
        "unreadable images are reported and skipped (exit code 1).")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a classification model folder")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or JSONL files")
    parser.add_argument("--output", "-o", metavar="FILE", help="JSON lines file to write (default: stdout)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                        help="images per forward pass (default: the model's validation_batch_size)")
    add_device(parser)
    add_datastore(parser, "map an azureml:// datastore in JSONL inputs to a local folder (repeatable)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import sys

    from tqdm import tqdm

    from ..data.resolve import parse_datastores
    from ..errors import VisionMLError
    from ..predict import Predictor
    from ..predict.batch import JsonLinesOut, collect_inputs, featurize_inputs

    inputs, problems = collect_inputs(args.inputs, parse_datastores(args.datastore))
    if not inputs:
        raise VisionMLError("nothing to featurize:\n" + "\n".join(problems))
    predictor = Predictor.from_folder(args.model, device=args.device)
    try:
        predictor.check_featurize()  # a detector fails here, before any image is read
    except VisionMLError as exc:
        raise VisionMLError(f"{args.model}: {exc}") from None
    batch_size = args.batch_size or predictor.batch_size
    with JsonLinesOut(args.output) as out, tqdm(total=len(inputs), unit="img", file=sys.stderr,
                                                 disable=None, desc="featurize") as bar:
        problems += featurize_inputs(predictor, inputs, out.write, batch_size, bar)
    for problem in problems:
        print(f"visionml featurize: skipped {problem}", file=sys.stderr)
    print(f"visionml featurize: {out.written} image(s), {len(problems)} problem(s), feature vectors in "
          f"{args.output or 'stdout'}", file=sys.stderr)
    return 1 if problems else 0
