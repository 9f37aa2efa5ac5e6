"""``visionml sample-data``: write a synthetic dataset in the Azure JSONL schema (demo, tests)."""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 224x168, got {text!r}") from None
    return width, height


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample-data", help="write a synthetic dataset (shapes on textures) in the JSONL schema",
        description="Write DIR/images/*.jpg, DIR/train.jsonl (80%) and DIR/val.jsonl (20%): "
        "circles, squares, triangles and stars of random colour, size and rotation on textured "
        "backgrounds, with exact boxes and polygons. The same --seed gives the same files.")
    p.add_argument("--task", required=True, help="image_classification, image_classification_multilabel, "
                   "image_object_detection or image_instance_segmentation (or an alias)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--n", type=int, default=None, help="number of images in all (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=_size, default=None, metavar="WxH",
                   help="image size (default 192x192 for classification, 224x168 for detection "
                   "and segmentation; at least 160x120)")
    p.add_argument("--small-objects", action="store_true",
                   help="detection and segmentation: 6-16 objects of 8-24 pixels per image on large images "
                   "(default 960x720), to measure tiling (tile_grid_size)")
    p.add_argument("--force", action="store_true", help="replace train.jsonl/val.jsonl already in DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import sample
    from ..tasks import get_task

    task = get_task(args.task)
    n = sample.DEFAULT_N if args.n is None else args.n
    paths = sample.make_sample_data(task, args.output, n=n, seed=args.seed, size=args.size,
                                    overwrite=args.force, small_objects=args.small_objects)
    width, height = args.size or sample.default_size(task, args.small_objects)
    n_train = sum(1 for _ in paths["train"].open("rb"))
    print(f"wrote {n} {width}x{height} images for {task} to {paths['train'].parent}: "
          f"{paths['train']} ({n_train} images), {paths['val']} ({n - n_train} images)")
    return 0
