"""Sweep faults on real processes (issue 18, item 2): a trial's process or a whole sweep worker killed
with SIGKILL mid-trial, and the PostgreSQL server restarted mid-sweep.

What each shows, read back from what a user sees (exit codes, `trials.csv`, the log lines):

* a trial process killed by SIGKILL is a failed trial that says so, and the sweep goes on;
* a sweep worker killed by SIGKILL leaves no trial running for good: another worker takes its trial
  over (failed, its parameters queued again), the sweep finishes its full budget, and the dead
  worker's trial process does not train on alone;
* the database restarted under two workers, a trial ending while it is down: both carry on (after
  saying they lost it) and no finished trial is lost; one that stays down is one error line naming
  the storage.

Every process is killed in a ``finally``; the trainings are one tiny model at sample-data's sizes.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweep.helpers import FAST, write_job
from tests.sweep.test_postgres_workers import _pg_bin, postgres_url  # noqa: F401 - the cluster fixture

pytestmark = pytest.mark.slow

TASK = "image_classification"
CLI = [sys.executable, "-m", "visionml"]


def _job(path: Path, data: dict, max_trials: int, epochs: int = 1) -> Path:
    params = {**FAST[TASK], "model_name": "mobilenet_v3_small", "number_of_epochs": epochs}
    return write_job(path, "\n".join([
        "type: automl", f"task: {TASK}",
        f"training_data: {{path: {data['train']}, type: mltable}}",
        f"validation_data: {{path: {data['val']}, type: mltable}}",
        f"limits: {{max_trials: {max_trials}, max_concurrent_trials: 1}}",
        "training_parameters: " + json.dumps(params),
        "sweep: {sampling_algorithm: random}",
        "search_space: [{learning_rate: 'uniform(0.001, 0.01)'}]", ""]))


def _start(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _stop(*procs) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for(condition, timeout: float, what: str, *procs):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for proc in procs:
            assert proc.poll() is None, f"a process exited ({proc.returncode}) while waiting for {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _trial_processes(worker_pid: int) -> set[int]:
    """A worker's trial processes: the children of its multiprocessing forkserver."""
    servers = {p for p in _children(worker_pid) if b"forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()}
    return {p for p in _children(worker_pid) if _parent(p) in servers}


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _study_name(run_dir: Path) -> str:
    return json.loads((run_dir / "sweep.json").read_text())["study"]


def test_a_trial_process_killed_by_sigkill_is_a_failed_trial_that_says_so(tmp_path, sample_data):
    run_dir = tmp_path / "sweep"
    job = _job(tmp_path / "job.yml", sample_data(TASK), max_trials=2, epochs=3)
    main = _start("run", str(job), "--output", str(run_dir), "--no-pretrained", log=tmp_path / "run.log")
    try:
        trial = _wait_for(lambda: (run_dir / "trials" / "0" / "trial.log").exists() and _trial_processes(main.pid),
                          120, "trial 0's process", main)
        time.sleep(1.0)  # into its training
        for pid in trial:
            os.kill(pid, signal.SIGKILL)
        main.wait(timeout=300)
    finally:
        _stop(main)
    out = (tmp_path / "run.log").read_text()
    assert main.returncode == 0, out
    rows = _rows(run_dir)
    assert [r["status"] for r in rows] == ["fail", "complete"], rows
    assert "SIGKILL" in rows[0]["error"], rows[0]
    assert "Traceback" not in out, out
    assert "trial 0 FAILED" in out and "SIGKILL" in out, out


def test_a_sweep_worker_killed_by_sigkill_mid_trial_is_taken_over(tmp_path, sample_data):
    """`visionml run` and a `visionml sweep-worker` on the sweep's journal; the worker is killed
    by SIGKILL while its trial trains. The run takes the trial over at once (its worker's process
    is gone from this machine), queues its parameters again and completes all 3 trials; the dead
    worker's trial process stops (it would train for nothing: no one is left to record it)."""
    import optuna

    run_dir = tmp_path / "sweep"
    job = _job(tmp_path / "job.yml", sample_data(TASK), max_trials=3, epochs=3)
    main = _start("run", str(job), "--output", str(run_dir), "--no-pretrained", log=tmp_path / "run.log")
    victim = None
    try:
        _wait_for(lambda: (run_dir / "sweep.json").exists(), 120, "the sweep to start", main)
        storage = str(run_dir / "sweep.journal")
        victim = _start("sweep-worker", "--storage", storage, "--study", _study_name(run_dir),
                        log=tmp_path / "worker.log")

        def victims_trial():
            study = optuna.load_study(study_name=_study_name(run_dir), storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(storage)))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                    processes = _trial_processes(victim.pid)
                    if processes and (run_dir / "trials" / str(t.number) / "trial.log").exists():
                        return t, processes
            return None

        lost, processes = _wait_for(victims_trial, 180, "a trial of the worker", main, victim)
        time.sleep(1.0)
        victim.kill()
        victim.wait()
        killed_at = time.monotonic()
        _wait_for(lambda: not any(_alive(p) for p in processes), 15, "the dead worker's trial process to stop")
        stopped_after = time.monotonic() - killed_at
        main.wait(timeout=400)
    finally:
        _stop(main, victim)
    out = (tmp_path / "run.log").read_text()
    assert main.returncode == 0, out
    rows = {int(r["trial"]): r for r in _rows(run_dir)}
    row = rows[lost.number]
    assert row["status"] == "interrupted", row
    assert f":{victim.pid}" in row["error"] and "queued again" in row["error"], row
    assert [r["status"] for r in rows.values()].count("complete") == 3, rows
    again = [r for n, r in rows.items() if n > lost.number and r["learning_rate"] == row["learning_rate"]]
    assert again and again[0]["status"] == "complete", rows  # its parameters, trained by the run
    assert f"trial {lost.number}" in out and "queued again" in out, out
    assert "Traceback" not in out, out
    assert stopped_after < 15


