"""The two entry points the CLI calls: ``run_job`` (visionml run) and ``join_sweep`` (sweep-worker)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import VisionMLError
from .preflight import check_environment
from .report import leaderboard, plot_progress
from .runner import run_loop, warm_up
from .spec import load_job
from .study import create_study, load_study, settings_of


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_job(job_path, output=None, *, resume=False, storage=None, preset=None, pretrained=None,
            device="auto", seed=0, log=_log) -> int:
    spec = load_job(job_path)
    warm_up()  # the trial process server boots while the study is created
    for note in spec.notes:
        log(f"note: {note}")
    if not resume:  # before the study and its folder exist: a reason every trial would fail stops it once
        check_environment(spec.task, spec.training_parameters, _subspaces(spec), preset=preset,
                          pretrained=pretrained, device=device, log=log)
    run_dir = Path(output) if output else _default_run_dir(job_path)
    study, url = create_study(spec, run_dir, storage, resume=resume, preset=preset, pretrained=pretrained,
                              device=device, seed=seed)
    settings = settings_of(study)
    if resume:  # with the settings the sweep started with
        check_environment(settings.task, settings.training_parameters, settings.subspaces(), preset=settings.preset,
                          pretrained=settings.pretrained, device=settings.device, log=log)
    mode = "AutoMode (built-in search space)" if settings.automode else f"{settings.sampling_algorithm} sampling"
    log(f"sweep {study.study_name}: {settings.task}, {mode}, up to {settings.max_trials} trial(s), "
        f"{settings.max_concurrent_trials} at once; run folder {run_dir}")
    if "://" in url:
        log(f"other machines can join with: visionml sweep-worker --storage URL --study {study.study_name}")
    try:
        counts = run_loop(study, url, run_dir=run_dir, seed=seed, log=log)
    except KeyboardInterrupt:
        _summary(study, run_dir, log)
        return 130
    _summary(study, run_dir, log)
    if not counts.get("complete"):
        log("no trial completed: see trials.csv for the errors")
        return 1
    return 0


def join_sweep(storage: str, study_name: str, output=None, *, concurrency=None, log=_log) -> int:
    study = load_study(storage, study_name)
    warm_up()
    settings = settings_of(study)
    check_environment(settings.task, settings.training_parameters, settings.subspaces(), preset=settings.preset,
                      pretrained=settings.pretrained, device=settings.device, log=log)
    run_dir = Path(output) if output else Path(settings.run_dir)
    log(f"joined sweep {study_name}: trials go to {run_dir / 'trials'}")
    try:
        run_loop(study, storage, run_dir=run_dir, concurrency=concurrency, seed=None, log=log)
    except KeyboardInterrupt:
        return 130
    log(leaderboard(study))
    return 0


def _subspaces(spec) -> list:
    """The sub-spaces the trials draw from: the job's, or AutoMode's (as the study picks them)."""
    if spec.automode:
        import torch

        from .automode import automode_space

        return automode_space(spec.task, gpu=torch.cuda.is_available())
    return spec.search_space


def _summary(study, run_dir: Path, log) -> None:
    log(leaderboard(study))
    plot = plot_progress(study, run_dir / "plots" / "sweep_progress.png")
    if plot:
        log(f"plot: {plot}")
    if (run_dir / "best" / "model").is_dir():
        log(f"best model: {run_dir / 'best' / 'model'}")


def _default_run_dir(job_path) -> Path:
    stem = Path(job_path).stem
    for i in range(1, 10_000):
        candidate = Path("runs") / (stem if i == 1 else f"{stem}{i}")
        if not candidate.exists():
            return candidate
    raise VisionMLError("no free run folder name under runs/: pass --output")
