"""Run a sweep: trials in separate processes, at most ``max_concurrent_trials`` at once, each a
normal run folder under ``RUN/trials/<n>``; results in ``RUN/trials.csv`` and ``RUN/best/model``.

One loop serves both ``visionml run`` (which creates the study) and ``visionml sweep-worker``
(which joins it from another machine): everything a worker needs is stored in the study.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import VisionMLError
from ..fileio import write_bytes_atomic
from .automode import automode_space
from .pruners import pruner_from_policy
from .space import Distribution, grid, parse_search_space
from .spec import JobSpec
from .storage import open_storage, storage_url_for

POLL_SECONDS = 1.0  # at most this long between time-limit checks; a trial's exit wakes the loop at once
HARD_KILL_GRACE_SECONDS = 60.0


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


# ---------------------------------------------------------------- study set-up

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
        study = _load(url, name)
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
    _write_json(marker, {"storage": url if "://" not in url else _redacted(url), "study": name})
    return study, url


def _redacted(url: str) -> str:
    from .storage import _redact

    return _redact(url)


def _load(url: str, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise VisionMLError(f"no study named {name!r} in {_redacted(url)}") from None


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
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number}, skip_if_exists=False)


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


# ---------------------------------------------------------------- the worker loop

@dataclass
class _Running:
    trial: optuna.Trial
    process: multiprocessing.process.BaseProcess
    started: float
    trial_dir: Path


def run_loop(study: optuna.Study, storage_url: str, *, run_dir: Path | None = None,
             concurrency: int | None = None, seed: int | None = None, log=print) -> dict:
    """Start trials until ``max_trials`` or the deadline; returns counts by final state."""
    settings = settings_of(study)
    run_dir = Path(run_dir or settings.run_dir)
    concurrency = concurrency or settings.max_concurrent_trials
    study.sampler = make_sampler(settings, seed)
    ctx = _context()
    running: dict[int, _Running] = {}
    try:
        while True:
            finished = [n for n, r in running.items() if not r.process.is_alive()]
            for number in finished:
                _finish(study, running.pop(number), log)
            _enforce_timeouts(study, settings, running, log)
            expired = settings.deadline is not None and time.time() >= settings.deadline
            # The freed slots first, then the bookkeeping (trials.csv, best/): a slot never waits on it.
            while not expired and len(running) < concurrency and _budget_left(study, settings) > 0:
                started = _start(study, settings, storage_url, run_dir, ctx, concurrency, log)
                if started is None:
                    break
                running[started.trial.number] = started
            if finished:
                _write_outputs(study, run_dir)
            if not running and (expired or _budget_left(study, settings) <= 0):
                break
            # Wake as soon as a trial process exits (its sentinel), or to check the time limits.
            multiprocessing.connection.wait([r.process.sentinel for r in running.values()], timeout=POLL_SECONDS)
    except KeyboardInterrupt:
        log("interrupted: stopping running trials; finished trials are kept")
        _stop_all(study, running, reason="interrupted (Ctrl-C)")
        _write_outputs(study, run_dir)
        raise
    _write_outputs(study, run_dir)
    return _counts(study)


# What a trial imports (the trainer keeps its heavy imports inside functions): ~3 s per trial on
# 2 cores if each trial imported them itself. The forkserver imports them once; a missing one is
# skipped by multiprocessing.
TRIAL_PRELOAD = [
    "torch", "torchvision.models", "torchvision.models.detection", "torchvision.transforms.v2",
    "sklearn.metrics", "matplotlib.figure", "matplotlib.backends.backend_agg", "faster_coco_eval",
    "visionml.train.core", "visionml.models.registry", "visionml.data.reader", "visionml.data.dataset",
    "visionml.data.transforms", "visionml.metrics.evaluate", "visionml.metrics.classification",
    "visionml.metrics.detection", "visionml.metrics.plots", "visionml.modelio", "visionml.sweep.runner",
]


def _context():
    # A forkserver with torch and the trainer preloaded: each trial is a fresh process (isolated
    # memory, killable) that starts in milliseconds instead of re-importing torch.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(TRIAL_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def warm_up() -> None:
    """Start the forkserver now, so that its imports (~3 s on 2 cores) overlap with reading the job
    and creating the study instead of delaying the first trial. Safe to call more than once."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _counted(study: optuna.Study) -> list:
    """Trials that count against max_trials (not the interrupted ones that --resume re-queued,
    nor ones a racing worker started over budget)."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get("interrupted") and not t.user_attrs.get("over_budget")]


def _budget_left(study: optuna.Study, settings: SweepSettings) -> int:
    active = [t for t in _counted(study) if t.state != TrialState.WAITING]
    return settings.max_trials - len(active)


def _start(study, settings, storage_url, run_dir, ctx, concurrency, log) -> _Running | None:
    trial = study.ask()
    earlier = [t for t in _counted(study) if t.number < trial.number and t.state != TrialState.WAITING]
    if len(earlier) >= settings.max_trials:  # another worker took the last slot first
        study._storage.set_trial_user_attr(trial._trial_id, "over_budget", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    try:
        hp = suggest(trial, settings)
    except Exception as exc:
        study.tell(trial, state=TrialState.FAIL)
        raise VisionMLError(f"cannot sample trial {trial.number}: {exc}") from exc
    trial.set_user_attr("hyperparameters", hp)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial_dir = run_dir / "trials" / str(trial.number)
    trial.set_user_attr("run_dir", str(trial_dir))
    threads = max(1, (os.cpu_count() or 1) // concurrency)
    payload = {"storage": storage_url, "study": study.study_name, "trial_id": trial._trial_id,
               "number": trial.number, "hp": hp, "trial_dir": str(trial_dir), "threads": threads}
    trial_dir.mkdir(parents=True, exist_ok=True)
    process = ctx.Process(target=trial_main, args=(payload,), name=f"visionml-trial-{trial.number}")
    process.start()
    log(f"trial {trial.number} started: {_fmt(hp)}")
    return _Running(trial, process, time.time(), trial_dir)


def _enforce_timeouts(study, settings, running, log) -> None:
    """Trials stop themselves at an epoch boundary when a time limit passes; one that cannot
    (a single epoch longer than the limit) is killed after a grace period."""
    now = time.time()
    for number, r in list(running.items()):
        limits = []
        if settings.trial_timeout_minutes:
            limits.append(r.started + settings.trial_timeout_minutes * 60)
        if settings.deadline:
            limits.append(settings.deadline)
        if limits and now > min(limits) + HARD_KILL_GRACE_SECONDS:
            r.process.kill()
            r.process.join()
            _tell_failed(study, r, "killed: it ran past its time limit (trial_timeout_minutes or "
                                   "timeout_minutes) and did not stop at an epoch boundary")
            running.pop(number)
            log(f"trial {number} killed after its time limit")


def _stop_all(study, running, reason: str) -> None:
    deadline = time.time() + 10
    for r in running.values():
        r.process.join(timeout=max(0.0, deadline - time.time()))
        if r.process.is_alive():
            r.process.terminate()
            r.process.join(5)
    for r in running.values():
        if study._storage.get_trial(r.trial._trial_id).state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(r.trial._trial_id, "interrupted", True)
            _tell_failed(study, r, reason)
    running.clear()


def _tell_failed(study, r: _Running, error: str) -> None:
    study._storage.set_trial_user_attr(r.trial._trial_id, "error", error)
    study.tell(r.trial, state=TrialState.FAIL)


def _finish(study, r: _Running, log) -> None:
    result_path = r.trial_dir / "trial_result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    seconds = time.time() - r.started
    study._storage.set_trial_user_attr(r.trial._trial_id, "seconds", round(seconds, 2))
    if result is None or result.get("status") == "failed":
        error = (result or {}).get("error") or _log_tail(r.trial_dir) or f"exit code {r.process.exitcode}"
        _tell_failed(study, r, error)
        log(f"trial {r.trial.number} FAILED: {error.strip().splitlines()[-1] if error.strip() else error}")
        return
    study._storage.set_trial_user_attr(r.trial._trial_id, "train_seconds", result.get("seconds"))
    study._storage.set_trial_user_attr(r.trial._trial_id, "stop_reason", result.get("stop_reason"))
    if result["status"] == "pruned":
        study.tell(r.trial, state=TrialState.PRUNED)
        log(f"trial {r.trial.number} pruned at epoch {result.get('epochs_run')} (early termination)")
    else:
        study.tell(r.trial, result["value"])
        log(f"trial {r.trial.number} finished: {result['value']:.4f} in {seconds:.1f}s")


def _log_tail(trial_dir: Path, lines: int = 15) -> str:
    log_path = trial_dir / "trial.log"
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _counts(study) -> dict:
    out: dict[str, int] = {}
    for t in _counted(study):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def _fmt(hp: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items()) or "(defaults)"


# ---------------------------------------------------------------- one trial (child process)

def trial_main(payload: dict) -> None:
    """Entry point of a trial's process: train with per-epoch reporting to the study."""
    trial_dir = Path(payload["trial_dir"])
    log_file = open(trial_dir / "trial.log", "a", buffering=1)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    sys.stdout = sys.stderr = log_file
    result_path = trial_dir / "trial_result.json"
    try:
        import torch

        torch.set_num_threads(payload["threads"])  # this process belongs to the trial alone
        result = _train_trial(payload)
    except KeyboardInterrupt:
        result = {"status": "failed", "error": "interrupted"}
    except BaseException as exc:  # any failure is recorded with its error, never as a score of 0
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    _write_json(result_path, result)
    log_file.flush()


