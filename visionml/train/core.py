"""``train(options)``: one training run from JSONL data to a run folder.

The steps, in order: settle the settings (from the options, or the run folder's ``config.json``
on ``--resume``), read and check all data before any work, build the model, then epochs of
``loop.train_one_epoch`` / ``loop.evaluate`` with best-epoch tracking, early stopping and a
checkpoint after every epoch. Under ``torchrun`` rank 0 writes every file; the other ranks train
their shard and send their validation predictions to rank 0.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, VisionMLError
from ..tasks import PRIMARY_METRIC, canonical_task
from . import distributed, rundir
from .adapters import ADAPTERS
from .loop import Precision, evaluate, progress_mode, resolve_precision, train_one_epoch
from .optim import build_optimizer, build_scheduler
from .options import PRECISIONS, RunResult, TrainOptions

CHECKPOINT_FORMAT = 1
# Options a resumed run takes from config.json; an explicit different value is refused.
RESUMED_FIELDS = ("task", "training_data", "validation_data", "pretrained", "preset", "checkpoint",
                  "skip_invalid", "seed", "precision")
# Decoded images are kept in memory when the whole set is smaller than this (RGB bytes).
CACHE_LIMIT_BYTES = 512 * 2**20


@dataclass
class Settings:
    """Everything the run is fixed to, as saved in ``config.json``."""

    task: str
    model_name: str
    hp: dict
    run: dict
    labels: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"task": self.task, "model_name": self.model_name, "labels": self.labels,
                "hyperparameters": self.hp, "run": self.run}


@dataclass
class State:
    """What changes from epoch to epoch and goes into ``checkpoints/last.pt``."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    best_metrics: dict | None = None
    evals_without_improvement: int = 0
    finished: bool = False
    stop_reason: str = ""


def train(options: TrainOptions) -> RunResult:
    """Train one model as ``options`` say and return where it went and how well it did."""
    info = distributed.setup(_device_kind(options.device))
    try:
        return _train(options, info)
    finally:
        distributed.cleanup(info)


# The name ARCHITECTURE.md uses (``visionml.train.run``).
run = train


@dataclass
class Parts:
    """Everything an epoch works with, built once per run."""

    settings: Settings
    run_dir: Path
    info: distributed.DistInfo
    device: torch.device
    precision: Precision
    model: torch.nn.Module
    trained: torch.nn.Module
    """``model``, or its DistributedDataParallel wrapper under torchrun."""
    train_loader: object
    val_loader: object
    adapter: object
    criterion: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    accumulation: int
    progress: str
    log: object


def _train(options: TrainOptions, info: distributed.DistInfo) -> RunResult:
    started = time.perf_counter()
    log = _logger(info)
    run_dir = Path(distributed.broadcast(info, _output_dir(options) if info.is_main else None))
    settings = _settings(options, run_dir)
    _on_main(info, rundir.check, run_dir, options.resume)
    # All data is read and checked before the run folder is made: bad data leaves nothing behind.
    train_records, val_records, problems, settings.labels = _load_data(settings)
    _on_main(info, _check_free_space, run_dir, settings, options.resume)
    _on_main(info, rundir.create, run_dir)
    if problems and info.is_main:
        from ..data.reader import write_invalid_lines

        count = write_invalid_lines(problems, run_dir / rundir.INVALID_LINES)
        log(f"skipped {count} invalid line(s); see {run_dir / rundir.INVALID_LINES}")
    parts = _build(options, info, settings, run_dir, train_records, val_records, log)

    state = State()
    if options.resume:
        state = _restore(run_dir, parts.model, parts.optimizer, parts.scheduler, parts.precision, info)
        if state.finished:
            log(f"{run_dir} already finished ({state.stop_reason}); nothing to resume")
            return _result(run_dir, settings, state, time.perf_counter() - started)
    log(f"training {settings.model_name} for {settings.task} on {len(train_records)} images "
        f"({len(val_records)} for validation), {len(settings.labels)} classes, device {parts.device}, "
        f"precision {parts.precision.name}"
        + (f", DistributedDataParallel over {info.world_size} processes" if info.enabled else "")
        + f", run folder {run_dir}")

    best_eval = None
    while not state.finished:
        evaluation = _epoch(parts, state, options.on_evaluation)
        best_eval = evaluation if evaluation is not None else best_eval
    if info.is_main:
        _finish(run_dir, state, settings, parts.model, parts.val_loader, parts.adapter, parts.device,
                parts.precision, best_eval)
    distributed.barrier(info)
    return _result(run_dir, settings, state, time.perf_counter() - started)


