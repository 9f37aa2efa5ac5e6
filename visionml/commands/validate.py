"""``visionml validate DATA``: check JSONL/MLTable data before training and summarise it."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate", help="check a JSONL/MLTable dataset and summarise it",
        description="Check Azure AutoML-for-Images JSONL (or MLTable) data line by line, print every "
        "problem as FILE:LINE: field: reason and a summary. Images are checked too: missing, unreadable, "
        "truncated, over --max-pixels, or of a shape the task's models cannot take at their default "
        "sizes (min_size 600 / max_size 1333 for detection and segmentation, validation_resize_size 256 "
        "for classification). Exit code 1 when anything is invalid.")
    parser.add_argument("data", metavar="DATA", help="a JSONL file, an MLTable file or an MLTable folder")
    parser.add_argument("--task", help="the task the data is for (inferred from the labels when left out)")
    parser.add_argument("--datastore", action="append", default=[], metavar="NAME=DIR",
                        help="map an azureml:// datastore to a local folder (repeatable; also "
                        "VISIONML_DATASTORES=name=DIR,...)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--no-image-check", action="store_true",
                        help="check the lines only, do not open the images (for huge files); image "
                        "sizes are then neither read nor checked against what the task's models take")
    parser.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                        help="refuse images with more pixels than this, from the header, before decoding "
                        "(default: Pillow's 89,478,485; Pillow itself refuses above twice its limit)")
    parser.set_defaults(func=run)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def run(args) -> int:
    import orjson

    from ..data.images import DEFAULT_MAX_PIXELS
    from ..data.reader import load_dataset, paused_gc
    from ..data.resolve import parse_datastores
    from ..data.validate import format_summary, scan_dataset, summarize

    datastores = parse_datastores(args.datastore)
    if args.no_image_check:  # lines only: count records as they stream by instead of keeping them
        summary, problems = scan_dataset(args.data, args.task, datastores=datastores)
    else:
        with paused_gc():  # the summary walks every record once more: no collector passes over them
            # model_settings={}: images the task's models cannot take at their default sizes are problems
            loaded = load_dataset(args.data, args.task, datastores=datastores,
                                  max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, model_settings={})
            summary, problems = summarize(loaded), loaded.problems
    valid = not problems and summary["images"] > 0
    if args.json:
        document = {"valid": valid, "summary": summary, "problems": [p.to_json() for p in problems]}
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return 0 if valid else 1
    for problem in problems:
        print(problem)
    if problems:
        print()
    print(format_summary(summary))
    if valid:
        print("OK: the data is valid.")
    elif not summary["images"]:
        print("INVALID: no valid line.")
    else:
        print(f"INVALID: {summary['problems']} problem(s) on {summary['invalid_lines']} line(s). Fix them, "
              "or train with --skip-invalid to leave those lines out.")
    return 0 if valid else 1
