"""The two plain functions of the training loop: ``train_one_epoch`` and ``evaluate``.

Everything task-specific comes in through the task (``visionml.tasks``); everything about the run
(checkpoints, best epoch, early stopping) lives in ``visionml.train.core``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from ..errors import VisionMLError
from ..models.registry import CLIP_BY_VALUE


LINE_SECONDS = 30.0
"""Plain progress lines (``progress="lines"``) come at most this often."""


def progress_mode(requested: bool | None, stream=None) -> str:
    """How a run shows its progress: ``"bar"`` (tqdm) on a terminal; ``"lines"`` (plain log lines)
    when ``stream`` (stderr) is a log, where a bar would be one endless line of carriage returns;
    ``"off"`` when ``requested`` is False. ``requested`` True forces the bar."""
    if requested is not None:
        return "bar" if requested else "off"
    return "bar" if (stream or sys.stderr).isatty() else "lines"


def _mode(progress: bool | str) -> str:
    """The loop's ``progress`` argument as a mode; True/False mean bar/off."""
    if isinstance(progress, str):
        return progress
    return "bar" if progress else "off"


class _ProgressLines:
    """At most one line every LINE_SECONDS: ``LABEL  step S/STEPS  [loss L  ]R img/s  Ts``."""

    def __init__(self, enabled: bool, label: str, steps: int):
        self.enabled, self.label, self.steps = enabled, label, steps
        self.start = self.last = time.perf_counter()

    def update(self, step: int, images: int, loss: float | None = None) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < LINE_SECONDS:
            return
        self.last = now
        elapsed = now - self.start
        parts = [self.label, f"step {step}/{self.steps}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        rate = images / max(elapsed, 1e-9)
        parts += [f"{rate:.1f} img/s" if rate >= 1 else f"{rate:.2f} img/s", f"{elapsed:.0f}s"]
        print("  ".join(parts), file=sys.stderr, flush=True)


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
    """``auto`` is fp16 mixed precision on CUDA and fp32 on CPU (bf16 on CPU is opt-in: faster, less exact).
    bf16 on a CPU that only emulates it (no AVX512-BF16/AMX) runs fp32: emulated, the cpu preset's
    detector step took 1.8x as long as in fp32 on an AVX2-only EPYC, for no gain in accuracy."""
    from ..explain import methods

    if name == "auto":
        name = "fp16" if device.type == "cuda" else "fp32"
    if name == "bf16" and device.type == "cpu" and not methods.bf16_available(device):
        name = "fp32"
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


DEFAULT_GRAD_CLIP = CLIP_BY_VALUE
"""Azure's clipping for every model but its ViTs (``ModelSpec.grad_clip`` says which per model)."""


def clip_gradients(parameters, grad_clip: tuple[str, float] | None) -> None:
    """Clip as Azure does before each optimizer step: ``("value", v)`` each component to [-v, v],
    ``("norm", n)`` the total L2 norm to n; None leaves the gradients alone."""
    if grad_clip is None:
        return
    kind, limit = grad_clip
    grads = [p for p in parameters if p.grad is not None]
    if kind == "value":
        torch.nn.utils.clip_grad_value_(grads, float(limit))
    elif kind == "norm":
        torch.nn.utils.clip_grad_norm_(grads, float(limit))
    else:
        raise ValueError(f"gradient clipping {kind!r} is not 'value' or 'norm'")


def train_one_epoch(model, loader, optimizer, scheduler, task, criterion, *, device, precision: Precision,
                    epoch: int, accumulation: int = 1, progress: bool | str = False,
                    grad_clip: tuple[str, float] | None = DEFAULT_GRAD_CLIP, predict_hp=None) -> dict:
    """One pass over ``loader``; returns the mean of each loss, the learning rate, images and seconds.
    ``progress``: "bar", "lines" or "off" (see ``progress_mode``; True/False are bar/off).
    ``grad_clip``: how gradients are clipped before each step (``clip_gradients``), on by default as in Azure.
    ``predict_hp``: also predict each training batch in evaluation mode with these hyperparameters
    (``log_training_metrics``, as Azure does: on the augmented batches, after the backward pass); the
    result then holds ``"predictions"``: (ground-truth items, prediction items)."""
    from tqdm.auto import tqdm

    model.train()
    sums, images_seen, steps = defaultdict(float), 0, len(loader)
    start = time.perf_counter()
    mode = _mode(progress)
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=mode != "bar", dynamic_ncols=True)
    lines = _ProgressLines(mode == "lines", f"epoch {epoch}", steps)
    optimizer.zero_grad(set_to_none=True)
    gts, preds = [], []
    for step, (images, targets) in enumerate(bar):
        images, targets = task.to_device(images, targets, device)
        ends_step = (step + 1) % accumulation == 0 or step + 1 == steps
        with _no_sync(model, not ends_step):
            with precision.autocast():
                losses = task.losses(model, images, targets, criterion)
                loss = sum(losses.values())
            value = loss.item()
            _check_finite(value, losses, epoch, step)
            scaled = loss / accumulation
            (precision.scaler.scale(scaled) if precision.scaler else scaled).backward()
        if predict_hp is not None:
            batch_gt, batch_pred = _predict_training_batch(model, images, targets, task, predict_hp, precision)
            gts.extend(batch_gt)
            preds.extend(batch_pred)
        if ends_step:
            _optimizer_step(optimizer, precision.scaler, model, grad_clip)
            scheduler.step()
        sums["loss"] += value
        for name, part in losses.items():
            if name != "loss":
                sums[name] += part.item()
        images_seen += len(images)
        if mode == "bar" and step % 5 == 0:
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.4f}")
        lines.update(step + 1, images_seen, sums["loss"] / (step + 1))
    seconds = time.perf_counter() - start
    means = {name: total / max(1, steps) for name, total in sums.items()}
    result = {**means, "lr": optimizer.param_groups[0]["lr"], "images": images_seen, "seconds": seconds}
    if predict_hp is not None:
        result["predictions"] = (gts, preds)
    return result