def _build(options: TrainOptions, info, settings: Settings, run_dir: Path, train_records, val_records, log) -> Parts:
    """Device, seeds, config.json, model, loaders, loss and optimizer: everything before epoch 1."""
    device = _device(options.device, info)
    precision = resolve_precision(settings.run["precision"], device)
    _seed_everything(settings.run["seed"] + info.rank)
    _on_main(info, rundir.write_json, run_dir / rundir.CONFIG, settings.to_json())
    _hint_cpu_time(settings, len(train_records), device, log)
    model = _build_model(settings, options, device, log)
    train_loader = _train_loader(settings, train_records, options, info, device)
    adapter = ADAPTERS[settings.task]
    criterion = adapter.make_criterion(settings.hp, settings.labels, train_records)
    accumulation = int(settings.hp.get("gradient_accumulation_step") or 1)
    optimizer = build_optimizer(model.parameters(), settings.hp)
    scheduler = build_scheduler(optimizer, settings.hp, math.ceil(len(train_loader) / accumulation))
    progress = progress_mode(options.progress) if info.is_main else "off"
    return Parts(settings, run_dir, info, device, precision, model, _wrap_ddp(model, device, info), train_loader,
                 _val_loader(settings, val_records, options, info, device), adapter,
                 criterion.to(device) if criterion is not None else None, optimizer, scheduler, accumulation,
                 progress, log)


def _epoch(parts: Parts, state: State, on_evaluation):
    """Train one epoch, maybe evaluate, update the best model and the checkpoint. Returns this epoch's
    validation (ground truth, predictions) when it became the best, else None."""
    settings, info = parts.settings, parts.info
    epochs, epoch = int(settings.hp["number_of_epochs"]), state.epoch + 1
    if hasattr(parts.train_loader.sampler, "set_epoch"):
        parts.train_loader.sampler.set_epoch(epoch)
    stats = train_one_epoch(parts.trained, parts.train_loader, parts.optimizer, parts.scheduler, parts.adapter,
                            parts.criterion, device=parts.device, precision=parts.precision, epoch=epoch,
                            accumulation=parts.accumulation, progress=parts.progress)
    row = _history_row(epoch, distributed.sum_scalars(info, stats), info)
    metrics, best_eval = None, None
    if _evaluates(epoch, epochs, settings.hp):
        metrics, evaluation = _validate(parts.model, parts.val_loader, parts.adapter, settings, parts.device,
                                        parts.precision, info, parts.progress)
        row.update(_scalar_metrics(metrics))
        if _update_best(state, epoch, metrics, settings):
            best_eval = evaluation
            _on_main(info, _save_best, parts.run_dir, parts.model, settings, metrics, epoch)
        state.stop_reason = _early_stop_reason(state, epoch, settings.hp)
    if metrics is not None and on_evaluation is not None and on_evaluation(epoch, metrics):
        state.stop_reason = state.stop_reason or f"stopped by on_evaluation after epoch {epoch}"
    state.history.append(row)
    state.epoch = epoch
    state.finished = bool(state.stop_reason) or epoch >= epochs
    state.stop_reason = state.stop_reason or (f"completed {epochs} epochs" if state.finished else "")
    _end_epoch(parts.run_dir, state, parts.model, parts.optimizer, parts.scheduler, parts.precision, info,
               keep=_keeps_checkpoint(epoch, settings.hp))
    parts.log(_epoch_line(row, epochs, settings))
    return best_eval


# ---- settings ----

def _output_dir(options: TrainOptions) -> Path:
    if options.output is not None:
        return Path(options.output).resolve()
    if options.resume:
        raise UsageError("--resume needs --output RUN_DIR: the run folder to continue")
    return rundir.next_free_dir().resolve()


