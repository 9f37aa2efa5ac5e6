"""Unit tests for the pure pieces: schedules, class weights, the non-finite stop, early stopping."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from visionml.config import resolve_hyperparameters
from visionml.tasks import MULTICLASS, MULTILABEL, get_task
from visionml.train.checkpoints import State
from visionml.train.core import _early_stop_reason, _update_best
from visionml.train.loop import NonFiniteLossError, resolve_precision, train_one_epoch
from visionml.train.optim import build_optimizer, build_scheduler, step_decay, warmup_cosine


def test_warmup_cosine_follows_azure():
    factor = warmup_cosine(warmup_steps=10, total_steps=110, cycles=0.45)
    assert factor(0) == 0.0 and factor(5) == 0.5 and factor(10) == 1.0
    assert factor(110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    assert all(factor(s) >= factor(s + 1) for s in range(10, 110))


def test_step_schedule_decays_every_step_size_epochs():
    factor = step_decay(step_size_steps=20, gamma=0.5)
    assert [factor(s) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    params = [nn.Parameter(torch.zeros(1))]
    hp = resolve_hyperparameters(MULTICLASS, {"learning_rate": 0.1, "optimizer": "sgd", "number_of_epochs": 4,
                                              "learning_rate_scheduler": "step", "step_lr_step_size": 2,
                                              "step_lr_gamma": 0.1})
    optimizer = build_optimizer(params, hp)
    scheduler = build_scheduler(optimizer, hp, steps_per_epoch=3)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:6] == [0.1] * 6 and lrs[6:] == pytest.approx([0.01] * 6)


def _records(labels):
    return [SimpleNamespace(label=label) for label in labels]


def test_weighted_loss_is_sqrt_for_1_and_plain_for_2():
    records = _records(["a"] * 8 + ["b"] * 2)
    multiclass, multilabel = get_task(MULTICLASS), get_task(MULTILABEL)
    assert multiclass.criterion({"weighted_loss": 0}, ["a", "b"], records).weight is None
    plain = multiclass.criterion({"weighted_loss": 2}, ["a", "b"], records).weight
    assert plain.tolist() == pytest.approx([10 / 16, 10 / 4])
    assert multiclass.criterion({"weighted_loss": 1}, ["a", "b"], records).weight.tolist() == \
        pytest.approx(plain.sqrt().tolist())
    multi = multilabel.criterion({"weighted_loss": 2}, ["a", "b"], _records([["a"], ["a", "b"], ["a"], ["a"]]))
    assert multi.pos_weight.tolist() == pytest.approx([1 / 4, 3 / 1])  # negatives / positives


def test_a_nan_loss_stops_with_a_message_naming_epoch_and_fix():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    images = torch.full((2, 3, 4, 4), float("nan"))
    loader = [(images, torch.tensor([0, 1]))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(NonFiniteLossError) as caught:
        train_one_epoch(model, loader, optimizer, scheduler, get_task(MULTICLASS),
                        nn.CrossEntropyLoss(), device=torch.device("cpu"),
                        precision=resolve_precision("fp32", torch.device("cpu")), epoch=3)
    message = str(caught.value)
    assert "nan" in message and "epoch 3, step 1" in message and "learning_rate" in message


def test_early_stopping_waits_for_delay_then_patience():
    settings = SimpleNamespace(task=get_task(MULTICLASS), hp={})
    hp = {"early_stopping": True, "early_stopping_patience": 2, "early_stopping_delay": 2}
    settings.hp = hp
    state, stopped_at = State(), None
    for epoch, score in enumerate([0.5, 0.4, 0.4, 0.6, 0.6, 0.6, 0.9], start=1):
        _update_best(state, epoch, {"accuracy": score}, settings)
        if _early_stop_reason(state, epoch, hp):
            stopped_at = epoch
            break
    assert state.best_epoch == 6 and stopped_at == 6  # ties make the later epoch the best (Azure)


def test_one_epoch_with_a_progress_bar_and_gradient_accumulation(capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    loader = [(torch.rand(2, 3, 4, 4), torch.tensor([0, 1])) for _ in range(3)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    before = model[1].weight.detach().clone()
    stats = train_one_epoch(model, loader, optimizer, scheduler, get_task(MULTICLASS),
                            nn.CrossEntropyLoss(), device=torch.device("cpu"),
                            precision=resolve_precision("bf16", torch.device("cpu")), epoch=1,
                            accumulation=2, progress=True)
    assert stats["images"] == 6 and stats["loss"] > 0
    assert scheduler.last_epoch == 2  # 3 batches in groups of 2: two optimizer steps
    assert not torch.equal(before, model[1].weight)
    assert "epoch 1" in capsys.readouterr().err  # the tqdm bar
