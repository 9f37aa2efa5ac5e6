"""Dataset throughput per task: decode + targets + training transforms, in images/s.

For each task this makes a default sample-data set (200 images, 160 for training), reads it with
``read_dataset`` and times, interleaved round by round so that load on a shared machine hits all
alike:

* ``bare decode``: PIL decode + to-tensor in one process, no targets, no transforms (the floor
  any dataset pays: the baseline of the ratios);
* ``dataset, 0 workers``: ``VisionDataset`` items with the training transforms, in one process;
* ``DataLoader, 2 workers``: the same through a DataLoader, batch 16, the task's collate, with
  persistent workers already started (steady state, epochs after the first);
* ``first epoch, 2 workers``: a fresh DataLoader's epoch, worker start-up included.

Also times ``make_sample_data`` itself. Run: ``.venv/bin/python benchmarks/bench_datasets.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from visionml.data.dataset import build_datasets, collate_fn
from visionml.data.images import load_rgb
from visionml.data.reader import read_dataset
from visionml.data.sample import make_sample_data
from visionml.tasks import TASKS


def bare_decode(records) -> None:
    for record in records:
        TF.to_dtype(TF.pil_to_tensor(load_rgb(record.path)), torch.float32, scale=True)


def dataset_items(dataset) -> None:
    for i in range(len(dataset)):
        dataset[i]


def make_loader(dataset, task: str, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=16, shuffle=True, num_workers=workers,
                      collate_fn=collate_fn(task), persistent_workers=True)


def epoch(loader) -> None:
    for _ in loader:
        pass


def first_epoch(dataset, task: str, workers: int) -> None:
    """An epoch from a fresh DataLoader: includes starting the worker processes."""
    epoch(DataLoader(dataset, batch_size=16, shuffle=True, num_workers=workers, collate_fn=collate_fn(task)))


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_task(task: str, root: Path, rounds: int) -> dict:
    start = time.perf_counter()
    paths = make_sample_data(task, root / task, n=200, seed=0)
    made = 200 / (time.perf_counter() - start)
    loaded = read_dataset(paths["train"], task)
    train, _ = build_datasets(loaded.records, loaded.records, task, loaded.labels, {})
    n = len(loaded.records)
    loader = make_loader(train, task, 2)
    epoch(loader)  # start the persistent workers
    best = dict.fromkeys(("bare", "items", "loader2", "first2"), float("inf"))
    for _ in range(rounds):
        best["bare"] = min(best["bare"], timed(bare_decode, loaded.records))
        best["items"] = min(best["items"], timed(dataset_items, train))
        best["loader2"] = min(best["loader2"], timed(epoch, loader))
        best["first2"] = min(best["first2"], timed(first_epoch, train, task, 2))
    del loader
    rates = {k: n / v for k, v in best.items()}
    return {"task": task, "images": n, "generate": made, **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the DataLoader workers are the parallelism being measured
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) in the main process")
    print("| task | train images | bare decode (img/s) | dataset, 0 workers (img/s) | "
          "DataLoader, 2 workers (img/s) | 2 workers / bare | first epoch, 2 workers (img/s) | "
          "sample-data (img/s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            r = bench_task(task, Path(tmp), args.rounds)
            print(f"| {task} | {r['images']} | {r['bare']:.0f} | {r['items']:.0f} | {r['loader2']:.0f} | "
                  f"{r['loader2'] / r['bare']:.2f}x | {r['first2']:.0f} | {r['generate']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
