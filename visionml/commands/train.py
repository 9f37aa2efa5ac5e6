"""``visionml train``: train a model on JSONL data and leave a run folder (DESIGN.md)."""

from __future__ import annotations

import argparse

from ._args import add_datastore, add_device
import os


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model and write a run folder",
        description="Train a model for one of the four tasks on Azure AutoML-for-Images JSONL data. "
        "Writes RUN/model (the model folder), config.json, history.csv, metrics.json, data_report.json, "
        "checkpoints/last.pt and plots/. Under `torchrun --nproc_per_node N` it trains with "
        "DistributedDataParallel.")
    parser.add_argument("--task", help="image_classification, image_classification_multilabel, "
                        "image_object_detection or image_instance_segmentation (or an alias)")
    parser.add_argument("--training-data", metavar="DATA", help="a JSONL file, an MLTable file or folder")
    parser.add_argument("--validation-data", metavar="DATA",
                        help="validation data; without it validation_data_size of the training data is held out")
    parser.add_argument("--model-name", metavar="NAME", help="a registry name (see `visionml models`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter by its Azure name, e.g. --set number_of_epochs=10 (repeatable)")
    parser.add_argument("--output", "-o", metavar="DIR",
                        help="the run folder (default: the next free runs/train, runs/train2, ...)")
    add_device(parser)
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                        help="start from random weights instead of ImageNet/COCO weights")
    parser.add_argument("--preset", metavar="NAME",
                        help="a named group of hyperparameters (`cpu`: small models and images that train "
                        "in minutes on a CPU); --set values override it")
    parser.add_argument("--checkpoint", metavar="MODEL_DIR",
                        help="start from an earlier model folder's weights (incremental training)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --output from checkpoints/last.pt")
    parser.add_argument("--skip-invalid", action="store_true", default=None,
                        help="the default, kept for older scripts: ignore_data_errors=true, as Azure. Training "
                        "leaves out what Azure's trainer leaves out (an invalid box or polygon segment, not its "
                        "line; a line that cannot be read; an image that is missing or does not decode), lists "
                        "each drop by FILE:LINE in RUN/data_report.json and RUN/invalid_lines.jsonl, and stops "
                        "only when nothing usable is left for a class. --set ignore_data_errors=false instead "
                        "stops on any problem before any work (together with --skip-invalid: a usage error). "
                        "`visionml validate` lists every problem with what training does about it")
    parser.add_argument("--seed", type=int, help="random seed: the same seed gives the same weights")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto (default): fp16 mixed precision on CUDA, fp32 on CPU; bf16 is ~2x faster on "
                        "CPUs that compute it natively (AVX512-BF16, AMX) and runs as fp32 on the others")
    add_datastore(parser)
    parser.add_argument("--workers", type=int, metavar="N",
                        help="data loader processes (default: 0 on 1-2 CPUs, else min(8, CPUs/2))")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..config import parse_set_arguments
    from ..errors import UsageError
    from ..train import TrainOptions, train

    if not args.resume and (not args.task or not args.training_data):
        raise UsageError("visionml train needs --task and --training-data (or --resume --output RUN)")
    options = TrainOptions(
        task=args.task, training_data=args.training_data, validation_data=args.validation_data,
        model_name=args.model_name, overrides=parse_set_arguments(args.overrides), output=args.output,
        device=args.device, pretrained=args.pretrained, preset=args.preset, checkpoint=args.checkpoint,
        resume=args.resume, skip_invalid=args.skip_invalid, seed=args.seed, precision=args.precision,
        datastores=list(args.datastore), workers=args.workers)
    result = train(options)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return 0
    if result.best_epoch is None:
        print(f"run folder: {result.run_dir} (no evaluation finished: {result.stop_reason})")
        return 0
    if result.best_score is None:  # validation_metric_type none: the last evaluated epoch, unscored
        print(f"epoch {result.best_epoch} (no validation metrics: validation_metric_type none; {result.stop_reason})")
        print(f"model folder: {result.model_dir}")
        print(f"run folder: {result.run_dir}")
        return 0
    print(f"best epoch {result.best_epoch}: {result.primary_metric} {result.best_score:.4f} ({result.stop_reason})")
    print(f"model folder: {result.model_dir}")
    print(f"run folder: {result.run_dir}")
    return 0
