"""Optimizers and learning-rate schedules with Azure AutoML's semantics.

Schedules step once per optimizer step (Azure steps its schedulers per iteration), so
``warmup_cosine_lr_warmup_epochs`` and ``step_lr_step_size`` are converted from epochs to steps.
"""

from __future__ import annotations

import math

import torch

from ..errors import UsageError


def build_optimizer(params, hp: dict) -> torch.optim.Optimizer:
    """``optimizer`` sgd (``momentum``, ``nesterov``) or adam/adamw (``beta1``, ``beta2``,
    ``ams_gradient``), with ``learning_rate`` and ``weight_decay``."""
    name = hp["optimizer"]
    lr, wd = float(hp["learning_rate"]), float(hp["weight_decay"])
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        momentum = float(hp["momentum"])
        nesterov = bool(hp["nesterov"]) and momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    betas = (float(hp["beta1"]), float(hp["beta2"]))
    amsgrad = bool(hp["ams_gradient"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd, amsgrad=amsgrad)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd, amsgrad=amsgrad)
    raise UsageError(f"optimizer {name!r} is not one of sgd, adam, adamw")


def warmup_cosine(warmup_steps: int, total_steps: int, cycles: float):
    """Linear warm-up from 0, then cosine decay over ``cycles`` periods (Azure's WarmupCosineSchedule)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))

    return factor


def step_decay(step_size_steps: int, gamma: float):
    """Multiply by ``gamma`` every ``step_size_steps`` optimizer steps (StepLR by epochs)."""
    return lambda step: gamma ** (step // max(1, step_size_steps))


def build_scheduler(optimizer, hp: dict, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The ``learning_rate_scheduler`` of ``hp``, stepping per optimizer step."""
    name = hp["learning_rate_scheduler"]
    epochs = int(hp["number_of_epochs"])
    if name == "warmup_cosine":
        warmup = round(float(hp["warmup_cosine_lr_warmup_epochs"]) * steps_per_epoch)
        factor = warmup_cosine(warmup, epochs * steps_per_epoch, float(hp["warmup_cosine_lr_cycles"]))
    elif name == "step":
        factor = step_decay(int(hp["step_lr_step_size"]) * steps_per_epoch, float(hp["step_lr_gamma"]))
    elif name in (None, "none"):
        factor = lambda step: 1.0  # noqa: E731
    else:
        raise UsageError(f"learning_rate_scheduler {name!r} is not one of warmup_cosine, step")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
