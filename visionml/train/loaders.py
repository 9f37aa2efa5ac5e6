"""The run's data: every line of both files read and checked before any work (what Azure drops is
left out and reported, ``ignore_data_errors``), the seeded train/validation split, and the
DataLoaders (with their transforms from the model's data config)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from . import distributed
from .options import TrainOptions
from .settings import Settings

# Decoded images are kept in memory when the whole set is smaller than this (RGB bytes).
CACHE_LIMIT_BYTES = 512 * 2**20


def load_data(settings: Settings):
    """Read and check every line of both files before any work; returns (train, validation, report,
    labels). ``ignore_data_errors`` (Azure's default: true) trains on what Azure's reader keeps and
    the ``DataReport`` lists each drop; false stops on any problem. Either way ``DataError`` (exit 1)
    when nothing usable is left for a class or a split, naming the lines."""
    from ..data.dataset import split_train_val
    from ..data.reader import label_order, load_dataset
    from ..data.report import DataReport
    from ..data.resolve import parse_datastores

    run = settings.run
    datastores = parse_datastores(run.get("datastores") or [])
    lenient = bool(settings.hp["ignore_data_errors"])
    report = DataReport(lenient)
    for name, key in (("training", "training_data"), ("validation", "validation_data")):
        if run.get(key):
            # An image the model cannot take (a shape that resizes to nothing) is a problem of its line too.
            report.splits[name] = load_dataset(run[key], settings.task, datastores=datastores,
                                               model_settings=settings.hp)
    _check(report)
    train, val = report.splits["training"], report.splits.get("validation")
    labels = settings.labels or label_order(set(train.labels) | set(val.labels if val else []),
                                            train.integer_labels and (val is None or val.integer_labels))
    if val is not None:
        return train.records, val.records, report, labels
    train_records, val_records = split_train_val(train.records, settings.hp["validation_data_size"], run["seed"],
                                                 settings.task)
    report.held_out = {"training": len(train_records), "validation": len(val_records)}
    return train_records, val_records, report, labels


def _check(report) -> None:
    """Stop before any work: on any problem with ignore_data_errors=false, else when what is left
    cannot train."""
    from ..data.problems import FATAL
    from ..errors import DataError

    problems = report.problems
    if problems and not report.ignore_data_errors:
        lines = len({(p.source, p.line) for p in problems})
        raise DataError(problems, summary=(
            f"{len(problems)} problem(s) on {lines} line(s) and ignore_data_errors=false: fix them, or train with "
            "ignore_data_errors=true (the default, as Azure) to leave out what Azure leaves out"))
    reasons = report.stop_reasons()
    if reasons:
        fatal = [p for p in problems if p.training == FATAL]
        counts = f"\n{report.summary(shown=0)}\nthe problems (`visionml validate` tags each)" if problems else ""
        raise DataError(fatal or problems, summary=f"training stops: {'; '.join(reasons)}{counts}")


def _dataset(settings: Settings, records, train: bool, workers: int):
    from ..data.dataconfig import resolve_data_config
    from ..data.dataset import VisionDataset

    # Decoded images stay in memory only in-process: loader workers are restarted every epoch.
    pixels = sum((r.width or 0) * (r.height or 0) * 3 for r in records)
    config = resolve_data_config(settings.model_name, settings.hp)
    # Training sees the tiles too (tile_grid_size); validation predicts whole images, tiled inside
    # the task's inference (Task.infer), so its metrics are those of the deployed model.
    return VisionDataset(records, settings.task, settings.labels, settings.task.transforms(config, train),
                         cache_images=workers == 0 and pixels < CACHE_LIMIT_BYTES,
                         skip_invalid=bool(settings.hp["ignore_data_errors"]),
                         tiling=settings.task.tiling(settings.hp) if train else None)


def workers(options: TrainOptions, hp) -> int:
    for chosen in (options.workers, hp["number_of_workers"]):
        if chosen is not None:
            return int(chosen)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # On a small CPU a loader process steals cores from the model; decoding in-line is faster.
    return 0 if cpus <= 2 else min(8, cpus // 2)


def _loader_kwargs(settings: Settings, count: int, device: torch.device) -> dict:
    # Workers are not persistent: each epoch seeds new ones from the global generator, which the
    # checkpoint restores, so a resumed run augments exactly as an uninterrupted one.
    return {"collate_fn": settings.task.collate, "num_workers": count, "pin_memory": device.type == "cuda",
            "worker_init_fn": _seed_worker if count else None}


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker (and ``random``) from the loader's seed; numpy needs the same.
    np.random.seed(torch.initial_seed() % 2**32)


def train_loader(settings: Settings, records, options, info, device):
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    count = workers(options, settings.hp)
    dataset = _dataset(settings, records, True, count)
    batch = int(settings.hp["training_batch_size"])
    if info.enabled:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=settings.run["seed"])
        per_rank = math.ceil(len(dataset) / info.world_size)
    else:
        sampler, per_rank = RandomSampler(dataset), len(dataset)
    # A last batch of one image breaks BatchNorm in training mode: drop it.
    drop_last = per_rank > batch and per_rank % batch == 1
    return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=drop_last,
                      **_loader_kwargs(settings, count, device))


def val_loader(settings: Settings, records, options, info, device):
    from torch.utils.data import DataLoader, Subset

    count = workers(options, settings.hp)
    dataset = _dataset(settings, records, False, count)
    if info.enabled:
        dataset = Subset(dataset, distributed.shard_indices(info, len(dataset)))
    return DataLoader(dataset, batch_size=int(settings.hp["validation_batch_size"]), shuffle=False,
                      **_loader_kwargs(settings, count, device))
