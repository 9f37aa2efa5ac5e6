"""``visionml predict``: score images, folders or JSONL files into JSON lines (Azure's objects)."""

from __future__ import annotations

import argparse

from ._args import add_backend, add_datastore, add_device, add_inference_speed, int_at_least, load_predictor


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help="score images, folders or JSONL files with a model folder",
        description="Score images and write one JSON object per image, exactly as the REST endpoint "
        "answers (filename = the input). INPUT is an image, a folder (searched recursively for "
        "jpg/jpeg/png/jpe/jfif/bmp/tif/tiff) or a JSONL file (its image_url values). Unreadable "
        "images are reported and skipped; the exit code is then 1. An instance segmentation model "
        "with --set export_as_image=true (and image_type=jpg|png|bmp) also writes each mask as an image "
        "in masks/ beside --output, named as Azure's batch scoring names them.")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model folder (RUN/model)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or JSONL files")
    parser.add_argument("--output", "-o", metavar="FILE", help="JSON lines file to write (default: stdout)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                        help="images per forward pass (default: the model's validation_batch_size)")
    add_backend(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change an inference setting, e.g. --set box_score_threshold=0.5 (repeatable)")
    add_device(parser)
    add_inference_speed(parser)
    add_datastore(parser, "map an azureml:// datastore in JSONL inputs to a local folder (repeatable)")
    parser.add_argument("--labeled-dataset", metavar="FILE", default=None,
                        help="also write the predictions as training data (the JSONL schema `visionml train` "
                        "reads, with Azure's label_confidence beside each label)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (this process) or ray: the same output, scored by workers of a Ray cluster "
                        "(needs pip install 'visionml[ray]')")
    parser.add_argument("--address", metavar="ADDR", default=None,
                        help="with --engine ray: the cluster's address, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS, "
                        "else a Ray started on this machine for the run)")
    parser.add_argument("--workers", type=int_at_least(1), default=None, metavar="N",
                        help="with --engine ray: workers, one model each (default: one per CPU of the cluster, "
                        "or per GPU with --device cuda)")
    parser.set_defaults(func=run)
    return parser




def run(args) -> int:
    import sys
    from contextlib import ExitStack
    from pathlib import Path

    from tqdm import tqdm

    from ..config import parse_set_arguments
    from ..data.resolve import parse_datastores
    from ..errors import UsageError, VisionMLError
    from ..predict.batch import JsonLinesOut, LabeledDataset, MaskFiles, collect_inputs, score_inputs

    if args.labeled_dataset and args.output and Path(args.labeled_dataset).resolve() == Path(args.output).resolve():
        raise UsageError(f"--labeled-dataset {args.labeled_dataset} is the --output file: give it another name")
    if args.engine != "ray" and (args.address or args.workers):
        raise UsageError("--address and --workers apply to --engine ray")
    if args.engine == "ray" and args.threads:
        raise UsageError("--threads applies to --engine local: each Ray worker takes one CPU and runs one thread "
                         "(--workers sets how many)")
    if args.engine == "ray":
        from ..predict.ray_engine import import_ray, score_on_ray

        import_ray()  # before any work: without the extra, say what to install
    inputs, problems = collect_inputs(args.inputs, parse_datastores(args.datastore))
    if not inputs:
        raise VisionMLError("nothing to score:\n" + "\n".join(problems))
    # With --engine ray the workers score; this copy only answers for the settings and the sinks.
    predictor = load_predictor(args, device="cpu" if args.engine == "ray" else None)
    batch_size = args.batch_size or predictor.batch_size
    settings, sinks = predictor.settings, []
    masks = None
    if "export_as_image" in settings and settings["export_as_image"]:
        if args.output is None:
            raise UsageError("export_as_image=true writes the mask images in masks/ beside the predictions: "
                             "pass --output FILE.jsonl")
        masks = MaskFiles(Path(args.output).resolve().parent, predictor.labels, settings["image_type"])
        sinks.append(masks)
    with ExitStack() as stack:
        out = stack.enter_context(JsonLinesOut(args.output))
        if args.labeled_dataset:
            sinks.append(stack.enter_context(LabeledDataset(args.labeled_dataset, predictor.task)))
        bar = stack.enter_context(tqdm(total=len(inputs), unit="img", file=sys.stderr, disable=None, desc="predict"))
        if args.engine == "ray":
            options = {"backend": args.backend, "device": args.device, "precision": args.precision,
                       "overrides": parse_set_arguments(args.overrides) or None}
            problems += score_on_ray(args.model, inputs, out.write, batch_size, bar, sinks, options=options,
                                     address=args.address, workers=args.workers, send_raw=masks is not None)
        else:
            problems += score_inputs(predictor, inputs, out.write, batch_size, bar, sinks)
    for problem in problems:
        print(f"visionml predict: skipped {problem}", file=sys.stderr)
    print(f"visionml predict: {out.written} image(s) scored, {len(problems)} problem(s), results in "
          f"{args.output or 'stdout'}", file=sys.stderr)
    if masks is not None:
        print(f"visionml predict: {masks.written} mask image(s) in {masks.folder}", file=sys.stderr)
    if args.labeled_dataset:
        print(f"visionml predict: labeled data set (training JSONL) in {args.labeled_dataset}", file=sys.stderr)
    return 1 if problems else 0
