"""Training as Azure's trainers do it (issue 15 item 2): gradients always clipped, best epoch and early
stopping per task, ``validation_metric_type: none``, the optional history columns, ViTs at any crop,
and v1 spellings through ``--set`` saved under their v2 names."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from visionml.cli import main
from visionml.config import resolve_hyperparameters
from visionml.models.registry import CLIP_BY_NORM, CLIP_BY_VALUE, build_model, get_spec
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, get_task
from visionml.train.checkpoints import State
from visionml.train.core import _early_stop_reason, _update_best
from visionml.train.loop import resolve_precision, train_one_epoch

from .conftest import train_args


def _one_step(grad_clip, scale=1e6):
    """One SGD step (lr 1, no momentum) on a loss whose gradient is ~``scale``; returns the weight change."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 2))
    loader = [(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]))]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    huge = lambda logits, targets: nn.functional.cross_entropy(logits, targets) * scale  # noqa: E731
    train_one_epoch(model, loader, optimizer, scheduler, get_task(MULTICLASS), huge, device=torch.device("cpu"),
                    precision=resolve_precision("fp32", torch.device("cpu")), epoch=1, grad_clip=grad_clip)
    return torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])


def test_gradients_are_clipped_by_value_by_default():
    change = _one_step(CLIP_BY_VALUE)
    assert change.abs().max() == pytest.approx(5.0)  # each component clipped to [-5, 5], times lr 1
    assert torch.equal(change, _one_step(grad_clip=("value", 5.0)))
    from visionml.train.loop import DEFAULT_GRAD_CLIP

    assert DEFAULT_GRAD_CLIP == CLIP_BY_VALUE  # on unless a caller says otherwise
    assert _one_step(None).abs().max() > 1e4  # what the unclipped step would have done


def test_vit_gradients_are_clipped_by_norm():
    change = _one_step(CLIP_BY_NORM)
    assert float(change.norm()) == pytest.approx(1.0, rel=1e-4)
    assert get_spec("vitb16r224").grad_clip == get_spec("vits16r224").grad_clip == ("norm", 1.0)
    assert get_spec("resnet50").grad_clip == get_spec("fasterrcnn_resnet50_fpn").grad_clip == ("value", 5.0)


def _run_rule(task, scores, patience=2, delay=0):
    hp = {"early_stopping": True, "early_stopping_patience": patience, "early_stopping_delay": delay}
    settings = SimpleNamespace(task=get_task(task), hp=hp)
    state, stopped_at = State(), None
    for epoch, score in enumerate(scores, start=1):
        _update_best(state, epoch, {get_task(task).primary_metric: score}, settings)
        if _early_stop_reason(state, epoch, hp, settings.task):
            stopped_at = epoch
            break
    return state.best_epoch, stopped_at


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_classification_stops_when_the_count_reaches_patience(task):
    assert _run_rule(task, [0.5, 0.4, 0.4, 0.3, 0.2]) == (1, 3)


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_detection_stops_when_the_count_exceeds_patience(task):
    assert _run_rule(task, [0.5, 0.4, 0.4, 0.3, 0.2]) == (1, 4)


@pytest.mark.parametrize("task", [MULTICLASS, DETECTION])
def test_ties_make_the_later_epoch_best_without_resetting_the_count(task):
    best, stopped = _run_rule(task, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert best == stopped  # every tie moved the best epoch along...
    assert stopped == (3 if task == MULTICLASS else 4)  # ...and still counted as no improvement


def test_the_count_starts_after_the_delay():
    assert _run_rule(MULTICLASS, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4], patience=2, delay=3) == (1, 5)


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_vit_builds_for_any_crop_and_takes_other_crops_later():
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "vitb16r224", "validation_crop_size": 96,
                                              "validation_resize_size": 96})
    with torch.device("meta"):  # shapes only: no memory, no time spent initialising 86M weights
        model = build_model("vitb16r224", MULTICLASS, 5, pretrained=False, hp=hp).eval()
        assert model.encoder.pos_embedding.shape == (1, 37, 768)  # 6x6 patches + the class token
        assert model(torch.rand(1, 3, 96, 96)).shape == (1, 5)
        assert model(torch.rand(2, 3, 160, 160)).shape == (2, 5)  # a deployment's other crop


def test_pretrained_vit_position_embeddings_are_resized_to_the_crop(tmp_path, monkeypatch):
    """timm's ViT-S/16 weights (published at 224) load into a 64-pixel model: the 14x14 position grid
    is resampled to 4x4, as Azure does for a crop other than 224."""
    import timm
    from safetensors.torch import save_file

    from visionml.models.weights import weights_location

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _, path = weights_location("timm:vit_small_patch16_224.augreg_in21k_ft_in1k")
    published = timm.create_model("vit_small_patch16_224", pretrained=False).state_dict()
    path.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in published.items()}, str(path))
    hp = resolve_hyperparameters(MULTICLASS, {"model_name": "vits16r224", "validation_crop_size": 64,
                                              "validation_resize_size": 72})
    model = build_model("vits16r224", MULTICLASS, 3, pretrained=True, hp=hp).eval()
    assert model.pos_embed.shape == (1, 17, 384)
    assert torch.equal(model.pos_embed[0, 0], published["pos_embed"][0, 0])  # the class token's entry is kept
    assert torch.equal(model.blocks[3].mlp.fc1.weight, published["blocks.3.mlp.fc1.weight"])
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == model(torch.rand(1, 3, 96, 96)).shape == (1, 3)