def _train_trial(payload: dict) -> dict:
    from ..train import TrainOptions, train

    study = optuna.load_study(study_name=payload["study"], storage=open_storage(payload["storage"]))
    settings = settings_of(study)
    study.pruner = pruner_from_policy(settings.early_termination)
    trial = optuna.trial.Trial(study, payload["trial_id"])
    started = time.time()
    limits = [d for d in (settings.deadline,
                          started + settings.trial_timeout_minutes * 60 if settings.trial_timeout_minutes else None)
              if d]
    state = {"pruned": False, "timeout": False}

    def on_evaluation(epoch: int, metrics: dict) -> bool:
        value = metrics.get(settings.primary_metric)
        if value is None:
            return False
        trial.report(float(value), epoch)
        if trial.should_prune():
            state["pruned"] = True
            return True
        if limits and time.time() >= min(limits):
            state["timeout"] = True
            return True
        return False

    params = {**settings.training_parameters, **payload["hp"]}
    model_name = params.pop("model_name", None)
    if settings.validation_data_size is not None and not settings.validation_data:
        params.setdefault("validation_data_size", settings.validation_data_size)
    result = train(TrainOptions(
        task=settings.task, training_data=settings.training_data, validation_data=settings.validation_data,
        model_name=model_name, overrides=params, output=payload["trial_dir"] + "/run", device=settings.device,
        pretrained=settings.pretrained, preset=settings.preset, seed=settings.seed, progress=False,
        workers=0, on_evaluation=on_evaluation))
    if result.best_score is None:
        return {"status": "failed", "error": "the trial ran no evaluation (no validation data?)"}
    status = "pruned" if state["pruned"] else "complete"
    return {"status": status, "value": float(result.best_score), "seconds": result.seconds,
            "epochs_run": result.epochs_run, "model_dir": str(result.model_dir),
            "stop_reason": "time limit" if state["timeout"] else result.stop_reason}


