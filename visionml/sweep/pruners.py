"""Azure's early-termination policies as Optuna pruners.

All of them look at the primary metric reported once per evaluation (``step`` = epoch) and,
like Azure, act only at steps ``s >= delay_evaluation`` with ``s % evaluation_interval == 0``.
Every visionml primary metric is maximised.
"""

from __future__ import annotations

import statistics

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from ..errors import VisionMLError


def _due(step: int, interval: int, delay: int) -> bool:
    return step >= max(delay, 1) and step % max(interval, 1) == 0


def _others(study: optuna.Study, trial: FrozenTrial, include_finished: bool = True):
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) if include_finished else (
        TrialState.RUNNING,)
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.number != trial.number]


class BanditPruner(BasePruner):
    """Stop a trial whose metric at an evaluation is not within the slack of the best trial's
    metric at the same evaluation: ``value < best / (1 + slack_factor)`` or
    ``value < best - slack_amount``."""

    def __init__(self, slack_factor: float | None = None, slack_amount: float | None = None,
                 evaluation_interval: int = 1, delay_evaluation: int = 0):
        if (slack_factor is None) == (slack_amount is None):
            raise VisionMLError("bandit early termination needs exactly one of slack_factor or slack_amount")
        self.slack_factor, self.slack_amount = slack_factor, slack_amount
        self.interval, self.delay = evaluation_interval, delay_evaluation

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or not _due(step, self.interval, self.delay):
            return False
        value = trial.intermediate_values[step]
        peers = [t.intermediate_values[step] for t in _others(study, trial) if step in t.intermediate_values]
        if not peers:
            return False
        best = max(peers + [value])
        bound = best / (1 + self.slack_factor) if self.slack_factor is not None else best - self.slack_amount
        return value < bound


class TruncationSelectionPruner(BasePruner):
    """At each evaluation, stop the trial if it is among the lowest ``truncation_percentage`` percent
    of all trials' metrics at that evaluation."""

    def __init__(self, truncation_percentage: int, evaluation_interval: int = 1,
                 delay_evaluation: int = 0, exclude_finished_jobs: bool = False):
        if not 1 <= truncation_percentage <= 99:
            raise VisionMLError("truncation_percentage must be between 1 and 99")
        self.pct, self.interval, self.delay = truncation_percentage, evaluation_interval, delay_evaluation
        self.exclude_finished = exclude_finished_jobs

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or not _due(step, self.interval, self.delay):
            return False
        value = trial.intermediate_values[step]
        peers = [t.intermediate_values[step] for t in _others(study, trial, not self.exclude_finished)
                 if step in t.intermediate_values]
        values = sorted(peers + [value])
        cut = int(len(values) * self.pct / 100)
        # Strictly below the value at the cut: ties with the first survivor are kept.
        return cut > 0 and value < values[cut]


class MedianStoppingPruner(BasePruner):
    """Azure's median stopping: stop a trial whose best metric so far is worse than the median of
    the running averages (up to the same evaluation) of all other trials."""

    def __init__(self, evaluation_interval: int = 1, delay_evaluation: int = 0):
        self.interval, self.delay = evaluation_interval, delay_evaluation

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or not _due(step, self.interval, self.delay):
            return False
        best = max(v for s, v in trial.intermediate_values.items() if s <= step)
        averages = []
        for t in _others(study, trial):
            upto = [v for s, v in t.intermediate_values.items() if s <= step]
            if upto:
                averages.append(sum(upto) / len(upto))
        return bool(averages) and best < statistics.median(averages)


def pruner_from_policy(policy: dict | None) -> BasePruner:
    """Azure's ``sweep.early_termination`` mapping -> a pruner (NopPruner when absent)."""
    if not policy:
        return optuna.pruners.NopPruner()
    kind = str(policy.get("type", "")).lower()
    common = {"evaluation_interval": int(policy.get("evaluation_interval", 1) or 1),
              "delay_evaluation": int(policy.get("delay_evaluation", 0) or 0)}
    if kind == "bandit":
        return BanditPruner(policy.get("slack_factor"), policy.get("slack_amount"), **common)
    if kind == "median_stopping":
        return MedianStoppingPruner(**common)
    if kind == "truncation_selection":
        if "truncation_percentage" not in policy:
            raise VisionMLError("truncation_selection needs truncation_percentage")
        return TruncationSelectionPruner(int(policy["truncation_percentage"]),
                                         exclude_finished_jobs=bool(policy.get("exclude_finished_jobs", False)),
                                         **common)
    raise VisionMLError(f"sweep.early_termination.type {policy.get('type')!r} is not one of "
                        "bandit, median_stopping, truncation_selection")
