"""``visionml convert SRC --from FMT --to FMT -o OUT``: labelling-tool formats <-> the JSONL schema."""

from __future__ import annotations

import argparse

from ._args import add_datastore, int_at_least

# Kept here (not imported from visionml.convert) so that `visionml --help` stays cheap.
FROM_FORMATS = ("coco", "voc", "yolo", "imagefolder", "csv", "masks", "jsonl")
TO_FORMATS = ("jsonl", "coco", "yolo")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert", help="convert COCO, VOC, YOLO, folders, CSV or masks to/from JSONL",
        description="Convert a dataset between a labelling-tool format and the Azure AutoML "
        "JSONL schema. Problems in the source (empty boxes, boxes outside the image, unknown "
        "classes, missing images) are all listed and nothing is written, unless --skip-invalid. "
        "See docs/converters.md for each format's layout.")
    parser.add_argument("src", metavar="SRC", help="the dataset: a file or folder, per --from")
    parser.add_argument("--from", dest="from_fmt", required=True, choices=FROM_FORMATS,
                        help="the format of SRC: coco (a COCO JSON file), voc (a Pascal VOC folder), yolo (a "
                        "data.yaml or a folder with images/ and labels/), imagefolder (one folder per "
                        "class), csv (labels per image, multi-label), masks (instance-mask PNGs) or jsonl")
    parser.add_argument("--to", dest="to_fmt", required=True, choices=TO_FORMATS,
                        help="the format of OUT: jsonl (Azure AutoML JSONL), coco (a COCO JSON file) or "
                        "yolo (a YOLO dataset folder)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the output file (jsonl, coco) or folder (yolo)")
    parser.add_argument("--task", help="the task (inferred from the source when left out)")
    parser.add_argument("--images", metavar="DIR",
                        help="where the images are (coco, voc, csv, masks; default per format)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="leave out the invalid objects and images (listed) instead of stopping")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--split", metavar="NAME",
                        help="voc: read ImageSets/Main/NAME.txt only; yolo in: read only split "
                        "NAME; yolo out: write images/NAME (default train)")
    parser.add_argument("--separator", metavar="SEP",
                        help="csv: the separator between labels in the labels column "
                        "(default: whitespace)")
    parser.add_argument("--max-polygon-points", type=int_at_least(3, "a polygon needs at least 3 points"), default=100, metavar="N",
                        help="masks and COCO RLE: simplify each traced object to at most N "
                        "points (default 100, Azure's max_number_of_polygon_points)")
    parser.add_argument("--voc-difficult", choices=("keep", "crowd", "drop"), default="keep",
                        help="voc: what to do with objects marked difficult (default keep)")
    parser.add_argument("--mask-label", default="object", metavar="NAME",
                        help="masks: the class name of every instance (default 'object')")
    add_datastore(parser, "jsonl in: map an azureml:// datastore to a local folder")
    parser.set_defaults(func=run)
    return parser




def run(args) -> int:
    import sys
    from pathlib import Path

    from ..convert import ConvertOptions, convert
    from ..data.resolve import parse_datastores

    opts = ConvertOptions(
        images=Path(args.images) if args.images else None, task=args.task, split=args.split,
        separator=args.separator, max_polygon_points=args.max_polygon_points,
        voc_difficult=args.voc_difficult, mask_label=args.mask_label,
        skip_invalid=args.skip_invalid, force=args.force,
        datastores=parse_datastores(args.datastore))
    result = convert(args.src, args.from_fmt, args.to_fmt, args.output, opts)
    data = result.data
    if data.problems:
        print(f"left out because of {len(data.problems)} problem(s):", file=sys.stderr)
        for problem in data.problems:
            print(f"  {problem}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}: {len(data.records)} image(s), {result.n_objects} object(s), "
          f"{len(data.labels)} class(es), task {data.task}")
    return 0
