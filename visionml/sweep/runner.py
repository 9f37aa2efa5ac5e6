"""Run a sweep: trials in separate processes, at most ``max_concurrent_trials`` at once, each a
normal run folder under ``RUN/trials/<n>``; results in ``RUN/trials.csv`` and ``RUN/best/model``.

This module is the scheduler: the loop that keeps the trial slots filled until ``max_trials`` or
the deadline, enforces the time limits and records each trial's end in the study. One loop serves
both ``visionml run`` (which creates the study) and ``visionml sweep-worker`` (which joins it from
another machine). What it drives lives beside it, in the order a sweep meets it:

* ``study``: create or load the study, which stores everything a worker needs; sampling;
* ``trial``: one trial's process (training that reports to the study);
* ``report``: ``trials.csv``, ``best/``, the leaderboard and the progress plot.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import VisionMLError
from .report import format_hp, leaderboard, plot_progress, write_outputs
from .storage import open_storage, with_reconnect
from .study import (SweepSettings, create_study, load_study, make_sampler, requeue, settings_of, study_name_for,
                    suggest)
from .trial import LOG_FILE, RESULT_FILE, trial_main

# The sweep's functions, importable from here as before the split into study/trial/report.
__all__ = ["SweepSettings", "TRIAL_PRELOAD", "create_study", "leaderboard", "load_study", "make_sampler",
           "open_storage", "plot_progress", "run_loop", "settings_of", "study_name_for", "suggest", "trial_main",
           "warm_up", "write_outputs"]

POLL_SECONDS = 1.0  # at most this long between time-limit checks; a trial's exit wakes the loop at once
HARD_KILL_GRACE_SECONDS = 60.0
HEARTBEAT_SECONDS = 10.0  # how often a worker stamps its running trials in the study
LOST_AFTER_SECONDS = 120.0  # a trial whose worker (on another machine) has not stamped it for this long is taken over


@dataclass
class _Running:
    trial: optuna.Trial
    process: multiprocessing.process.BaseProcess
    started: float
    trial_dir: Path
    lifeline: multiprocessing.connection.Connection  # closed when this worker dies: the trial then stops
    beat: float = 0.0  # when this worker last stamped the trial's heartbeat


def run_loop(study: optuna.Study, storage_url: str, *, run_dir: Path | None = None,
             concurrency: int | None = None, seed: int | None = None, log=print) -> dict:
    """Start trials until ``max_trials`` or the deadline; returns counts by final state."""
    settings = settings_of(study)
    run_dir = Path(run_dir or settings.run_dir)
    concurrency = concurrency or settings.max_concurrent_trials
    study.sampler = make_sampler(settings, seed)
    ctx = _context()
    running: dict[int, _Running] = {}

    def step() -> bool:
        """One turn of the scheduler; True when the sweep is done. Safe to run again after a
        storage error part-way (a finished trial leaves ``running`` only once it is recorded)."""
        finished = [n for n, r in running.items() if not r.process.is_alive()]
        for number in finished:
            _finish(study, running[number], log)
            running.pop(number).lifeline.close()
        _heartbeat(study, running)
        _take_over_lost(study, running, log)
        _enforce_timeouts(study, settings, running, log)
        expired = settings.deadline is not None and time.time() >= settings.deadline
        # The freed slots first, then the bookkeeping (trials.csv, best/): a slot never waits on it.
        while not expired and len(running) < concurrency and _budget_left(study, settings) > 0:
            started = _start(study, settings, storage_url, run_dir, ctx, concurrency, log)
            if started is None:
                break
            running[started.trial.number] = started
        if finished:
            write_outputs(study, run_dir)
        return not running and (expired or _budget_left(study, settings) <= 0)

    try:
        while not with_reconnect(step, storage_url, log):
            # Wake as soon as a trial process exits (its sentinel), or to check the time limits.
            multiprocessing.connection.wait([r.process.sentinel for r in running.values()], timeout=POLL_SECONDS)
    except KeyboardInterrupt:
        log("interrupted: stopping running trials; finished trials are kept")
        _stop_all(study, running, reason="interrupted (Ctrl-C)")
        write_outputs(study, run_dir)
        raise
    with_reconnect(lambda: write_outputs(study, run_dir), storage_url, log)
    return with_reconnect(lambda: _counts(study), storage_url, log)


# What a trial imports (the trainer keeps its heavy imports inside functions): ~3 s per trial on
# 2 cores if each trial imported them itself. The forkserver imports them once; a missing one is
# skipped by multiprocessing.
TRIAL_PRELOAD = [
    "torch", "torchvision.models", "torchvision.models.detection", "torchvision.transforms.v2",
    "sklearn.metrics", "matplotlib.figure", "matplotlib.backends.backend_agg", "faster_coco_eval",
    "visionml.train.core", "visionml.models.registry", "visionml.data.reader", "visionml.data.dataset",
    "visionml.data.transforms", "visionml.metrics.evaluate", "visionml.metrics.classification",
    "visionml.metrics.detection", "visionml.metrics.plots", "visionml.modelio", "visionml.sweep.trial",
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
    trial.set_user_attr("worker", _worker_id())
    beat = time.time()  # at once: until then other workers judge the trial by its (time-zone naive) start
    trial.set_user_attr("heartbeat", beat)
    trial_dir = run_dir / "trials" / str(trial.number)
    trial.set_user_attr("run_dir", str(trial_dir))
    threads = max(1, (os.cpu_count() or 1) // concurrency)
    payload = {"storage": storage_url, "study": study.study_name, "trial_id": trial._trial_id,
               "number": trial.number, "hp": hp, "trial_dir": str(trial_dir), "threads": threads}
    trial_dir.mkdir(parents=True, exist_ok=True)
    # The trial holds the reading end of a pipe whose only writer is this process: when this worker
    # dies (kill -9 included) the trial sees the end of the pipe and stops, instead of training on
    # with no one left to record its result.
    lifeline, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=trial_main, args=(payload, lifeline), name=f"visionml-trial-{trial.number}")
    process.start()
    lifeline.close()
    log(f"trial {trial.number} started: {format_hp(hp)}")
    return _Running(trial, process, time.time(), trial_dir, writer, beat)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _heartbeat(study, running) -> None:
    now = time.time()
    for r in running.values():
        if now - r.beat >= HEARTBEAT_SECONDS:
            study._storage.set_trial_user_attr(r.trial._trial_id, "heartbeat", now)
            r.beat = now


def _take_over_lost(study, running, log) -> None:
    """Trials RUNNING in the study that no live worker runs (their worker was killed, or its machine
    went away): failed with the reason, and their parameters queued again (not counted against
    ``max_trials``, as an interrupted trial), so the sweep neither waits for them nor lacks them."""
    me, now = _worker_id(), time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number in running:
            continue
        why = _why_lost(t, me, now)
        if why is None:
            continue
        worker = t.user_attrs.get("worker") or "unknown"
        number = requeue(study, t, f"its worker {worker} {why} while it ran; its parameters were queued again")
        if number is not None:
            log(f"trial {t.number} lost its worker {worker} ({why}): its parameters were queued again")


def _why_lost(trial, me: str, now: float) -> str | None:
    worker = trial.user_attrs.get("worker", "")
    host, _, pid = worker.rpartition(":")
    if worker == me:  # this worker's own trial, not running here: its start failed part-way
        return "did not start its process"
    if host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid)):
        return "is no longer running on this machine (killed?)"
    beat = trial.user_attrs.get("heartbeat") or (trial.datetime_start.timestamp() if trial.datetime_start else None)
    if beat is not None and now - beat > LOST_AFTER_SECONDS:
        return f"has not been heard from for {now - beat:.0f} s"
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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
            running.pop(number).lifeline.close()
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
        r.lifeline.close()
    running.clear()


def _tell_failed(study, r: _Running, error: str) -> None:
    study._storage.set_trial_user_attr(r.trial._trial_id, "error", error)
    study.tell(r.trial, state=TrialState.FAIL)


def _finish(study, r: _Running, log) -> None:
    if study._storage.get_trial(r.trial._trial_id).state.is_finished():
        # Another worker took it over (this one was not heard from for LOST_AFTER_SECONDS): it
        # was queued again there, so this result is not recorded twice.
        log(f"trial {r.trial.number} ended here after another worker had taken it over; not recorded")
        return
    result_path = r.trial_dir / RESULT_FILE
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    seconds = time.time() - r.started
    study._storage.set_trial_user_attr(r.trial._trial_id, "seconds", round(seconds, 2))
    code = r.process.exitcode
    if result is None and code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        error = (f"its process was killed by {name} (out of memory, or stopped by someone?); "
                 f"its log: {r.trial_dir / LOG_FILE}")
        _tell_failed(study, r, error)
        log(f"trial {r.trial.number} FAILED: {error}")
        return
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
    log_path = trial_dir / LOG_FILE
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _counts(study) -> dict:
    out: dict[str, int] = {}
    for t in _counted(study):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out
