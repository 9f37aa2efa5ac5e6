"""``train(options)``: one training run from JSONL data to a run folder.

The steps, in order: settle the settings (from the options, or the run folder's ``config.json``
on ``--resume``), read and check all data before any work, build the model, then epochs of
``loop.train_one_epoch`` / ``loop.evaluate`` with best-epoch tracking, early stopping and a
checkpoint after every epoch. Under ``torchrun`` rank 0 writes every file; the other ranks train
their shard and send their validation predictions to rank 0.

Azure's training rules, each asked of the task or the model rather than spelled here: gradients
clipped before every step (``ModelSpec.grad_clip``), the best epoch and early stopping
(``Task.ties_make_best``, ``Task.stops_early``), no metrics and the last evaluated epoch as the
model when the task computes none (``Task.computes_metrics``: detection's ``validation_metric_type:
none``), and the optional ``log_training_metrics`` / ``log_validation_loss`` columns of history.csv.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, VisionMLError
from . import distributed, rundir
from ..models.registry import get_spec
from .checkpoints import State, check_free_space, end_epoch, keeps_checkpoint, restore, save_best
from .loaders import load_data, train_loader, val_loader
from .loop import Precision, evaluate, progress_mode, resolve_precision, train_one_epoch
from .optim import build_optimizer, build_scheduler
from .options import RunResult, TrainOptions
from .settings import Settings, output_dir, settings_for


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
    criterion: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    accumulation: int
    progress: str
    log: object
    grad_clip: tuple | None = None
    val_criterion: object = None
    """The unweighted loss of the validation batches (``log_validation_loss``; Azure's classification
    trainer validates without class weights too); None for detectors, which compute their own."""


def _train(options: TrainOptions, info: distributed.DistInfo) -> RunResult:
    started = time.perf_counter()
    log = _logger(info)
    run_dir = Path(distributed.broadcast(info, output_dir(options) if info.is_main else None))
    settings = settings_for(options, run_dir)
    if info.enabled and info.world_size > 1 and not settings.hp["distributed"]:
        raise UsageError(f"distributed=false, but torchrun started {info.world_size} processes: start one "
                         "process (visionml train ...) or drop distributed=false")
    for note in settings.hp.notes:
        log(note)
    _on_main(info, rundir.check, run_dir, options.resume)
    # All data is read and checked before the run folder is made: bad data leaves nothing behind.
    train_records, val_records, data_report, settings.labels = load_data(settings)
    _on_main(info, check_free_space, run_dir, settings, options.resume)
    _on_main(info, rundir.create, run_dir)
    if info.is_main:  # RUN/data_report.json, RUN/invalid_lines.jsonl and a summary of what was left out
        data_report.write(run_dir, log)
    parts = _build(options, info, settings, run_dir, train_records, val_records, log)

    state = State()
    if options.resume:
        state = restore(run_dir, parts.model, parts.optimizer, parts.scheduler, parts.precision, info)
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
        _finish(run_dir, state, settings, parts.model, parts.val_loader, parts.device, parts.precision, best_eval)
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
    loader = train_loader(settings, train_records, options, info, device)
    criterion = settings.task.criterion(settings.hp, settings.labels, train_records)
    val_criterion = settings.task.criterion(settings.hp.replace(weighted_loss=0), settings.labels, val_records) \
        if "weighted_loss" in settings.hp else criterion
    accumulation = int(settings.hp["gradient_accumulation_step"])
    optimizer = build_optimizer(model.parameters(), settings.hp)
    scheduler = build_scheduler(optimizer, settings.hp, math.ceil(len(loader) / accumulation))
    progress = progress_mode(options.progress) if info.is_main else "off"
    return Parts(settings, run_dir, info, device, precision, model, _wrap_ddp(model, device, info), loader,
                 val_loader(settings, val_records, options, info, device),
                 criterion.to(device) if criterion is not None else None, optimizer, scheduler, accumulation,
                 progress, log, get_spec(settings.model_name).grad_clip,
                 val_criterion.to(device) if val_criterion is not None else None)


def _epoch(parts: Parts, state: State, on_evaluation):
    """Train one epoch, maybe evaluate, update the best model and the checkpoint. Returns this epoch's
    validation (ground truth, predictions) when it became the best, else None."""
    settings, info, task, hp = parts.settings, parts.info, parts.settings.task, parts.settings.hp
    epochs, epoch = int(hp["number_of_epochs"]), state.epoch + 1
    if hasattr(parts.train_loader.sampler, "set_epoch"):
        parts.train_loader.sampler.set_epoch(epoch)
    evaluates, scored = _evaluates(epoch, epochs, hp), task.computes_metrics(hp)
    # Azure computes training metrics on the epochs that evaluate, and never without validation metrics.
    train_metrics = evaluates and scored and hp["log_training_metrics"]
    stats = train_one_epoch(parts.trained, parts.train_loader, parts.optimizer, parts.scheduler, task,
                            parts.criterion, device=parts.device, precision=parts.precision, epoch=epoch,
                            accumulation=parts.accumulation, progress=parts.progress, grad_clip=parts.grad_clip,
                            predict_hp=hp if train_metrics else None)
    predictions = stats.pop("predictions", None)
    row = _history_row(epoch, distributed.sum_scalars(info, stats), info)
    if predictions is not None:
        row.update(_training_metric(predictions, settings, info))
    metrics, best_eval = None, None
    if evaluates and not scored:
        # No metrics (Azure: "val_metric_type is None"): every evaluated epoch's model is the model.
        metrics = {"notes": [NO_METRICS_NOTE]}
        state.best_epoch, state.best_metrics = epoch, metrics
        _on_main(info, save_best, parts.run_dir, parts.model, settings, metrics, epoch)
    elif evaluates:
        metrics, evaluation = _validate(parts, settings)
        row.update(_scalar_metrics(metrics))
        if _update_best(state, epoch, metrics, settings):
            best_eval = evaluation
            _on_main(info, save_best, parts.run_dir, parts.model, settings, metrics, epoch)
        state.stop_reason = _early_stop_reason(state, epoch, hp, task)
    if metrics is not None and scored and on_evaluation is not None and on_evaluation(epoch, metrics):
        state.stop_reason = state.stop_reason or f"stopped by on_evaluation after epoch {epoch}"
    state.history.append(row)
    state.epoch = epoch
    state.finished = bool(state.stop_reason) or epoch >= epochs
    state.stop_reason = state.stop_reason or (f"completed {epochs} epochs" if state.finished else "")
    end_epoch(parts.run_dir, state, parts.model, parts.optimizer, parts.scheduler, parts.precision, info,
              keep=keeps_checkpoint(epoch, settings.hp))
    parts.log(_epoch_line(row, epochs, settings))
    return best_eval


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
    frozen = freeze_layers(model, settings.model_name, settings.hp["layers_to_freeze"])
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


def _evaluates(epoch: int, epochs: int, hp) -> bool:
    every = int(hp["evaluation_frequency"])
    return epoch % every == 0 or epoch == epochs


NO_METRICS_NOTE = ("validation_metric_type is 'none': no validation metrics were computed; the model is the "
                   "last evaluated epoch's, as in Azure")


def _validate(parts: Parts, settings: Settings):
    """The validation metrics (with ``validation_loss`` under ``log_validation_loss``) on every rank, and
    the (ground truth, predictions) items on rank 0."""
    info, hp = parts.info, settings.hp
    with_loss = bool(hp["log_validation_loss"])
    out = evaluate(parts.model, parts.val_loader, settings.task, hp, device=parts.device, precision=parts.precision,
                   progress=parts.progress, loss_criterion=parts.val_criterion, with_loss=with_loss)
    gts, preds = distributed.gather_lists(info, out[0]), distributed.gather_lists(info, out[1])
    loss = distributed.sum_scalars(info, {"sum": out[2][0], "images": out[2][1]}) if with_loss else None
    metrics = None
    if info.is_main:
        ground_truth, predictions = settings.task.finish(gts, preds)
        metrics = settings.task.metrics(ground_truth, predictions, settings.labels, hp)
        if loss is not None and loss["images"]:
            metrics["validation_loss"] = loss["sum"] / loss["images"]
    return distributed.broadcast(info, metrics), (gts, preds) if info.is_main else None


def _training_metric(predictions, settings: Settings, info) -> dict:
    """``{PRIMARY_train: value}``: the primary metric over this epoch's training batches (Azure's
    ``log_training_metrics``, named as Azure names its training metrics)."""
    gts, preds = distributed.gather_lists(info, predictions[0]), distributed.gather_lists(info, predictions[1])
    value = None
    if info.is_main and gts:
        ground_truth, predicted = settings.task.finish(gts, preds)
        value = settings.task.metrics(ground_truth, predicted, settings.labels, settings.hp).get(
            settings.task.primary_metric)
    value = distributed.broadcast(info, value)
    return {f"{settings.task.primary_metric}_train": value} if isinstance(value, (int, float)) else {}


def _scalar_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _update_best(state: State, epoch: int, metrics: dict, settings: Settings) -> bool:
    """Azure's rule: each evaluation after ``early_stopping_delay`` epochs counts one more without
    improvement, a higher score resets the count, and a higher (or, with ``Task.ties_make_best``, an
    equal) score makes this epoch the best. Returns whether it did."""
    score = float(metrics[settings.task.primary_metric])
    best = state.best_score if state.best_score is not None else 0.0  # Azure starts from 0
    if epoch > int(settings.hp["early_stopping_delay"]):
        state.evals_without_improvement += 1
    if score > best:
        state.evals_without_improvement = 0
    elif not (state.best_score is None or (score == best and settings.task.ties_make_best)):
        return False
    state.best_score, state.best_epoch, state.best_metrics = score, epoch, metrics
    return True


def _early_stop_reason(state: State, epoch: int, hp, task=None) -> str:
    """Why training stops after ``epoch`` (empty: it goes on), by the task's rule (``Task.stops_early``;
    without a task, Azure's classification rule: at the patience)."""
    if not hp["early_stopping"]:
        return ""
    patience = int(hp["early_stopping_patience"])
    rule = task if task is not None else getattr(hp, "task", None)
    stops = rule.stops_early(state.evals_without_improvement, patience) if rule is not None \
        else state.evals_without_improvement >= patience
    if stops:
        return (f"early stopping after epoch {epoch}: no improvement for {state.evals_without_improvement} "
                f"evaluations (patience {patience}; best epoch {state.best_epoch})")
    return ""