def _optimizer_step(optimizer, scaler, model=None, grad_clip=None) -> None:
    if scaler is not None and grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
    if model is not None:
        clip_gradients(model.parameters(), grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _predict_training_batch(model, images, targets, task, hp, precision: Precision):
    """One training batch predicted in evaluation mode (boxes down to the AP floor), then back to training."""
    from ..models.detection import AP_SCORE_FLOOR
    from ..models.registry import get_spec

    inner = getattr(model, "module", model)  # not through DistributedDataParallel: no collective calls
    inner.eval()
    try:
        with torch.no_grad(), get_spec(hp["model_name"]).family.score_floor(inner, AP_SCORE_FLOOR):
            with precision.autocast():
                return task.eval_batch(inner, images, targets, hp)
    finally:
        model.train()


@torch.inference_mode()
def evaluate(model, loader, task, hp, *, device, precision: Precision, progress: bool | str = False,
             loss_criterion=None, with_loss: bool = False):
    """Predict every validation batch; returns (ground-truth items, prediction items), in loader order.
    ``with_loss`` (``log_validation_loss``): returns (ground truth, predictions, (loss sum weighted by
    images, images)) with the task's ``validation_loss`` under ``loss_criterion``."""
    from tqdm.auto import tqdm

    from ..models.detection import AP_SCORE_FLOOR
    from ..models.registry import get_spec

    model.eval()
    gts, preds, loss_sum = [], [], 0.0
    mode = _mode(progress)
    lines = _ProgressLines(mode == "lines", "validate", len(loader))
    # Detectors: boxes down to a low score for AP; the metrics apply box_score_threshold to P/R.
    with get_spec(hp["model_name"]).family.score_floor(model, AP_SCORE_FLOOR):
        for step, (images, targets) in enumerate(tqdm(loader, desc="validate", leave=False,
                                                      disable=mode != "bar", dynamic_ncols=True)):
            images, targets = task.to_device(images, targets, device)
            with precision.autocast():
                if with_loss:
                    batch_gt, batch_pred, loss = task.eval_batch_and_loss(model, images, targets, hp, loss_criterion)
                    loss_sum += loss * len(images)
                else:
                    batch_gt, batch_pred = task.eval_batch(model, images, targets, hp)
            gts.extend(batch_gt)
            preds.extend(batch_pred)
            lines.update(step + 1, len(gts))
    if with_loss:
        return gts, preds, (loss_sum, len(gts))
    return gts, preds
