"""What a run is fixed to: the task, model, typed hyperparameters and run options, from the
``TrainOptions`` of a new run or from the run folder's ``config.json`` on ``--resume`` (which
refuses explicit values that differ from the saved ones)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Hyperparameters
from ..errors import UsageError
from ..tasks import Task, get_task
from . import rundir
from .options import PRECISIONS, TrainOptions

# Options a resumed run takes from config.json; an explicit different value is refused.
RESUMED_FIELDS = ("task", "training_data", "validation_data", "pretrained", "preset", "checkpoint",
                  "seed", "precision")


@dataclass
class Settings:
    """Everything the run is fixed to, as saved in ``config.json``."""

    task: Task
    hp: Hyperparameters
    run: dict
    labels: list[str] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.hp["model_name"]

    def to_json(self) -> dict:
        return {"task": self.task.name, "model_name": self.model_name, "labels": self.labels,
                "hyperparameters": self.hp.to_json(), "run": self.run}


def output_dir(options: TrainOptions) -> Path:
    if options.output is not None:
        return Path(options.output).resolve()
    if options.resume:
        raise UsageError("--resume needs --output RUN_DIR: the run folder to continue")
    return rundir.next_free_dir().resolve()


def settings_for(options: TrainOptions, run_dir: Path) -> Settings:
    """The settings of a new run, or of the run in ``run_dir`` on ``--resume``."""
    if options.resume and (run_dir / rundir.CONFIG).is_file():
        return _resumed(options, run_dir)
    if options.task is None or options.training_data is None:
        raise UsageError("a run needs --task and --training-data")
    task = get_task(options.task)
    overrides = _with_skip_invalid(task, options)
    if options.model_name:
        overrides["model_name"] = options.model_name
    if options.precision:
        if options.precision not in PRECISIONS:
            raise UsageError(f"--precision {options.precision!r} is not one of {', '.join(PRECISIONS)}")
        overrides["precision"] = options.precision
    hp = resolve(task, overrides, options.preset)
    # The random_seed hyperparameter (Azure's seed) wins over --seed; either is saved as both.
    seed = hp["random_seed"] if hp["random_seed"] is not None else options.seed
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    hp = hp.replace(random_seed=seed)
    run = {"training_data": absolute(options.training_data), "validation_data": absolute(options.validation_data),
           "pretrained": True if options.pretrained is None else bool(options.pretrained),
           "preset": options.preset, "checkpoint": absolute(options.checkpoint),
           "seed": int(seed), "precision": hp["precision"],
           "datastores": list(options.datastores or [])}
    return Settings(task, hp, run)


def _resumed(options: TrainOptions, run_dir: Path) -> Settings:
    from ..config import resolve_hyperparameters

    saved = rundir.read_json(run_dir / rundir.CONFIG)
    task = get_task(saved["task"])
    hyperparameters = dict(saved["hyperparameters"])
    if "ignore_data_errors" not in hyperparameters and "skip_invalid" in saved["run"]:
        hyperparameters["ignore_data_errors"] = bool(saved["run"]["skip_invalid"])  # a run from before the key
    settings = Settings(task, resolve_hyperparameters(task, hyperparameters), saved["run"],
                        saved.get("labels", []))
    given = {"task": get_task(options.task).name if options.task else None,
             "training_data": absolute(options.training_data), "validation_data": absolute(options.validation_data),
             "pretrained": options.pretrained, "preset": options.preset, "checkpoint": absolute(options.checkpoint),
             "seed": options.seed, "precision": options.precision}
    saved_values = {**settings.run, "task": task.name}
    conflicts = [f"{k}: run has {saved_values.get(k)!r}, given {v!r}" for k, v in given.items()
                 if v is not None and k in RESUMED_FIELDS and v != saved_values.get(k)]
    overrides = _with_skip_invalid(task, options)
    if options.model_name:
        overrides["model_name"] = options.model_name
    if overrides:
        wanted = resolve(task, overrides, settings.run.get("preset"))
        conflicts += [f"{k}: run has {settings.hp[k]!r}, given {wanted[k]!r}" for k in overrides
                      if k in wanted and wanted[k] != settings.hp[k]]
    if conflicts:
        raise UsageError(f"--resume continues {run_dir} with the settings it started with; these differ:\n  "
                         + "\n  ".join(conflicts) + "\nDrop them, or start a new run with another --output.")
    return settings


def _with_skip_invalid(task, options: TrainOptions) -> dict:
    """The ``--set`` overrides, with ``--skip-invalid`` as what it now means: ignore_data_errors=true
    (the default); a contradicting ``--set ignore_data_errors=false`` is refused."""
    from ..config import get_param

    overrides = dict(options.overrides or {})
    if not options.skip_invalid:
        return overrides
    given = overrides.get("ignore_data_errors")
    if given is not None and not get_param("ignore_data_errors", task).parse(given, task):
        raise UsageError("--skip-invalid means ignore_data_errors=true (the default), but --set ignore_data_errors="
                         f"{given} was given too: drop one of them")
    overrides["ignore_data_errors"] = True
    return overrides


def resolve(task, overrides: dict, preset: str | None) -> Hyperparameters:
    from ..config import check_supported, resolve_hyperparameters

    hp = resolve_hyperparameters(task, overrides, preset)
    check_supported(hp)
    return hp


def absolute(path) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())