def _epoch_line(row: dict, epochs: int, settings: Settings) -> str:
    primary = settings.task.primary_metric
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


def _finish(run_dir: Path, state: State, settings: Settings, model, loader, device, precision, best_eval) -> None:
    """metrics.json for the best epoch, the curves, and the evaluation plots of the best model."""
    if state.best_metrics is None:
        return
    rundir.write_json(run_dir / rundir.METRICS, {"epoch": state.best_epoch, **state.best_metrics})
    plots = run_dir / rundir.PLOTS
    rundir.save_curves(state.history, plots, settings.task.primary_metric)
    if not settings.task.computes_metrics(settings.hp):
        return  # nothing was predicted to plot
    if best_eval is None:  # the best epoch was before a resume: predict again with its weights
        from ..modelio import load_model_folder

        best, _ = load_model_folder(run_dir / rundir.MODEL_DIR)
        best_eval = evaluate(best.to(device), loader, settings.task, settings.hp, device=device, precision=precision)
    ground_truth, predictions = settings.task.finish(*best_eval)
    settings.task.plots(ground_truth, predictions, settings.labels, state.best_metrics, plots)


def _result(run_dir: Path, settings: Settings, state: State, seconds: float) -> RunResult:
    return RunResult(run_dir=run_dir, model_dir=run_dir / rundir.MODEL_DIR, task=settings.task,
                     model_name=settings.model_name, primary_metric=settings.task.primary_metric,
                     best_epoch=state.best_epoch, best_score=state.best_score, metrics=state.best_metrics or {},
                     epochs_run=state.epoch, stopped_early=state.stop_reason.startswith(("early", "stopped")),
                     stop_reason=state.stop_reason, seconds=seconds, history=list(state.history))


def _logger(info):
    def log(message: str) -> None:
        if info.is_main:
            print(message, file=sys.stderr, flush=True)

    return log
