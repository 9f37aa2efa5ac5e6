"""Two workers on one sweep through a real PostgreSQL server (Debian's package; .ci/run installs it)."""

from __future__ import annotations

import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.support import free_port

from .helpers import FAST, write_job


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs Debian's postgresql)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg is a test extra")
    # PostgreSQL refuses to run as root: as root, run the server as the `postgres` system user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = tempfile.mkdtemp(prefix="visionml-pg-")
    if as_user:
        shutil.chown(base, "postgres")
    data, port = os.path.join(base, "data"), free_port()
    subprocess.run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*as_user, pg_ctl, "-D", data, "-l", os.path.join(base, "log"), "-w", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE sweeps")
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_sweep(tmp_path, sample_data, postgres_url):
    import json

    task = "image_classification"
    data = sample_data(task)
    job = write_job(tmp_path / "job.yml", "\n".join([
        "type: automl", f"task: {task}",
        f"training_data: {{path: {data['train']}, type: mltable}}",
        f"validation_data: {{path: {data['val']}, type: mltable}}",
        "limits: {max_trials: 2, max_concurrent_trials: 1}",
        "training_parameters: " + json.dumps({**FAST[task], "model_name": "mobilenet_v3_small"}),
        "sweep: {sampling_algorithm: random}",
        "search_space: [{learning_rate: 'uniform(0.001, 0.01)'}]", ""]))
    run_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "visionml"]
    main = subprocess.Popen([*cmd, "run", str(job), "--output", str(run_dir), "--storage", postgres_url,
                             "--no-pretrained"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (run_dir / "sweep.json").exists():
            time.sleep(0.2)
        assert (run_dir / "sweep.json").exists(), "the sweep did not start"
        study = json.loads((run_dir / "sweep.json").read_text())["study"]
        worker = subprocess.Popen([*cmd, "sweep-worker", "--storage", postgres_url, "--study", study],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        main_out, _ = main.communicate(timeout=400)
        worker_out, _ = worker.communicate(timeout=400)
    finally:
        for p in (main, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert main.returncode == 0, main_out
    assert worker.returncode == 0, worker_out
    with open(run_dir / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["complete"] * 2
    workers = {r["worker"].rsplit(":", 1)[1] for r in rows}
    assert workers == {str(main.pid), str(worker.pid)}, rows  # both machines' workers ran trials
    assert (run_dir / "best" / "model" / "visionml.json").exists()
