"""The two plain functions of the training loop: ``train_one_epoch`` and ``evaluate``.

Everything task-specific comes in through the ``TaskAdapter``; everything about the run
(checkpoints, best epoch, early stopping) lives in ``visionml.train.core``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from ..errors import VisionMLError


class NonFiniteLossError(VisionMLError):
    """The loss became NaN or infinite: training cannot recover from it."""


@dataclass
class Precision:
    """How the forward pass runs: ``dtype`` None is plain fp32; ``scaler`` only for fp16."""

    name: str
    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto`` is fp16 mixed precision on CUDA and fp32 on CPU (bf16 on CPU is opt-in: faster, less exact)."""
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "fp32"
    if name == "fp32":
        return Precision(name, device.type)
    if name == "bf16":
        return Precision(name, device.type, torch.bfloat16)
    if name == "fp16":
        return Precision(name, device.type, torch.float16, torch.amp.GradScaler(device.type))
    raise VisionMLError(f"--precision {name!r} is not one of auto, fp32, bf16, fp16")


def _no_sync(model, skip_sync: bool):
    """Under DDP, accumulate gradients locally until the last micro-batch of a step."""
    if skip_sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _check_finite(value: float, losses: dict, epoch: int, step: int) -> None:
    if math.isfinite(value):
        return
    parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
    raise NonFiniteLossError(
        f"the training loss became {value} at epoch {epoch}, step {step + 1} ({parts}). "
        "Training cannot continue from a non-finite loss. Lower the learning rate "
        "(--set learning_rate=...), raise warmup_cosine_lr_warmup_epochs, or train with "
        "--precision fp32; check the labels for degenerate boxes.")


def train_one_epoch(model, loader, optimizer, scheduler, adapter, criterion, *, device, precision: Precision,
                    epoch: int, accumulation: int = 1, progress: bool = False) -> dict:
    """One pass over ``loader``; returns the mean of each loss, the learning rate, images and seconds."""
    from tqdm.auto import tqdm

    model.train()
    sums, images_seen, steps = defaultdict(float), 0, len(loader)
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    for step, (images, targets) in enumerate(bar):
        images, targets = adapter.to_device(images, targets, device)
        ends_step = (step + 1) % accumulation == 0 or step + 1 == steps
        with _no_sync(model, not ends_step):
            with precision.autocast():
                losses = adapter.train_losses(model, images, targets, criterion)
                loss = sum(losses.values())
            value = loss.item()
            _check_finite(value, losses, epoch, step)
            scaled = loss / accumulation
            (precision.scaler.scale(scaled) if precision.scaler else scaled).backward()
        if ends_step:
            _optimizer_step(optimizer, precision.scaler)
            scheduler.step()
        sums["loss"] += value
        for name, part in losses.items():
            if name != "loss":
                sums[name] += part.item()
        images_seen += len(images)
        if progress and step % 5 == 0:
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.4f}")
    seconds = time.perf_counter() - start
    means = {name: total / max(1, steps) for name, total in sums.items()}
    return {**means, "lr": optimizer.param_groups[0]["lr"], "images": images_seen, "seconds": seconds}


def _optimizer_step(optimizer, scaler) -> None:
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)


@torch.inference_mode()
def evaluate(model, loader, adapter, hp: dict, *, device, precision: Precision, progress: bool = False):
    """Predict every validation batch; returns (ground-truth items, prediction items), in loader order."""
    from tqdm.auto import tqdm

    from ..models.detection import score_threshold_at_most

    model.eval()
    gts, preds = [], []
    # Detectors: boxes down to a low score for AP; the metrics apply box_score_threshold to P/R.
    with score_threshold_at_most(model):
        for images, targets in tqdm(loader, desc="validate", leave=False, disable=not progress,
                                    dynamic_ncols=True):
            images, targets = adapter.to_device(images, targets, device)
            with precision.autocast():
                batch_gt, batch_pred = adapter.eval_batch(model, images, targets, hp)
            gts.extend(batch_gt)
            preds.extend(batch_pred)
    return gts, preds
