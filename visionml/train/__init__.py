"""Training: ``train(TrainOptions) -> RunResult`` writes a run folder (DESIGN.md).

>>> from visionml.train import TrainOptions, train
>>> result = train(TrainOptions(task="multiclass", training_data="train.jsonl",
...                             output="runs/fridge", preset="cpu"))   # doctest: +SKIP
>>> result.metrics["accuracy"], result.model_dir                         # doctest: +SKIP
"""

from .options import RunResult, TrainOptions


def train(options: TrainOptions) -> RunResult:
    """Train one model; see ``TrainOptions`` for every setting and ``RunResult`` for the outcome."""
    from .core import train as _train  # torch is imported only when training actually starts

    return _train(options)


run = train

__all__ = ["RunResult", "TrainOptions", "run", "train"]