# ---------------------------------------------------------------- outputs

def _write_json(path: Path, data) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=2).encode())


def _rows(study) -> tuple[list[dict], list[str]]:
    trials = [t for t in study.get_trials(deepcopy=False)
              if not t.user_attrs.get("over_budget") and t.state != TrialState.WAITING]
    names: list[str] = []
    for t in trials:
        for k in t.user_attrs.get("hyperparameters", {}):
            if k not in names:
                names.append(k)
    rows = []
    for t in trials:
        hp = t.user_attrs.get("hyperparameters", {})
        status = "interrupted" if t.user_attrs.get("interrupted") else t.state.name.lower()
        rows.append({
            "trial": t.number, "status": status,
            "primary_metric": "" if t.value is None else round(t.value, 6),
            **{n: hp.get(n, "") for n in names},
            "metric_per_evaluation": json.dumps({int(k): round(v, 6) for k, v in sorted(t.intermediate_values.items())}),
            "seconds": t.user_attrs.get("seconds", ""),
            "worker": t.user_attrs.get("worker", ""),
            "error": t.user_attrs.get("error", ""),
            "run_dir": t.user_attrs.get("run_dir", ""),
        })
    return rows, names


def _write_outputs(study, run_dir: Path) -> None:
    rows, names = _rows(study)
    fields = ["trial", "status", "primary_metric", *names, "metric_per_evaluation", "seconds", "worker", "error",
              "run_dir"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(run_dir / "trials.csv", buf.getvalue().encode())  # unique temp name: workers may race
    _update_best(study, run_dir)


def _update_best(study, run_dir: Path) -> None:
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return
    src = Path(best.user_attrs.get("run_dir", "")) / "run" / "model"
    marker = run_dir / "best" / "trial.json"
    if marker.exists() and json.loads(marker.read_text()).get("trial") == best.number:
        return
    if not src.is_dir():
        return
    staging = run_dir / f"best.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging / "model")
    metrics = src.parent / "metrics.json"
    if metrics.exists():
        shutil.copy2(metrics, staging / "metrics.json")
    _write_json(staging / "trial.json", {"trial": best.number, "primary_metric": best.value,
                                         "hyperparameters": best.user_attrs.get("hyperparameters", {})})
    old = run_dir / f"best.{os.getpid()}.old"
    try:
        if (run_dir / "best").exists():
            os.replace(run_dir / "best", old)
        os.replace(staging, run_dir / "best")
    except OSError:  # another worker on this machine swapped it in at the same moment
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def leaderboard(study, top: int = 10) -> str:
    rows, names = _rows(study)
    done = sorted((r for r in rows if r["primary_metric"] != ""), key=lambda r: -float(r["primary_metric"]))
    settings = settings_of(study)
    lines = [f"{'rank':>4} {'trial':>5} {settings.primary_metric:>24} {'status':>9}  hyperparameters"]
    for i, r in enumerate(done[:top], 1):
        hp = _fmt({n: r[n] for n in names if r[n] != ""})
        lines.append(f"{i:>4} {r['trial']:>5} {float(r['primary_metric']):>24.4f} {r['status']:>9}  {hp}")
    failed = [r for r in rows if r["status"] == "fail"]
    if failed:
        lines.append(f"{len(failed)} trial(s) failed: see the error column of trials.csv")
    return "\n".join(lines)


def plot_progress(study, path: Path) -> Path | None:
    """Primary metric per trial against time, with the best so far."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.value is not None and t.datetime_complete]
    if not trials:
        return None
    from matplotlib.figure import Figure

    trials.sort(key=lambda t: t.datetime_complete)
    t0 = min(t.datetime_start for t in trials)
    xs = [(t.datetime_complete - t0).total_seconds() / 60 for t in trials]
    ys = [t.value for t in trials]
    best = [max(ys[: i + 1]) for i in range(len(ys))]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter(xs, ys, label="trial")
    for x, y, t in zip(xs, ys, trials):
        ax.annotate(str(t.number), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.step(xs, best, where="post", color="tab:green", label="best so far")
    ax.set_xlabel("minutes since the sweep started")
    ax.set_ylabel(settings_of(study).primary_metric)
    ax.set_title(f"{study.study_name}: primary metric per trial")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