@pytest.mark.slow
def test_training_and_validation_logs_as_azure_names_them(tmp_path, sample_data):
    data = sample_data("multiclass")
    run = tmp_path / "run"
    assert main(train_args("multiclass", data, run, "--set", "log_training_metrics=Enable")) == 0
    (row,) = _history(run)
    assert 0.0 <= float(row["accuracy_train"]) <= 1.0  # the primary metric on the training batches
    assert math.isfinite(float(row["validation_loss"])) and float(row["validation_loss"]) > 0
    off = tmp_path / "off"
    assert main(train_args("multiclass", data, off, "--set", "log_validation_loss=false")) == 0
    (row,) = _history(off)
    assert "accuracy_train" not in row and "validation_loss" not in row


def test_detector_validation_loss_learns_nothing_from_the_validation_images():
    """A detector's losses need training mode; its BatchNorm statistics must not move on validation
    images, and it is back in evaluation mode afterwards."""
    hp = {"min_size": 64, "max_size": 96}
    model = build_model("fasterrcnn_mobilenet_v3_large_fpn", DETECTION, 2, pretrained=False, hp=hp).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = [torch.rand(3, 80, 96), torch.rand(3, 70, 90)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    with torch.inference_mode():
        loss = get_task(DETECTION).validation_loss(model, images, targets, None)
    assert math.isfinite(loss) and loss > 0
    assert not model.training
    after = model.state_dict()
    assert any(k.endswith("running_mean") for k in after)
    assert all(torch.equal(before[k], after[k]) for k in after)


@pytest.mark.slow
def test_detector_logs_validation_loss_and_training_map(tmp_path, sample_data):
    data = sample_data("object-detection")
    run = tmp_path / "run"
    assert main(train_args("object-detection", data, run, "--set", "log_training_metrics=true")) == 0
    (row,) = _history(run)
    assert float(row["validation_loss"]) > 0  # on by default for detection, as in Azure
    assert 0.0 <= float(row["mean_average_precision_train"]) <= 1.0


@pytest.mark.slow
def test_validation_metric_type_none_keeps_the_last_epoch(tmp_path, sample_data, capsys):
    data = sample_data("object-detection")
    run = tmp_path / "run"
    args = train_args("object-detection", data, run, "--set", "validation_metric_type=none")
    args[args.index("number_of_epochs=1")] = "number_of_epochs=2"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 2 (no validation metrics" in out
    rows = _history(run)
    assert len(rows) == 2 and not any("mean_average_precision" in key for key in rows[0])
    assert "validation_loss" not in rows[0]  # Azure validates nothing at all then
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and "mean_average_precision" not in metrics
    assert "validation_metric_type is 'none'" in metrics["notes"][0]
    manifest_epoch = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert manifest_epoch["best_epoch"] == 2 and (run / "model" / "weights.safetensors").is_file()


@pytest.mark.slow
def test_set_with_v1_spellings_trains_and_saves_canonical_names(tmp_path, sample_data, capsys):
    data = sample_data("multiclass")
    # valid_crop_size=64 repeats the tiny settings' validation_crop_size=64: one value, no conflict.
    sets = [x for s in ["valid_crop_size=64", "grad_accumulation_step=2", "lr_scheduler=step", "seed=5", "amsgrad=1"]
            for x in ("--set", s)]
    run = tmp_path / "run"
    assert main(train_args("multiclass", data, run, *sets)) == 0
    err = capsys.readouterr().err
    assert err.count("note: --preset cpu set ") == 1 and "valid_crop_size -> validation_crop_size" in err
    saved = json.loads((run / "config.json").read_text())
    config = saved["hyperparameters"]
    assert config["validation_crop_size"] == 64 and config["gradient_accumulation_step"] == 2
    assert config["ams_gradient"] is True
    assert config["learning_rate_scheduler"] == "step" and config["random_seed"] == 5 == saved["run"]["seed"]
    assert not {"valid_crop_size", "grad_accumulation_step", "lr_scheduler", "seed", "amsgrad"} & set(config)
    manifest = json.loads((run / "model" / "visionml.json").read_text())["hyperparameters"]
    assert manifest["gradient_accumulation_step"] == 2 and "grad_accumulation_step" not in manifest
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_001.pt", "last.pt"]


@pytest.mark.slow
def test_a_vit_trains_at_a_small_crop_and_serves_another(tmp_path, sample_data):
    from visionml.modelio import load_model_folder

    data = sample_data("multiclass")
    run = tmp_path / "run"
    assert main(train_args("multiclass", data, run, "--model-name", "vits16r224", "--set", "validation_crop_size=32",
                           "--set", "validation_resize_size=40")) == 0
    config = json.loads((run / "config.json").read_text())["hyperparameters"]
    assert config["training_crop_size"] == config["validation_crop_size"] == 32
    model, _ = load_model_folder(run / "model")
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 48)).shape == (1, 4)  # the sample data's 4 shapes
