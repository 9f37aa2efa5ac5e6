"""--resume continues an interrupted run to the same weights; --checkpoint starts from a model.

On CPU the same seed gives bit-identical runs; CUDA kernels (and Adam, which turns their tiny
differences into full-size steps) do not, so the comparison runs on CPU wherever it runs."""

from __future__ import annotations

import torch

from visionml.cli import main
from visionml.train import TrainOptions, train

from tests.support import fast_settings


def _options(data, output, overrides=None, **extra) -> TrainOptions:
    settings = fast_settings("multiclass")
    settings.update({"number_of_epochs": 2, "warmup_cosine_lr_warmup_epochs": 0, "early_stopping": False,
                     **(overrides or {})})
    return TrainOptions(task="multiclass", training_data=data["train"], validation_data=data["val"],
                        output=output, pretrained=False, preset="cpu", seed=3, precision="fp32", device="cpu",
                        overrides=settings, **extra)


def _without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in history]


def _interrupt_at_epoch_2(epoch, metrics):
    if epoch == 2:
        raise KeyboardInterrupt  # as Ctrl-C during epoch 2: its checkpoint is never written


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(sample_data, tmp_path, capsys):
    data = sample_data("multiclass")
    whole = train(_options(data, tmp_path / "whole", overrides={"checkpoint_frequency": 2}))
    assert whole.epochs_run == 2
    # checkpoint_frequency 2 keeps epoch 2's checkpoint beside last.pt, and not epoch 1's.
    assert sorted(p.name for p in (tmp_path / "whole/checkpoints").iterdir()) == ["epoch_002.pt", "last.pt"]
    kept = torch.load(tmp_path / "whole/checkpoints/epoch_002.pt", map_location="cpu", weights_only=True)
    assert kept["epoch"] == 2

    interrupted = tmp_path / "interrupted"
    try:
        train(_options(data, interrupted, overrides={"checkpoint_frequency": 2}, on_evaluation=_interrupt_at_epoch_2))
    except KeyboardInterrupt:
        pass
    assert torch.load(interrupted / "checkpoints/last.pt", map_location="cpu", weights_only=True)["epoch"] == 1

    assert main(["train", "--resume", "--output", str(interrupted)]) == 0
    a = torch.load(tmp_path / "whole/checkpoints/last.pt", map_location="cpu", weights_only=True)
    b = torch.load(interrupted / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert b["epoch"] == 2 and b["finished"]
    assert a["model"].keys() == b["model"].keys()
    for name, value in a["model"].items():  # bit for bit: BatchNorm statistics and counters too
        assert torch.equal(value, b["model"][name]), name
    assert _without_timings(a["history"]) == _without_timings(b["history"])  # every loss and metric, exactly

    # A finished run resumes to nothing; a run that disagrees with its config is refused.
    assert main(["train", "--resume", "--output", str(interrupted)]) == 0
    assert "already finished" in capsys.readouterr().err
    assert main(["train", "--resume", "--output", str(interrupted), "--seed", "4"]) == 2
    assert "seed" in capsys.readouterr().err


def test_checkpoint_starts_from_an_earlier_model(sample_data, tmp_path, capsys):
    data = sample_data("multiclass")
    first = train(_options(data, tmp_path / "first", overrides={"number_of_epochs": 1}))
    second = train(_options(data, tmp_path / "second", checkpoint=first.model_dir, overrides={"number_of_epochs": 1}))
    assert second.best_epoch is not None
    assert f"started from {first.model_dir}" in capsys.readouterr().err
