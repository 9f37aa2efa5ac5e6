"""The study: one Optuna study per sweep, holding everything a worker needs (``SweepSettings``, the
``visionml`` user attribute), so ``visionml sweep-worker`` on another machine needs only the
storage URL and the study name. Creating it (a new run folder) or loading it (--resume, a joining
worker), and drawing each trial's hyperparameters from the search space.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import VisionMLError
from ..fileio import write_json
from .automode import automode_space
from .space import Distribution, grid, parse_search_space
from .spec import JobSpec
from .storage import _redact, open_storage, storage_url_for


@dataclass
class SweepSettings:
    """Everything a worker needs, stored as the study's ``visionml`` user attribute."""

    task: str
    primary_metric: str
    training_data: str
    validation_data: str | None
    validation_data_size: float | None
    training_parameters: dict
    sampling_algorithm: str
    early_termination: dict | None
    search_space: list  # raw Azure search space (list of mappings of strings / mappings)
    automode: bool
    max_trials: int
    max_concurrent_trials: int
    timeout_minutes: float | None
    trial_timeout_minutes: float | None
    run_dir: str
    deadline: float | None
    preset: str | None = None
    pretrained: bool | None = None
    device: str = "auto"
    seed: int = 0

    def subspaces(self) -> list[dict[str, Distribution]]:
        if self.automode:
            return automode_space(self.task, gpu=_has_gpu())
        return parse_search_space(self.search_space)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def study_name_for(run_dir: Path) -> str:
    return f"visionml-{run_dir.resolve().name}"


def create_study(spec: JobSpec, run_dir: Path, storage_url: str | None, *, resume: bool,
                 preset: str | None, pretrained: bool | None, device: str, seed: int):
    """Create the study for a new sweep (refusing to reuse a run folder) or load it for --resume."""
    run_dir = Path(run_dir)
    url = storage_url or storage_url_for(run_dir)
    name = study_name_for(run_dir)
    marker = run_dir / "sweep.json"
    if resume:
        if not marker.exists():
            raise VisionMLError(f"{run_dir}: no sweep to resume here (sweep.json is missing)")
        info = json.loads(marker.read_text())
        url, name = storage_url or info["storage"], info["study"]
        study = load_study(url, name)
        _requeue_interrupted(study)
        return study, url
    if run_dir.exists() and any(run_dir.iterdir()):
        raise VisionMLError(f"{run_dir} already exists and is not empty: pass --resume to continue that "
                            "sweep, or choose another --output")
    settings = SweepSettings(
        task=spec.task, primary_metric=spec.primary_metric, training_data=spec.training_data,
        validation_data=spec.validation_data, validation_data_size=spec.validation_data_size,
        training_parameters=spec.training_parameters, sampling_algorithm=spec.sampling_algorithm,
        early_termination=spec.early_termination, search_space=spec.raw_search_space or [],
        automode=spec.automode, max_trials=spec.max_trials, max_concurrent_trials=spec.max_concurrent_trials,
        timeout_minutes=spec.timeout_minutes, trial_timeout_minutes=spec.trial_timeout_minutes,
        run_dir=str(run_dir.resolve()),
        deadline=(time.time() + spec.timeout_minutes * 60) if spec.timeout_minutes else None,
        preset=preset, pretrained=pretrained, device=device, seed=seed)
    if settings.sampling_algorithm == "grid":
        n = len(grid(settings.subspaces()))
        if settings.max_trials > n:
            settings.max_trials = n  # every grid point once; more trials would repeat them
    _check_hyperparameters(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize",
                                load_if_exists=False)
    study.set_user_attr("visionml", asdict(settings))
    if settings.sampling_algorithm == "grid":
        # Every grid point queued once, in order. (Optuna's GridSampler calls study.stop() when
        # the grid runs out, which only works inside study.optimize, not with ask/tell.)
        for index in range(settings.max_trials):
            study.enqueue_trial({"grid_index": index})
    write_json(marker, {"storage": url if "://" not in url else _redact(url), "study": name})
    return study, url


def load_study(url: str, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise VisionMLError(f"no study named {name!r} in {_redact(url)}") from None


def settings_of(study: optuna.Study) -> SweepSettings:
    attrs = study.user_attrs.get("visionml")
    if not attrs:
        raise VisionMLError(f"study {study.study_name!r} was not made by visionml run")
    return SweepSettings(**attrs)


def _check_hyperparameters(settings: SweepSettings) -> None:
    """Fail before any trial starts when a name or value in the job is not a valid hyperparameter."""
    from ..config import check_supported, resolve_hyperparameters

    examples = []
    for sub in settings.subspaces():
        examples.append({name: _example(dist) for name, dist in sub.items()})
    for example in examples or [{}]:
        try:
            check_supported(resolve_hyperparameters(settings.task, {**settings.training_parameters, **example},
                                                    settings.preset))
        except VisionMLError as exc:  # in a job file this is bad input (exit 1), not bad usage
            raise VisionMLError(f"training_parameters/search_space: {exc}") from None


def _example(dist: Distribution):
    if dist.kind == "choice":
        return dist.values[0]
    if dist.kind == "randint":
        return 0
    if dist.kind in ("loguniform", "qloguniform"):
        return math.exp(dist.args[0])
    return dist.args[0]


def _requeue_interrupted(study: optuna.Study) -> None:
    """Trials left RUNNING by a stopped sweep: mark them failed (interrupted) and queue their
    parameters again, so --resume redoes only what did not finish."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        requeue(study, t)


def requeue(study: optuna.Study, trial, error: str | None = None) -> int | None:
    """Fail the RUNNING ``trial`` as interrupted (not counted against ``max_trials``; ``error`` says
    why) and queue its parameters again; None when another worker finished it first (only one of
    two workers racing to take a trial over queues it)."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        if error:
            storage.set_trial_user_attr(trial._trial_id, "error", error)
        if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL) is False:
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
    return trial.number


# ---------------------------------------------------------------- sampling

def make_sampler(settings: SweepSettings, seed: int | None):
    if settings.sampling_algorithm == "bayesian":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, settings.max_trials // 3)),
                                          constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def suggest(trial: optuna.Trial, settings: SweepSettings) -> dict:
    """Draw one trial's hyperparameters (Azure names) from the search space."""
    subspaces = settings.subspaces()
    if not subspaces:
        return {}
    if settings.sampling_algorithm == "grid":
        points = grid(subspaces)
        return dict(points[trial.suggest_categorical("grid_index", list(range(len(points))))])
    i = trial.suggest_categorical("subspace", list(range(len(subspaces)))) if len(subspaces) > 1 else 0
    prefix = f"{i}:" if len(subspaces) > 1 else ""
    return {name: dist.suggest(trial, prefix + name) for name, dist in subspaces[i].items()}
