"""`visionml run` on Azure job YAML for every task, failures, resume and Ctrl-C, read back from
the files a user looks at (trials.csv, best/model)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from visionml.cli import main
from visionml.modelio import load_model_folder
from visionml.sweep import runner

from .helpers import FAST, write_job


def read_trials(run_dir):
    with open(run_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def job_yaml(task, data, params, search_space, limits="limits: {max_trials: 2, max_concurrent_trials: 2}",
             sweep="sweep: {sampling_algorithm: random}"):
    return "\n".join([
        "$schema: https://azuremlschemas.azureedge.net/latest/autoMLJob.schema.json",
        "type: automl",
        "compute: azureml:gpu-cluster",
        f"task: {task}",
        f"training_data: {{path: {data['train']}, type: mltable}}",
        f"validation_data: {{path: {data['val']}, type: mltable}}",
        limits,
        "training_parameters: " + json.dumps(params),
        sweep,
        "search_space: " + json.dumps(search_space) if not isinstance(search_space, str) else search_space,
    ]) + "\n"


CASES = {
    # (search space in the string spelling or the mapping spelling, limits at top level or nested)
    "image_classification": (
        [{"model_name": "choice('mobilenet_v3_small')", "learning_rate": "uniform(0.001, 0.01)"}],
        "limits: {max_trials: 2, max_concurrent_trials: 2}", "sweep: {sampling_algorithm: random}"),
    "image_classification_multilabel": (
        [{"model_name": {"type": "choice", "values": ["mobilenet_v3_small"]},
          "learning_rate": {"type": "uniform", "min_value": 0.001, "max_value": 0.01}}],
        "", "sweep: {sampling_algorithm: bayesian, limits: {max_trials: 2, max_concurrent_trials: 2}}"),
    "image_object_detection": (
        [{"model_name": "fasterrcnn_mobilenet_v3_large_fpn", "learning_rate": "choice(0.001, 0.002)"}],
        "limits: {max_trials: 2, max_concurrent_trials: 2}", "sweep: {sampling_algorithm: grid}"),
    "image_instance_segmentation": (
        [{"model_name": {"type": "choice", "values": ["maskrcnn_resnet18_fpn"]},
          "learning_rate": {"type": "choice", "values": [0.001, 0.002]}}],
        "", "sweep:\n  sampling_algorithm: grid\n  limits: {max_trials: 2, max_concurrent_trials: 2}\n"
            "  early_termination: {type: median_stopping, evaluation_interval: 1, delay_evaluation: 1}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(CASES))
def test_each_task_runs_from_azure_yaml(tmp_path, sample_data, task):
    space, limits, sweep = CASES[task]
    job = write_job(tmp_path / "job.yml", job_yaml(task, sample_data(task), FAST[task], space, limits, sweep))
    run_dir = tmp_path / "run"
    assert main(["run", str(job), "--output", str(run_dir), "--no-pretrained"]) == 0
    rows = read_trials(run_dir)
    assert len(rows) == 2
    # With median stopping, the trial whose first evaluation lands second may be pruned when it is
    # below the other's (the two run at once, so which one is a race); without a policy none is.
    allowed = {"complete", "pruned"} if "median_stopping" in sweep else {"complete"}
    assert {r["status"] for r in rows} <= allowed and any(r["status"] == "complete" for r in rows)
    for r in rows:
        assert json.loads(r["metric_per_evaluation"])  # one value per evaluated epoch
        assert float(r["seconds"]) > 0
        if r["status"] == "complete":
            assert 0.0 <= float(r["primary_metric"]) <= 1.0
            assert (run_dir / "trials" / r["trial"] / "run" / "model" / "visionml.json").exists()
    if "grid" in sweep:  # grid covers each point once
        assert sorted(float(r["learning_rate"]) for r in rows) == [0.001, 0.002]
    best = max((r for r in rows if r["status"] == "complete"), key=lambda r: float(r["primary_metric"]))
    best_info = json.loads((run_dir / "best" / "trial.json").read_text())
    assert best_info["primary_metric"] == pytest.approx(float(best["primary_metric"]))
    _, manifest = load_model_folder(run_dir / "best" / "model")
    assert manifest["task"] == task
    assert (run_dir / "plots" / "sweep_progress.png").stat().st_size > 1000


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, sample_data):
    task = "image_classification"
    params = {**FAST[task], "optimizer": "sgd", "momentum": 0.0, "nesterov": False}
    space = [{"model_name": "choice('mobilenet_v3_small')", "learning_rate": "choice(0.001, 1e30)"}]
    job = write_job(tmp_path / "job.yml", job_yaml(task, sample_data(task), params, space,
                                                    "limits: {max_trials: 2, max_concurrent_trials: 1}",
                                                    "sweep: {sampling_algorithm: grid}"))
    run_dir = tmp_path / "run"
    assert main(["run", str(job), "--output", str(run_dir), "--no-pretrained"]) == 0
    rows = {float(r["learning_rate"]): r for r in read_trials(run_dir)}
    assert rows[0.001]["status"] == "complete"
    failed = rows[1e30]
    assert failed["status"] == "fail"
    assert failed["primary_metric"] == ""  # never a score of 0
    assert "out of range" in failed["error"]  # the trial's own error, for the user to read


def test_resume_redoes_only_unfinished_trials(tmp_path, sample_data, monkeypatch):
    task = "image_classification"
    space = [{"model_name": "choice('mobilenet_v3_small')", "learning_rate": "choice(0.001, 0.002, 0.003)"}]
    job = write_job(tmp_path / "job.yml", job_yaml(task, sample_data(task), FAST[task], space,
                                                    "limits: {max_trials: 3, max_concurrent_trials: 1}",
                                                    "sweep: {sampling_algorithm: grid}"))
    run_dir = tmp_path / "run"
    # A sweep stopped after its first trial, with the second one left RUNNING (a killed machine).
    real_budget = runner._budget_left
    monkeypatch.setattr(runner, "_budget_left", lambda study, s: real_budget(study, s) - 2)
    assert main(["run", str(job), "--output", str(run_dir), "--no-pretrained"]) == 0
    monkeypatch.undo()
    assert [r["status"] for r in read_trials(run_dir)] == ["complete"]
    first_model = run_dir / "trials" / "0" / "run" / "model" / "weights.safetensors"
    stamp = first_model.stat().st_mtime_ns
    info = json.loads((run_dir / "sweep.json").read_text())
    study = optuna.load_study(study_name=info["study"], storage=runner.open_storage(info["storage"]))
    stale = study.ask()  # takes grid point 1 and never finishes

    # Without --resume the folder is refused; with it the sweep continues.
    assert main(["run", str(job), "--output", str(run_dir), "--no-pretrained"]) == 1
    assert main(["run", str(job), "--output", str(run_dir), "--resume"]) == 0
    rows = {int(r["trial"]): r for r in read_trials(run_dir)}
    assert first_model.stat().st_mtime_ns == stamp  # the finished trial was not redone
    assert rows[0]["status"] == "complete"
    assert rows[stale.number]["status"] == "interrupted"
    done = [r for r in rows.values() if r["status"] == "complete"]
    assert sorted(float(r["learning_rate"]) for r in done) == [0.001, 0.002, 0.003]


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials(tmp_path, sample_data):
    task = "image_classification"
    params = {**FAST[task], "number_of_epochs": 30, "early_stopping": False}
    space = [{"model_name": "choice('mobilenet_v3_small')", "learning_rate": "choice(0.001, 0.002)"}]
    job = write_job(tmp_path / "job.yml", job_yaml(task, sample_data(task), params, space,
                                                    "limits: {max_trials: 2, max_concurrent_trials: 1}",
                                                    "sweep: {sampling_algorithm: grid}"))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "visionml", "run", str(job), "--output", str(run_dir),
                             "--no-pretrained"], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        history = run_dir / "trials" / "0" / "run" / "history.csv"
        while time.time() < deadline and not (history.exists() and len(history.read_text().splitlines()) >= 2):
            time.sleep(0.5)
        assert history.exists(), "the first trial never finished an epoch"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        # The trial gets 10 s to stop and 5 more after SIGTERM; the rest is slack for a loaded machine.
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired as exc:  # a hang: say where each process of the sweep is
            processes = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(proc.pid)],
                                       capture_output=True, text=True).stdout
            trial_log = run_dir / "trials" / "0" / "trial.log"
            pytest.fail(f"the sweep did not stop within 120 s of Ctrl-C.\nprocesses:\n{processes}\noutput:\n"
                        f"{exc.output or ''}\ntrial.log:\n{trial_log.read_text()[-3000:] if trial_log.exists() else ''}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out
    rows = read_trials(run_dir)
    assert rows[0]["status"] == "interrupted"
    assert "interrupted" in out


def test_job_yaml_errors_exit_1_with_the_reason(tmp_path, sample_data, capsys):
    data = sample_data("image_classification")
    job = write_job(tmp_path / "job.yml", yaml.safe_dump({
        "type": "automl", "task": "image_classification", "training_data": str(data["train"]),
        "training_parameters": {"learning_rat": 0.1}, "limits": {"max_trials": 2}}))
    assert main(["run", str(job), "--output", str(tmp_path / "run")]) == 1
    assert "learning_rate" in capsys.readouterr().err
