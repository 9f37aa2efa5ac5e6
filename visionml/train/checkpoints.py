"""What a run keeps on disk between epochs: ``checkpoints/last.pt`` (and the epoch copies of
``checkpoint_frequency``), the best epoch's model folder and metrics, the restore on ``--resume``,
and the free-space check that refuses a full disk before epoch 1."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import VisionMLError
from . import distributed, rundir
from .settings import Settings

CHECKPOINT_FORMAT = 1
# history.csv, config.json, metrics.json and the plots, with room to spare.
SMALL_FILES_BYTES = 16 * 2**20


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


def check_free_space(run_dir: Path, settings: Settings, resume: bool) -> None:
    """Refuse, before the run folder is made, a disk without room for the run's files: a full disk
    would otherwise show only when the first epoch ends and its checkpoint cannot be written."""
    from ..fileio import free_bytes

    weights, checkpoint = _file_sizes(settings)
    every = settings.hp["checkpoint_frequency"]
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
    if hp["optimizer"] == "sgd":
        slots = 1 if hp["momentum"] > 0 else 0
    else:
        slots = 3 if hp["ams_gradient"] else 2
    return weights, weights + slots * trainable


def save_best(run_dir: Path, model, settings: Settings, metrics: dict, epoch: int) -> None:
    from ..modelio import make_manifest, save_model_folder

    manifest = make_manifest(settings.task, settings.model_name, settings.labels, settings.hp)
    save_model_folder(run_dir / rundir.MODEL_DIR, model, manifest)
    rundir.write_json(run_dir / rundir.METRICS, {"epoch": epoch, **metrics})


def keeps_checkpoint(epoch: int, hp) -> bool:
    every = hp["checkpoint_frequency"]
    return bool(every) and epoch % int(every) == 0


def end_epoch(run_dir: Path, state: State, model, optimizer, scheduler, precision, info, keep: bool = False) -> None:
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


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete what a run killed mid-save (``kill -9``, a power cut) left: the temporary files of
    checkpoints (``checkpoints/.last.pt.1a2b3c4d.tmp``, each as large as a checkpoint) and the staging
    folders of the model folder (``.model.1a2b3c4d.tmp``). Nothing else writes there while a run is
    resumed; their final names were never replaced by them, so nothing finished is lost."""
    import shutil

    stale = [*(run_dir / rundir.CHECKPOINT).parent.glob(".*.pt.*.tmp"), *run_dir.glob(f".{rundir.MODEL_DIR}.*.tmp")]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def restore(run_dir: Path, model, optimizer, scheduler, precision, info) -> State:
    if info.is_main:
        remove_stale_temporaries(run_dir)
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
