"""``visionml audit DATA``: near-duplicates, training/validation leaks, class balance and sizes."""

from __future__ import annotations

import argparse

from ._args import add_datastore, int_at_least


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit", help="find near-duplicate images, training/validation leaks, class imbalance and odd sizes",
        description="Look at a dataset as a whole: near-duplicate images (a 64-bit perceptual hash per image; "
        "pairs within --max-distance bits), the same image in training and validation (with "
        "--validation-data: the same file, a copy or a re-encoded or resized copy), class balance, box "
        "sizes and aspect ratios (detection, segmentation) and images per size. Prints a summary; "
        "--output writes audit.json and PNG plots. Invalid lines are counted and left out "
        "(`visionml validate` lists them).")
    parser.add_argument("data", metavar="DATA", help="a JSONL file, an MLTable file or an MLTable folder")
    parser.add_argument("--validation-data", metavar="DATA",
                        help="the validation set, checked against DATA for images in both")
    parser.add_argument("--output", "-o", metavar="DIR", help="write audit.json and the PNG plots into this folder")
    parser.add_argument("--task", help="the task the data is for (inferred from the labels when left out)")
    add_datastore(parser, "map an azureml:// datastore in DATA to a local folder (repeatable)")
    parser.add_argument("--max-distance", type=int_at_least(0), default=None, metavar="BITS",
                        help="most bits two perceptual hashes may differ in for near-duplicates (default 4; "
                        "0: only pictures that hash the same)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..data.audit import DEFAULT_MAX_DISTANCE, audit_dataset, summary
    from ..data.audit_plots import save_figures
    from ..data.resolve import parse_datastores
    from ..fileio import write_json

    distance = DEFAULT_MAX_DISTANCE if args.max_distance is None else args.max_distance
    report = audit_dataset(args.data, args.validation_data, task=args.task,
                           datastores=parse_datastores(args.datastore), max_distance=distance)
    print(summary(report))
    if args.output:
        from pathlib import Path

        out = Path(args.output)
        write_json(out / "audit.json", report)
        plots = save_figures(report, out)
        print(f"audit: {out / 'audit.json'}; plots: {', '.join(p.name for p in plots)}")
    return 0