def _settings(options: TrainOptions, run_dir: Path) -> Settings:
    if options.resume and (run_dir / rundir.CONFIG).is_file():
        return _resumed_settings(options, run_dir)
    if options.task is None or options.training_data is None:
        raise UsageError("a run needs --task and --training-data")
    task = canonical_task(options.task)
    overrides = dict(options.overrides or {})
    if options.model_name:
        overrides["model_name"] = options.model_name
    hp = _resolve_hp(task, overrides, options.preset)
    model_name = hp.get("model_name") or _default_model(task)
    hp["model_name"] = model_name
    if options.precision:
        hp["precision"] = options.precision
    precision = options.precision or hp.get("precision") or "auto"
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    run = {"training_data": _absolute(options.training_data), "validation_data": _absolute(options.validation_data),
           "pretrained": True if options.pretrained is None else bool(options.pretrained),
           "preset": options.preset, "checkpoint": _absolute(options.checkpoint),
           "skip_invalid": bool(options.skip_invalid), "seed": int(seed), "precision": precision,
           "datastores": list(options.datastores or [])}
    return Settings(task, model_name, hp, run)


def _resumed_settings(options: TrainOptions, run_dir: Path) -> Settings:
    saved = rundir.read_json(run_dir / rundir.CONFIG)
    settings = Settings(saved["task"], saved["model_name"], saved["hyperparameters"], saved["run"],
                        saved.get("labels", []))
    given = {"task": canonical_task(options.task) if options.task else None,
             "training_data": _absolute(options.training_data), "validation_data": _absolute(options.validation_data),
             "pretrained": options.pretrained, "preset": options.preset, "checkpoint": _absolute(options.checkpoint),
             "skip_invalid": options.skip_invalid, "seed": options.seed, "precision": options.precision}
    saved_values = {**settings.run, "task": settings.task}
    conflicts = [f"{k}: run has {saved_values.get(k)!r}, given {v!r}" for k, v in given.items()
                 if v is not None and k in RESUMED_FIELDS and v != saved_values.get(k)
                 and not (k == "skip_invalid" and v is False)]
    overrides = dict(options.overrides or {})
    if options.model_name:
        overrides["model_name"] = options.model_name
    if overrides:
        wanted = _resolve_hp(settings.task, overrides, settings.run.get("preset"))
        conflicts += [f"{k}: run has {settings.hp.get(k)!r}, given {wanted.get(k)!r}" for k in overrides
                      if wanted.get(k) != settings.hp.get(k)]
    if conflicts:
        raise UsageError(f"--resume continues {run_dir} with the settings it started with; these differ:\n  "
                         + "\n  ".join(conflicts) + "\nDrop them, or start a new run with another --output.")
    return settings


def _resolve_hp(task: str, overrides: dict, preset: str | None) -> dict:
    from ..config import check_supported, resolve_hyperparameters

    hp = dict(resolve_hyperparameters(task, overrides, preset))
    check_supported(hp)
    return hp


def _default_model(task: str) -> str:
    from ..models.registry import DEFAULT_MODEL

    return DEFAULT_MODEL[task]


def _absolute(path) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


# ---- data ----

def _load_data(settings: Settings):
    """Read and check every line of both files; returns (train, validation, problems, labels)."""
    from ..data.dataset import split_train_val
    from ..data.reader import read_dataset
    from ..data.resolve import parse_datastores

    run = settings.run
    datastores = parse_datastores(run.get("datastores") or [])
    skip = bool(run["skip_invalid"])
    # An image the model cannot take (a shape that resizes to nothing) is a problem of its line too.
    model = {**settings.hp, "model_name": settings.model_name}
    train = read_dataset(run["training_data"], settings.task, datastores=datastores, skip_invalid=skip,
                         model_settings=model)
    val = (read_dataset(run["validation_data"], settings.task, datastores=datastores, skip_invalid=skip,
                        model_settings=model)
           if run.get("validation_data") else None)
    problems = train.problems + (val.problems if val else [])
    labels = settings.labels or sorted(set(train.labels) | set(val.labels if val else []))
    if val is not None:
        return train.records, val.records, problems, labels
    fraction = float(settings.hp.get("validation_data_size") or 0.2)
    train_records, val_records = split_train_val(train.records, fraction, run["seed"], settings.task)
    return train_records, val_records, problems, labels


def _datasets(settings: Settings, records, train: bool, workers: int):
    from ..data.dataset import VisionDataset
    from ..data.transforms import build_transforms

    # Decoded images stay in memory only in-process: loader workers are restarted every epoch.
    pixels = sum((r.width or 0) * (r.height or 0) * 3 for r in records)
    return VisionDataset(records, settings.task, settings.labels, build_transforms(settings.task, settings.hp, train),
                         cache_images=workers == 0 and pixels < CACHE_LIMIT_BYTES,
                         skip_invalid=bool(settings.run["skip_invalid"]))


