"""Training throughput: visionml's loop (``train_one_epoch``) vs a bare torchvision loop.

    python benchmarks/bench_train.py [--rounds 3] [--batches 4] [--memory]

Same model builder, same seed, the same pre-decoded augmented batches, same batch size: the only
difference is the loop (data loading is outside both timings). Rounds interleave the two loops so that load from other
processes on a shared machine hits both alike; the figure is the median images/s over rounds.
``--memory`` also runs `visionml train --preset cpu` for one epoch of detection in a child
process and reports its peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {  # name: (task, model, hp, batch)
    "resnet18@224": ("image_classification", "resnet18",
                     {"training_crop_size": 224, "validation_resize_size": 256, "validation_crop_size": 224}, 16),
    "fasterrcnn_mobilenet_v3_large_fpn@320": (
        "image_object_detection", "fasterrcnn_mobilenet_v3_large_fpn",
        {"min_size": 320, "max_size": 320}, 4),
}


def build(case: str, data_dir: Path):
    import torch
    from torch.utils.data import DataLoader

    from visionml.config import resolve_hyperparameters
    from visionml.data.dataset import VisionDataset, collate_fn
    from visionml.data.reader import read_dataset
    from visionml.data.transforms import build_transforms
    from visionml.data.sample import make_sample_data

    task, model_name, overrides, batch = CASES[case]
    paths = make_sample_data(task, data_dir / task, n=40, seed=0, overwrite=True)
    loaded = read_dataset(paths["train"], task)
    hp = resolve_hyperparameters(task, {**overrides, "model_name": model_name, "training_batch_size": batch})
    dataset = VisionDataset(loaded.records, task, loaded.labels, build_transforms(task, hp, train=True),
                            cache_images=True)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate_fn(task), drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    return task, model_name, hp, loaded, loader


def new_model(task, model_name, hp, labels):
    import torch

    from visionml.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(model_name, task, len(labels), pretrained=False, hp=hp)
    return model, torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)


def visionml_loop(task, model, optimizer, batches, hp, labels, records, precision_name):
    import torch

    from visionml.tasks import get_task
    from visionml.train.loop import resolve_precision, train_one_epoch

    task = get_task(task)  # the task object is the training adapter since the task table (issue 14)
    criterion = task.criterion(hp, labels, records)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stats = train_one_epoch(model, batches, optimizer, scheduler, task, criterion, device=torch.device("cpu"),
                            precision=resolve_precision(precision_name, torch.device("cpu")), epoch=1)
    return stats["images"] / stats["seconds"]


def bare_loop(task, model, optimizer, batches, hp, labels, records, precision_name):
    """torchvision's references/classification and references/detection train_one_epoch, minus logging."""
    import torch

    dtype = torch.bfloat16 if precision_name == "bf16" else None
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    seen, start = 0, time.perf_counter()
    for images, targets in batches:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            if task == "image_classification":
                loss = criterion(model(images), targets)
            else:
                loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(images)
    return seen / (time.perf_counter() - start)


def first_batches(loader, n: int) -> list:
    """The first ``n`` batches, decoded and augmented once, outside the timed region: both loops
    train on identical tensors and neither pays for data loading."""
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n:
            break
    return batches


def throughput(case: str, data_dir: Path, rounds: int, n_batches: int) -> list[dict]:
    task, model_name, hp, loaded, loader = build(case, data_dir)
    batches = first_batches(loader, n_batches)
    rows = []
    for precision in ("fp32", "bf16"):
        loops = {"visionml": visionml_loop, "bare": bare_loop}
        state = {name: new_model(task, model_name, hp, loaded.labels) for name in loops}
        for name, loop in loops.items():  # warm-up: first-call allocations and kernel selection
            loop(task, *state[name], batches[:1], hp, loaded.labels, loaded.records, precision)
        speeds = {name: [] for name in loops}
        for round_ in range(rounds):
            # Alternate which loop goes first, so that neither always runs right after the other.
            order = list(loops.items()) if round_ % 2 == 0 else list(reversed(loops.items()))
            for name, loop in order:
                speeds[name].append(loop(task, *state[name], batches, hp, loaded.labels, loaded.records,
                                         precision))
        row = {"case": case, "precision": precision,
               **{name: statistics.median(values) for name, values in speeds.items()}}
        row["ratio"] = row["visionml"] / row["bare"]
        print(f"{case:40s} {precision}: visionml {row['visionml']:.2f} img/s, bare {row['bare']:.2f} img/s, "
              f"ratio {row['ratio']:.2f}", flush=True)
        rows.append(row)
    return rows


def peak_memory(data_dir: Path) -> None:
    from visionml.data.sample import make_sample_data

    paths = make_sample_data("image_object_detection", data_dir / "memory", n=40, seed=0, overwrite=True)
    command = [sys.executable, "-m", "visionml", "train", "--task", "image_object_detection",
               "--training-data", str(paths["train"]), "--validation-data", str(paths["val"]),
               "--output", str(data_dir / "memory_run"), "--no-pretrained", "--preset", "cpu",
               "--set", "number_of_epochs=1", "--seed", "0"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory of `visionml train --preset cpu` (detection, 32 images, 1 epoch): "
          f"{peak_mib:.0f} MiB ({time.perf_counter() - started:.0f} s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", choices=list(CASES), action="append")
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.case or list(CASES):
            throughput(case, Path(tmp), args.rounds, args.batches)
        if args.memory:
            peak_memory(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