def _stop_postgres(url: str) -> str:
    """Stop the fixture's PostgreSQL server (fast: open connections are cut); its data folder."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
    subprocess.run([*_AS_POSTGRES, _pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"], check=True,
                   stdout=subprocess.DEVNULL)
    return data


def _start_postgres(data: str) -> None:
    """Start the server of ``data`` again with the options it ran with."""
    ran_with = shlex.split(Path(data, "postmaster.opts").read_text())[1:]  # the server's command line
    options = [arg for i, arg in enumerate(ran_with) if arg != "-D" and (i == 0 or ran_with[i - 1] != "-D")]
    subprocess.run([*_AS_POSTGRES, _pg_bin("pg_ctl"), "-D", data, "-l", str(Path(data).parent / "log"), "-w",
                    "-o", shlex.join(options), "start"], check=True, stdout=subprocess.DEVNULL)


_AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # as the fixture runs it


def test_postgres_restarted_mid_sweep_loses_no_finished_trial(tmp_path, sample_data, postgres_url):  # noqa: F811
    """Two workers on PostgreSQL; once a trial has finished, the server is stopped (every connection
    cut) and, while it is down, the run's current trial ends (its process is killed: the run has to
    record a trial's end with no database; a restart that falls between two trial boundaries costs
    nothing even without retries). 5 s later the server is started again. Both workers say they lost
    the storage, naming it, and carry on; the sweep completes its 4 trials, the killed one failed
    with its reason, the finished ones unchanged."""
    run_dir = tmp_path / "sweep"
    job = _job(tmp_path / "job.yml", sample_data(TASK), max_trials=4, epochs=3)
    main = _start("run", str(job), "--output", str(run_dir), "--storage", postgres_url, "--no-pretrained",
                  log=tmp_path / "run.log")
    worker = None
    try:
        _wait_for(lambda: (run_dir / "sweep.json").exists(), 120, "the sweep to start", main)
        worker = _start("sweep-worker", "--storage", postgres_url, "--study", _study_name(run_dir),
                        log=tmp_path / "worker.log")
        finished = _wait_for(lambda: (run_dir / "trials.csv").exists() and [
            r for r in _rows(run_dir) if r["status"] == "complete"], 400, "a finished trial", main, worker)
        trial = _wait_for(lambda: _trial_processes(main.pid), 120, "the run's next trial", main, worker)
        data = _stop_postgres(postgres_url)
        try:
            for pid in trial:
                os.kill(pid, signal.SIGKILL)
            time.sleep(5)
        finally:
            _start_postgres(data)
        main.wait(timeout=400)
        worker.wait(timeout=400)
    finally:
        _stop(main, worker)
    outs = {name: (tmp_path / f"{name}.log").read_text() for name in ("run", "worker")}
    assert main.returncode == 0, outs["run"]
    assert worker.returncode == 0, outs["worker"]
    rows = {r["trial"]: r for r in _rows(run_dir)}
    for before in finished:  # nothing finished is lost or changed
        assert rows[before["trial"]]["status"] == "complete"
        assert rows[before["trial"]]["primary_metric"] == before["primary_metric"]
    statuses = [r["status"] for r in rows.values()]
    assert sorted(statuses) == ["complete"] * 3 + ["fail"], rows
    assert "SIGKILL" in next(r for r in rows.values() if r["status"] == "fail")["error"], rows
    redacted = postgres_url  # no password in the fixture's URL
    assert f"lost the sweep storage {redacted} (" in outs["run"], outs["run"]
    assert f"the sweep storage {redacted} answers again" in outs["run"], outs["run"]
    for out in outs.values():
        assert "Traceback" not in out, out


def test_a_database_that_stays_down_is_one_error_naming_the_storage(postgres_url, monkeypatch):  # noqa: F811
    """When the database does not come back within the patience (``RECONNECT_SECONDS``, 120 s; 2 s
    here), the worker's call ends in one ``VisionMLError`` naming the storage URL and what to do,
    not a driver traceback."""
    import optuna

    from visionml.errors import VisionMLError
    from visionml.sweep import storage as sweep_storage

    monkeypatch.setattr(sweep_storage, "RECONNECT_SECONDS", 2.0)
    storage = sweep_storage.open_storage(postgres_url)
    optuna.create_study(study_name="s", storage=storage)
    data = _stop_postgres(postgres_url)
    heard = []
    try:
        with pytest.raises(VisionMLError) as error:
            sweep_storage.with_reconnect(lambda: optuna.load_study(study_name="s", storage=storage).trials,
                                         postgres_url, heard.append)
    finally:
        _start_postgres(data)  # the fixture stops it at the end
    message = str(error.value)
    assert message.startswith(f"the sweep storage {postgres_url} has not answered for "), message
    assert "--resume" in message and "\n" not in message, message
    assert heard and heard[0].startswith(f"lost the sweep storage {postgres_url} ("), heard