def _workers(options: TrainOptions, hp: dict) -> int:
    for chosen in (options.workers, hp.get("number_of_workers")):
        if chosen is not None:
            return int(chosen)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # On a small CPU a loader process steals cores from the model; decoding in-line is faster.
    return 0 if cpus <= 2 else min(8, cpus // 2)


def _loader_kwargs(settings: Settings, options: TrainOptions, device: torch.device) -> dict:
    from ..data.dataset import collate_fn

    workers = _workers(options, settings.hp)
    # Workers are not persistent: each epoch seeds new ones from the global generator, which the
    # checkpoint restores, so a resumed run augments exactly as an uninterrupted one.
    return {"collate_fn": collate_fn(settings.task), "num_workers": workers, "pin_memory": device.type == "cuda",
            "worker_init_fn": _seed_worker if workers else None}


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker (and ``random``) from the loader's seed; numpy needs the same.
    np.random.seed(torch.initial_seed() % 2**32)


def _train_loader(settings: Settings, records, options, info, device):
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    dataset = _datasets(settings, records, True, _workers(options, settings.hp))
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
                      **_loader_kwargs(settings, options, device))


def _val_loader(settings: Settings, records, options, info, device):
    from torch.utils.data import DataLoader, Subset

    dataset = _datasets(settings, records, False, _workers(options, settings.hp))
    if info.enabled:
        dataset = Subset(dataset, distributed.shard_indices(info, len(dataset)))
    batch = int(settings.hp.get("validation_batch_size") or settings.hp["training_batch_size"])
    return DataLoader(dataset, batch_size=batch, shuffle=False, **_loader_kwargs(settings, options, device))


# ---- model ----

def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "cpu"


