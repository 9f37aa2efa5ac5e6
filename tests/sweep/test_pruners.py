"""Azure's early-termination policies as Optuna pruners, on hand-made trial curves."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from visionml.errors import VisionMLError
from visionml.sweep.pruners import (BanditPruner, MedianStoppingPruner, TruncationSelectionPruner,
                                    pruner_from_policy)


def study_with(curves):
    """A maximising study holding finished trials with the given per-epoch curves."""
    study = optuna.create_study(direction="maximize")
    for curve in curves:
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=max(curve), params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            intermediate_values={i + 1: v for i, v in enumerate(curve)}))
    return study


def running(study, curve):
    trial = study.ask()
    for i, v in enumerate(curve):
        trial.report(v, i + 1)
    return study._storage.get_trial(trial._trial_id)


def test_bandit_slack_factor():
    # Best at epoch 2 is 0.8; with slack 0.2 the bound is 0.8 / 1.2 = 0.667.
    study = study_with([[0.5, 0.8, 0.85]])
    pruner = BanditPruner(slack_factor=0.2, evaluation_interval=1, delay_evaluation=2)
    assert pruner.prune(study, running(study, [0.3, 0.66])) is True
    assert pruner.prune(study, running(study, [0.3, 0.67])) is False
    # Before delay_evaluation the policy does not act, however bad the trial.
    assert pruner.prune(study, running(study, [0.0])) is False


def test_bandit_slack_amount_and_interval():
    study = study_with([[0.5, 0.8, 0.9, 0.9]])
    pruner = BanditPruner(slack_amount=0.1, evaluation_interval=2, delay_evaluation=0)
    assert pruner.prune(study, running(study, [0.1, 0.75])) is False  # 0.8 - 0.1 = 0.7 < 0.75
    assert pruner.prune(study, running(study, [0.1, 0.69])) is True
    assert pruner.prune(study, running(study, [0.1, 0.69, 0.1])) is False  # epoch 3: not an evaluation
    with pytest.raises(VisionMLError):
        BanditPruner(slack_factor=0.1, slack_amount=0.1)


def test_truncation_selection():
    pruner = TruncationSelectionPruner(truncation_percentage=40)
    # 5 values at epoch 1, cut = 2: the two lowest are stopped.
    for value, pruned in [(0.5, True), (0.65, True), (0.75, False)]:
        study = study_with([[0.9], [0.8], [0.7], [0.6]])
        assert pruner.prune(study, running(study, [value])) is pruned
    # Running trials count too: with 0.5 still running, 0.65 is third lowest of six (cut 2).
    study = study_with([[0.9], [0.8], [0.7], [0.6]])
    running(study, [0.5])
    assert pruner.prune(study, running(study, [0.65])) is False


def test_median_stopping():
    # Running averages up to epoch 2: 0.6, 0.5, 0.4 -> median 0.5.
    study = study_with([[0.5, 0.7], [0.4, 0.6], [0.3, 0.5]])
    pruner = MedianStoppingPruner(evaluation_interval=1, delay_evaluation=1)
    assert pruner.prune(study, running(study, [0.45, 0.49])) is True
    assert pruner.prune(study, running(study, [0.2, 0.51])) is False


def test_policy_mapping():
    assert isinstance(pruner_from_policy(None), optuna.pruners.NopPruner)
    assert isinstance(pruner_from_policy({"type": "bandit", "slack_factor": 0.2}), BanditPruner)
    assert isinstance(pruner_from_policy({"type": "median_stopping"}), MedianStoppingPruner)
    assert isinstance(pruner_from_policy({"type": "truncation_selection", "truncation_percentage": 10}),
                      TruncationSelectionPruner)
    with pytest.raises(VisionMLError, match="bandit"):
        pruner_from_policy({"type": "bandt"})
