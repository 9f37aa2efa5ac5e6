"""``visionml validate DATA``: check JSONL/MLTable data before training and summarise it."""

from __future__ import annotations

import argparse

from ._args import add_datastore


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate", help="check a JSONL/MLTable dataset and summarise it",
        description="Check Azure AutoML-for-Images JSONL (or MLTable) data line by line, print every "
        "problem as FILE:LINE: field: reason and a summary. Images are checked too: missing, unreadable, "
        "truncated, over --max-pixels, or of a shape the task's models cannot take at their default "
        "sizes (min_size 600 / max_size 1333 for detection and segmentation, validation_resize_size 256 "
        "for classification). Each problem is tagged with what training does about it with "
        "ignore_data_errors=true (Azure's default): [dropped image], [dropped object], [dropped segment], "
        "[kept] (read as Azure reads it) or [fatal] (training stops); [warning]s lose nothing. Exit code 1 "
        "when anything is invalid (docs/data.md).")
    parser.add_argument("data", metavar="DATA", help="a JSONL file, an MLTable file or an MLTable folder")
    parser.add_argument("--task", help="the task the data is for (inferred from the labels when left out)")
    add_datastore(parser, "map an azureml:// datastore to a local folder (repeatable; also "
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
    from ..data.problems import FATAL
    from ..data.reader import load_dataset, paused_gc
    from ..data.report import split_stops
    from ..data.resolve import parse_datastores
    from ..data.validate import format_summary, scan_dataset, summarize

    datastores = parse_datastores(args.datastore)
    if args.no_image_check:  # lines only: count records as they stream by instead of keeping them
        summary, problems, warnings = scan_dataset(args.data, args.task, datastores=datastores)
    else:
        with paused_gc():  # the summary walks every record once more: no collector passes over them
            # model_settings={}: images the task's models cannot take at their default sizes are problems
            loaded = load_dataset(args.data, args.task, datastores=datastores,
                                  max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, model_settings={})
            summary, problems, warnings = summarize(loaded), loaded.problems, loaded.warnings
    # What training (ignore_data_errors=true, Azure's default) would find left to train on.
    fatal = sum(p.training == FATAL for p in problems)
    stops = [f"{fatal} problem(s) Azure refuses too, whatever ignore_data_errors says"] if fatal else []
    if summary["task"]:
        stops += split_stops("training", summary["task"], summary["sources"], problems,
                             {c["name"] for c in summary["classes"]}, summary["distinct_image_files"],
                             summary.get("objects", 0))
    valid = not problems and not stops and summary["images"] > 0
    if args.json:
        document = {"valid": valid, "summary": summary, "problems": [p.to_json() for p in problems],
                    "warnings": [w.to_json() for w in warnings], "training_stops": stops}
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return 0 if valid else 1
    order = {source: i for i, source in enumerate(summary["sources"])}
    for item in sorted(problems + warnings, key=lambda p: (order.get(p.source, 0), p.line, p.training == "warning")):
        print(item.tagged())
    if problems or warnings:
        print()
    print(format_summary(summary))
    print(_verdict(summary, problems, warnings, stops))
    return 0 if valid else 1


def _verdict(summary: dict, problems, warnings, stops: list[str]) -> str:
    from ..data.report import left_out_phrase

    if not summary["images"]:
        return "INVALID: no valid line."
    stop = f" Training would stop: {'; '.join(stops)}." if stops else ""
    if not problems:
        if stops:
            return f"INVALID:{stop}"
        return "OK: the data is valid." + (f" {len(warnings)} warning(s) above: nothing is left out, but have a look."
                                           if warnings else "")
    did = left_out_phrase(summary["left_out"])
    return (f"INVALID: {summary['problems']} problem(s) on {summary['invalid_lines']} line(s). Training with "
            f"ignore_data_errors=true (the default, as Azure) {did} (each problem says which, in brackets); with "
            f"ignore_data_errors=false it stops before any work.{stop} Fix them to train on everything.")