def _device(name: str, info) -> torch.device:
    name = str(name or "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise UsageError(f"--device {name!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu")
    device = torch.device(name)
    return torch.device("cuda", info.local_rank) if device.index is None else device


def _build_model(settings: Settings, options: TrainOptions, device, log):
    from ..models.freeze import freeze_layers
    from ..models.registry import build_model

    model = build_model(settings.model_name, settings.task, len(settings.labels),
                        pretrained=settings.run["pretrained"], hp=settings.hp)
    if settings.run.get("checkpoint") and not options.resume:
        _load_checkpoint_model(model, settings, Path(settings.run["checkpoint"]), log)
    frozen = freeze_layers(model, settings.model_name, settings.hp.get("layers_to_freeze"))
    if frozen:
        log(f"froze {frozen:,} parameters (layers_to_freeze={settings.hp['layers_to_freeze']})")
    return model.to(device)


def _load_checkpoint_model(model, settings: Settings, folder: Path, log) -> None:
    """Start from an earlier model folder's weights; a head sized for other labels is left fresh."""
    from ..modelio import load_model_folder

    earlier, manifest = load_model_folder(folder)
    if manifest.get("model_name") != settings.model_name:
        raise UsageError(f"--checkpoint {folder} holds a {manifest.get('model_name')} model, but this run "
                         f"trains {settings.model_name}; pass --model-name {manifest.get('model_name')}")
    own = model.state_dict()
    matching = {k: v for k, v in earlier.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    skipped = len(own) - len(matching)
    log(f"started from {folder} ({len(matching)} tensors loaded"
        + (f", {skipped} left new because the labels differ)" if skipped else ")"))


def _wrap_ddp(model, device, info):
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _hint_cpu_time(settings: Settings, images: int, device, log) -> None:
    if device.type != "cpu":
        return
    from ..config import cpu_time_hint

    hint = cpu_time_hint(settings.task, settings.hp, images, preset=settings.run.get("preset"))
    if hint:
        log(hint)


# ---- epochs ----

def _history_row(epoch: int, stats: dict, info) -> dict:
    world = info.world_size
    row = {"epoch": epoch, "train_loss": stats["loss"] / world}
    row.update({f"train_{k}": v / world for k, v in stats.items()
                if k not in ("loss", "lr", "images", "seconds")})
    seconds = stats["seconds"] / world
    row.update({"lr": stats["lr"] / world, "seconds": round(seconds, 3),
                "images_per_second": round(stats["images"] / max(seconds, 1e-9), 3)})
    return row


def _evaluates(epoch: int, epochs: int, hp: dict) -> bool:
    every = int(hp.get("evaluation_frequency") or 1)
    return epoch % every == 0 or epoch == epochs


def _validate(model, loader, adapter, settings: Settings, device, precision: Precision, info, progress):
    from ..evaluate import metrics_for_task

    gts, preds = evaluate(model, loader, adapter, settings.hp, device=device, precision=precision, progress=progress)
    gts, preds = distributed.gather_lists(info, gts), distributed.gather_lists(info, preds)
    metrics = None
    if info.is_main:
        ground_truth, predictions = adapter.finish(gts, preds)
        metrics = metrics_for_task(settings.task, ground_truth, predictions, settings.labels, settings.hp)
    return distributed.broadcast(info, metrics), (gts, preds) if info.is_main else None


def _scalar_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _update_best(state: State, epoch: int, metrics: dict, settings: Settings) -> bool:
    score = float(metrics[PRIMARY_METRIC[settings.task]])
    if state.best_score is not None and not score > state.best_score:
        if epoch > int(settings.hp.get("early_stopping_delay") or 0):
            state.evals_without_improvement += 1
        return False
    state.best_score, state.best_epoch, state.best_metrics = score, epoch, metrics
    state.evals_without_improvement = 0
    return True


def _early_stop_reason(state: State, epoch: int, hp: dict) -> str:
    if not hp.get("early_stopping", True):
        return ""
    patience = int(hp.get("early_stopping_patience") or 5)
    if state.evals_without_improvement >= patience:
        return (f"early stopping after epoch {epoch}: no improvement for {patience} evaluations "
                f"(best epoch {state.best_epoch})")
    return ""


def _epoch_line(row: dict, epochs: int, settings: Settings) -> str:
    primary = PRIMARY_METRIC[settings.task]
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if primary in row:
        parts.append(f"{primary} {row[primary]:.4f}")
    parts += [f"lr {row['lr']:.3g}", f"{row['seconds']:.1f}s", f"{row['images_per_second']:.1f} img/s"]
    return "  ".join(parts)


# ---- files ----

def _on_main(info, function, *args):
    """Run ``function`` on rank 0; every rank raises rank 0's error, or none does."""
    error = None
    if info.is_main:
        try:
            function(*args)
        except VisionMLError as exc:
            error = exc
    error = distributed.broadcast(info, error) if info.enabled else error
    if error is not None:
        raise error


# history.csv, config.json, metrics.json and the plots, with room to spare.
SMALL_FILES_BYTES = 16 * 2**20


def _check_free_space(run_dir: Path, settings: Settings, resume: bool) -> None:
    """Refuse, before the run folder is made, a disk without room for the run's files: a full disk
    would otherwise show only when the first epoch ends and its checkpoint cannot be written."""
    from ..fileio import free_bytes

    weights, checkpoint = _file_sizes(settings)
    every = settings.hp.get("checkpoint_frequency")
    kept = int(settings.hp["number_of_epochs"]) // int(every) if every else 0
    if resume:  # its files exist already: room for the next last.pt beside the current one
        need = checkpoint + SMALL_FILES_BYTES
    else:  # last.pt and the copy that replaces it, model/, and the epoch checkpoints kept
        need = (2 + kept) * checkpoint + weights + SMALL_FILES_BYTES
    free = free_bytes(run_dir)
    if free < need:
        mb = lambda n: f"{n / 2**20:,.0f} MB"  # noqa: E731
        extra = f" and {kept} kept epoch checkpoints (checkpoint_frequency={every})" if kept and not resume else ""
        raise VisionMLError(f"{run_dir}: not enough free disk space for this run: it needs about {mb(need)} "
                            f"(checkpoints/last.pt is about {mb(checkpoint)}, written beside the previous one, "
                            f"model/weights.safetensors about {mb(weights)}{extra}) and the disk has {mb(free)} "
                            f"free. Free some space, or pass --output on another disk")


def _file_sizes(settings: Settings) -> tuple[int, int]:
    """Bytes of the saved weights and of a checkpoint (weights plus the optimizer's state per
    trainable parameter: a momentum buffer for SGD, two moments for Adam/AdamW, three with AMSGrad),
    from the network built on the meta device (no memory, no weights)."""
    from ..models.registry import build_model

    with torch.device("meta"):
        model = build_model(settings.model_name, settings.task, len(settings.labels),
                            pretrained=settings.run["pretrained"], hp=settings.hp, fetch_weights=False)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    hp = settings.hp
    if hp.get("optimizer", "sgd") == "sgd":
        slots = 1 if float(hp.get("momentum", 0.9)) > 0 else 0
    else:
        slots = 3 if hp.get("ams_gradient") else 2
    return weights, weights + slots * trainable


def _save_best(run_dir: Path, model, settings: Settings, metrics: dict, epoch: int) -> None:
    from ..modelio import make_manifest, save_model_folder

    manifest = make_manifest(settings.task, settings.model_name, settings.labels, settings.hp)
    save_model_folder(run_dir / rundir.MODEL_DIR, model, manifest)
    rundir.write_json(run_dir / rundir.METRICS, {"epoch": epoch, **metrics})


def _keeps_checkpoint(epoch: int, hp: dict) -> bool:
    every = hp.get("checkpoint_frequency")
    return bool(every) and epoch % int(every) == 0


def _end_epoch(run_dir: Path, state: State, model, optimizer, scheduler, precision, info, keep: bool = False) -> None:
    """Gather every rank's random state, then rank 0 writes history.csv and checkpoints/last.pt
    (and, with ``keep``, the same checkpoint as ``checkpoints/epoch_NNN.pt``)."""
    rngs = distributed.gather_lists(info, [rundir.rng_state()])
    if not info.is_main:
        return
    rundir.write_history(run_dir / rundir.HISTORY, state.history)
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "epoch": state.epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": precision.scaler.state_dict() if precision.scaler else None,
        "rng": rngs, "history": state.history, "best_score": state.best_score, "best_epoch": state.best_epoch,
        "best_metrics": state.best_metrics, "evals_without_improvement": state.evals_without_improvement,
        "finished": state.finished, "stop_reason": state.stop_reason,
    }
    rundir.save_checkpoint(run_dir / rundir.CHECKPOINT, checkpoint,
                           copies=[rundir.epoch_checkpoint(run_dir, state.epoch)] if keep else [])


def _restore(run_dir: Path, model, optimizer, scheduler, precision, info) -> State:
    checkpoint = rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if precision.scaler is not None and checkpoint.get("scaler"):
        precision.scaler.load_state_dict(checkpoint["scaler"])
    rngs = checkpoint.get("rng") or []
    if len(rngs) == info.world_size:
        rundir.set_rng_state(rngs[info.rank])
    return State(epoch=checkpoint["epoch"], history=list(checkpoint["history"]),
                 best_score=checkpoint["best_score"], best_epoch=checkpoint["best_epoch"],
                 best_metrics=checkpoint["best_metrics"],
                 evals_without_improvement=checkpoint["evals_without_improvement"],
                 finished=checkpoint["finished"], stop_reason=checkpoint["stop_reason"])


def _finish(run_dir: Path, state: State, settings: Settings, model, val_loader, adapter, device, precision,
            best_eval) -> None:
    """metrics.json for the best epoch, the curves, and the evaluation plots of the best model."""
    if state.best_metrics is None:
        return
    rundir.write_json(run_dir / rundir.METRICS, {"epoch": state.best_epoch, **state.best_metrics})
    plots = run_dir / rundir.PLOTS
    rundir.save_curves(state.history, plots, PRIMARY_METRIC[settings.task])
    if best_eval is None:  # the best epoch was before a resume: predict again with its weights
        from ..modelio import load_model_folder

        best, _ = load_model_folder(run_dir / rundir.MODEL_DIR)
        best_eval = evaluate(best.to(device), val_loader, adapter, settings.hp, device=device, precision=precision)
    from ..evaluate import save_plots

    ground_truth, predictions = adapter.finish(*best_eval)
    save_plots(settings.task, ground_truth, predictions, settings.labels, state.best_metrics, plots)


def _result(run_dir: Path, settings: Settings, state: State, seconds: float) -> RunResult:
    return RunResult(run_dir=run_dir, model_dir=run_dir / rundir.MODEL_DIR, task=settings.task,
                     model_name=settings.model_name, primary_metric=PRIMARY_METRIC[settings.task],
                     best_epoch=state.best_epoch, best_score=state.best_score, metrics=state.best_metrics or {},
                     epochs_run=state.epoch, stopped_early=state.stop_reason.startswith(("early", "stopped")),
                     stop_reason=state.stop_reason, seconds=seconds, history=list(state.history))


def _logger(info):
    def log(message: str) -> None:
        if info.is_main:
            print(message, file=sys.stderr, flush=True)

    return log
