"""Tiling against no tiling at the same training budget: box mAP@0.5 and the inference cost.

    python benchmarks/bench_tiling.py --smoke                      # seconds: the script works (numbers mean nothing)
    python benchmarks/bench_tiling.py --smoke --data bccd          # the same on tests/fixtures/bccd
    python benchmarks/bench_tiling.py --data small-objects         # the comparison: see RESULTS below
    python benchmarks/bench_tiling.py --size 480x360 --n 150 --epochs 5 \
        --set min_size=160 --set max_size=240 --set anchor_sizes=8,16,32,64   # the same at a quarter of the pixels
    python benchmarks/bench_tiling.py --data bccd                  # BCCD's 364 images (platelets are small)

Data: ``small-objects`` is ``visionml sample-data --task image_object_detection --small-objects``
(960x720 images, 6-16 objects of 8-24 px each; --n images, 80% training); ``bccd`` converts the
Pascal VOC folder --bccd with ``visionml convert --from voc`` (ImageSets/Main/trainval.txt for
training, test.txt for validation) into the work folder; nothing is written into the repository.

Two models are trained from scratch with the ``cpu`` preset (fasterrcnn_mobilenet_v3_large_fpn)
and the same settings but one: the tiled run has ``tile_grid_size`` (--grid, Azure's 3x2 by
default) and trains on each image and its tiles that hold objects; the plain run trains on the
images only. The budget is the same number of network inputs: the tiled run trains --epochs
epochs, the plain run as many epochs as make up the same count of inputs (images + tiles), which
on a CPU is the same time within a few percent (a tile is resized to the same ``min_size`` as an
image); the seconds each took are printed. ``--budget epochs`` gives both --epochs instead.
Validation runs once, after the last epoch (the model trained is the model scored).

Each model is then evaluated on the validation data (``visionml evaluate``'s code) without and
with tiled inference; box mAP@0.5 is Azure's ``mean_average_precision`` (VOC, IoU 0.5, the boxes
at or above box_score_threshold) and COCO's AP50 (all boxes down to 0.05). The inference cost
ratio is the seconds per image of ``Predictor.raw_predict`` with tiling over without it, on the
tiled model (images decoded beforehand; the fastest of --repeats passes). Azure reports about 7x
for a 3x2 grid with the whole image (7 network inputs per image).

One JSON line with every number is printed last (and appended to --log).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

TASK = "image_object_detection"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_BCCD = Path("/work/shared/datasets/bccd/raw/BCCD")
FIXTURE_BCCD = REPO / "tests" / "fixtures" / "bccd"
# --smoke: a few small-object images and a tiny network, one epoch each: seconds, not a measurement.
SMOKE = {"min_size": "64", "max_size": "96", "training_batch_size": "2", "validation_batch_size": "2",
         "rpn_pre_nms_top_n_train": "100", "rpn_post_nms_top_n_train": "50", "rpn_pre_nms_top_n_test": "50",
         "rpn_post_nms_top_n_test": "20", "box_batch_size_per_image": "32"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("small-objects", "bccd"), default="small-objects")
    parser.add_argument("--n", type=int, default=300, help="small-objects: images in all, 80%% training (default 300)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="small-objects: image size (default sample-data's 960x720; the objects stay 8-24 px)")
    parser.add_argument("--bccd", type=Path, default=DEFAULT_BCCD, help="bccd: the Pascal VOC folder")
    parser.add_argument("--grid", default="3x2", help="tile_grid_size of the tiled run (default 3x2)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the tiled run (default 4)")
    parser.add_argument("--budget", choices=("inputs", "epochs"), default="inputs",
                        help="inputs: the plain run gets as many network inputs as the tiled run (default); "
                             "epochs: both train --epochs epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter for both runs (after the cpu preset)")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes for the cost ratio (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few tiny images and one epoch: checks the script")
    parser.add_argument("--log", type=Path, help="append the result's JSON line here")
    parser.add_argument("--keep", type=Path, help="keep the data and runs in this folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from visionml.config import parse_set_arguments

    torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_tiling_"))
    work.mkdir(parents=True, exist_ok=True)
    overrides = {**(SMOKE if args.smoke else {}), **parse_set_arguments(args.overrides)}
    epochs = 1 if args.smoke else args.epochs
    data = prepare_data(args, work / "data")
    train_images, tiled_inputs = count_inputs(data["train"], args.grid, overrides)
    plain_epochs = epochs if args.budget == "epochs" else max(1, round(epochs * tiled_inputs / train_images))
    print(f"data: {data['train']} ({train_images} training images, {tiled_inputs} inputs per tiled epoch), "
          f"{data['val']}; tiled {args.grid}: {epochs} epochs, plain: {plain_epochs} epochs", flush=True)

    tiled = train_run(data, work / "tiled", {**overrides, "tile_grid_size": args.grid}, epochs)
    plain = train_run(data, work / "plain", overrides, plain_epochs)
    result = {"data": args.data, "smoke": args.smoke, "grid": args.grid, "budget": args.budget,
              "train_images": train_images, "tiled_inputs_per_epoch": tiled_inputs,
              "tiled": {"epochs": epochs, "train_seconds": round(tiled.seconds, 1),
                        **scores(tiled.model_dir, data["val"], args.grid)},
              "plain": {"epochs": plain_epochs, "train_seconds": round(plain.seconds, 1),
                        **scores(plain.model_dir, data["val"], args.grid)},
              "inference": inference_cost(tiled.model_dir, data["val"], args.grid, args.repeats)}
    result["map50_gain"] = round(result["tiled"]["tiled_inference"]["map50"] - result["plain"]["plain_inference"]["map50"], 4)
    report(result)
    line = json.dumps(result)
    print(line)
    if args.log:
        with open(args.log, "a") as handle:
            handle.write(line + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


# ---- data --------------------------------------------------------------------------------------------

def prepare_data(args, out: Path) -> dict[str, Path]:
    if args.data == "small-objects":
        from visionml.data.sample import make_sample_data

        size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
        return make_sample_data(TASK, out, n=4 if args.smoke else args.n, seed=0, overwrite=True, small_objects=True,
                                size=size)
    from visionml.cli import main as cli

    source = FIXTURE_BCCD if args.smoke else args.bccd
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:  # the fixture has no ImageSets: its 6 images for training and for validation
        _convert(cli, source, out / "all.jsonl")
        return {"train": out / "all.jsonl", "val": out / "all.jsonl"}
    paths = {"train": out / "train.jsonl", "val": out / "val.jsonl"}
    _convert(cli, source, paths["train"], "trainval")
    _convert(cli, source, paths["val"], "test")
    return paths


def _convert(cli, source: Path, out: Path, split: str | None = None) -> None:
    # BCCD has a few zero-area boxes: --skip-invalid leaves them out (and lists them).
    argv = ["convert", str(source), "--from", "voc", "--to", "jsonl", "-o", str(out), "--skip-invalid", "--force"]
    if cli(argv + (["--split", split] if split else [])) != 0:
        raise SystemExit(f"converting {source} failed")


def count_inputs(train_jsonl: Path, grid: str, overrides: dict) -> tuple[int, int]:
    """(training images, network inputs of one tiled epoch: the images and their tiles with objects)."""
    from visionml.config import resolve_hyperparameters
    from visionml.data.dataset import VisionDataset
    from visionml.data.reader import read_dataset
    from visionml.tasks import get_task

    task = get_task(TASK)
    loaded = read_dataset(train_jsonl, task, skip_invalid=True)
    hp = resolve_hyperparameters(task, {**overrides, "tile_grid_size": grid}, preset="cpu")
    dataset = VisionDataset(loaded.records, task, sorted(loaded.labels), tiling=task.tiling(hp))
    return len(loaded.records), len(dataset)


# ---- training and scoring ----------------------------------------------------------------------------

def train_run(data: dict, run_dir: Path, overrides: dict, epochs: int):
    from visionml.train import TrainOptions, train

    shutil.rmtree(run_dir, ignore_errors=True)
    settings = {**overrides, "number_of_epochs": str(epochs), "evaluation_frequency": str(epochs),
                "early_stopping": "false"}
    started = time.perf_counter()
    result = train(TrainOptions(task=TASK, training_data=data["train"], validation_data=data["val"], output=run_dir,
                                pretrained=False, preset="cpu", seed=0, overrides=settings, device="cpu",
                                progress=False))
    print(f"trained {run_dir.name}: {epochs} epochs in {time.perf_counter() - started:.0f} s", flush=True)
    return result


def scores(model_dir: Path, val: Path, grid: str) -> dict:
    """Box mAP@0.5 of the model without and with tiled inference."""
    from visionml.metrics.evaluate import evaluate_model

    out = {}
    for name, tile in (("plain_inference", "none"), ("tiled_inference", grid)):
        metrics = evaluate_model(model_dir, val, overrides={"tile_grid_size": tile})
        out[name] = {"map50": round(metrics["mean_average_precision"], 4),
                     "coco_ap50": _round(metrics["coco"].get("AP50")),
                     "per_label_ap": {k: _round(v["average_precision"]) for k, v in metrics["per_label"].items()}}
    return out


def inference_cost(model_dir: Path, val: Path, grid: str, repeats: int) -> dict:
    """Seconds per image of raw_predict without and with tiling, and their ratio."""
    from visionml.data.images import load_rgb, local_path
    from visionml.data.reader import read_dataset
    from visionml.predict import Predictor

    records = read_dataset(val, TASK, skip_invalid=True).records
    images = [load_rgb(local_path(r.path)) for r in records]
    seconds = {}
    for name, tile in (("plain", "none"), ("tiled", grid)):
        predictor = Predictor.from_folder(model_dir, overrides={"tile_grid_size": tile})
        predictor.raw_predict(images[:1])  # warm up
        best = float("inf")
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            predictor.raw_predict(images)
            best = min(best, time.perf_counter() - started)
        seconds[name] = best / len(images)
    return {"plain_seconds_per_image": round(seconds["plain"], 4), "tiled_seconds_per_image": round(seconds["tiled"], 4),
            "cost_ratio": round(seconds["tiled"] / seconds["plain"], 2), "images": len(images)}


def report(result: dict) -> None:
    tiled, plain, cost = result["tiled"], result["plain"], result["inference"]
    print(f"\n{'model':<22}{'epochs':>7}{'train s':>9}{'mAP@0.5 plain':>15}{'mAP@0.5 tiled':>15}"
          f"{'AP50 plain':>12}{'AP50 tiled':>12}")
    for name, row in (("plain (no tiling)", plain), (f"tiled {result['grid']}", tiled)):
        print(f"{name:<22}{row['epochs']:>7}{row['train_seconds']:>9.0f}{row['plain_inference']['map50']:>15.4f}"
              f"{row['tiled_inference']['map50']:>15.4f}{_show(row['plain_inference']['coco_ap50']):>12}"
              f"{_show(row['tiled_inference']['coco_ap50']):>12}")
    print(f"\ntiling's gain (tiled model, tiled inference - plain model, plain inference): "
          f"{result['map50_gain']:+.4f} mAP@0.5 (target +0.15)")
    print(f"inference: {cost['plain_seconds_per_image']:.3f} s/image plain, {cost['tiled_seconds_per_image']:.3f} "
          f"s/image tiled: {cost['cost_ratio']:.2f}x (Azure: about 7x for 3x2)"
          + ("\n(--smoke: these numbers mean nothing)" if result["smoke"] else ""))


def _round(value):
    return None if value is None else round(float(value), 4)


def _show(value) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
