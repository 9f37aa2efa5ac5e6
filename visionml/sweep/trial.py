"""One trial, in its own process (started by ``runner`` from a forkserver): a normal training
run in ``RUN/trials/<n>/run`` that reports its primary metric to the study after each evaluation,
so the pruner can stop it, and leaves ``trial_result.json`` for the scheduler to read.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

import optuna

from ..fileio import write_json
from .pruners import pruner_from_policy
from .storage import open_storage, with_reconnect
from .study import settings_of

RESULT_FILE, LOG_FILE = "trial_result.json", "trial.log"


def trial_main(payload: dict, lifeline=None) -> None:
    """Entry point of a trial's process: train with per-epoch reporting to the study. ``lifeline``:
    the reading end of a pipe only the scheduler writes to; its end means the scheduler is gone."""
    if lifeline is not None:
        threading.Thread(target=_exit_with_scheduler, args=(lifeline,), name="visionml-lifeline", daemon=True).start()
    trial_dir = Path(payload["trial_dir"])
    log_file = open(trial_dir / LOG_FILE, "a", buffering=1)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    sys.stdout = sys.stderr = log_file
    result_path = trial_dir / RESULT_FILE
    try:
        import torch

        torch.set_num_threads(payload["threads"])  # this process belongs to the trial alone
        result = _train_trial(payload)
    except KeyboardInterrupt:
        result = {"status": "failed", "error": "interrupted"}
    except BaseException as exc:  # any failure is recorded with its error, never as a score of 0
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    write_json(result_path, result)
    log_file.flush()


def _exit_with_scheduler(lifeline) -> None:
    try:
        lifeline.recv()  # nothing is ever sent: this returns when the scheduler's end closes
    except (EOFError, OSError):
        pass
    print("the sweep worker that started this trial is gone: stopping (another worker takes the trial over)",
          flush=True)
    os._exit(1)


def _train_trial(payload: dict) -> dict:
    from ..train import TrainOptions, train

    study = with_reconnect(lambda: optuna.load_study(study_name=payload["study"],
                                                     storage=open_storage(payload["storage"])),
                           payload["storage"], print)
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
        # A database that blinks (a restart) costs the report a retry, not the trial.
        with_reconnect(lambda: trial.report(float(value), epoch), payload["storage"], print)
        if with_reconnect(trial.should_prune, payload["storage"], print):
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
