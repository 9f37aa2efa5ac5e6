"""What a training run is asked to do (``TrainOptions``) and what it leaves behind (``RunResult``).

Both are plain dataclasses: the CLI fills ``TrainOptions`` from its flags, sweeps fill it in
Python, and ``RunResult`` serialises to a plain dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainOptions:
    """One training run. ``None`` means "not given": defaults come from the hyperparameter table,
    and on ``resume`` from the run folder's ``config.json``."""

    task: str | None = None
    training_data: str | Path | None = None
    validation_data: str | Path | None = None
    model_name: str | None = None
    overrides: dict = field(default_factory=dict)
    """Hyperparameters by Azure name (``--set key=value``); strings are parsed by type."""
    output: str | Path | None = None
    """The run folder. ``None``: the next free ``runs/train``, ``runs/train2``, ..."""
    device: str = "auto"
    pretrained: bool | None = None
    preset: str | None = None
    checkpoint: str | Path | None = None
    """A model folder whose weights start this run (Azure's incremental training)."""
    resume: bool = False
    skip_invalid: bool | None = None
    seed: int | None = None
    precision: str | None = None
    datastores: list[str] = field(default_factory=list)
    """``NAME=DIR`` mappings for ``azureml://`` image URLs."""
    workers: int | None = None
    """DataLoader worker processes; ``None`` picks from the CPU count."""
    progress: bool | None = None
    """Progress bar; ``None``: only when stderr is a terminal."""
    on_evaluation: Callable[[int, dict], bool] | None = None
    """Called after each evaluation with (1-based epoch, metrics); returning True stops the run
    (sweeps prune with it). It runs before the epoch's checkpoint is written, so the stop is
    recorded there; an exception it raises interrupts the run like Ctrl-C (``--resume`` goes on)."""


@dataclass
class RunResult:
    """The outcome of ``train``: where things are and the best epoch's metrics."""

    run_dir: Path
    model_dir: Path
    task: str
    model_name: str
    primary_metric: str
    best_epoch: int | None
    best_score: float | None
    metrics: dict
    epochs_run: int
    stopped_early: bool
    stop_reason: str
    seconds: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["run_dir"], out["model_dir"] = str(self.run_dir), str(self.model_dir)
        return out
