"""Issue 18 item 2: faults, each tried for real on `visionml` subprocesses.

* ``kill -9`` of training mid-epoch, then ``--resume``: the same weights as an uninterrupted run;
  SIGKILL while checkpoints are being saved: every checkpoint under its final name loads.
* SIGINT/SIGTERM of ``predict``, ``convert``, ``export``, ``evaluate`` while they write: the final
  name is absent or whole; a rerun completes.
* ``visionml serve`` under overload: 503 with ``Retry-After``, each 200 answer equal to the offline
  prediction of its own image, memory flat, full service after.
* A full disk (a real 2 MB tmpfs) during training and export: one error line, exit 1, earlier
  checkpoints intact.

Every process is started in a ``try`` whose ``finally`` kills it, so a failing test leaves none
behind. On CPU the same seed gives bit-identical runs (tests/train/test_resume.py), which is what
lets a resumed run be compared with an uninterrupted one exactly."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support import FAST_TRAINING

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VISIONML_OFFLINE": "1"}


def _visionml(*args) -> list[str]:
    return [sys.executable, "-m", "visionml", *map(str, args)]


def _start(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(_visionml(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            **kw)


def _run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(_visionml(*args), capture_output=True, text=True, env=ENV, timeout=timeout)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def _wait_for(predicate, proc: subprocess.Popen, timeout=180.0, poll=0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    return False


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.name.endswith(".tmp"))


# ---- training: kill -9 mid-epoch, kill -9 during the save ----

def _train_cmd(data, output, epochs, *extra) -> list[str]:
    """tests/train/test_resume.py's settings, through the CLI: seed 3, no warm-up, no early stop."""
    sets = ["number_of_epochs=%d" % epochs, *FAST_TRAINING["image_classification"],
            "warmup_cosine_lr_warmup_epochs=0", "early_stopping=False", *extra]
    return ["train", "--task", "multiclass", "--training-data", data["train"], "--validation-data", data["val"],
            "--output", output, "--no-pretrained", "--preset", "cpu", "--seed", "3", "--precision", "fp32",
            "--device", "cpu", *[x for s in sets for x in ("--set", s)]]


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "weights.safetensors"), device="cpu")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert torch.equal(value, b[name]), name


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


EPOCHS = 3


@pytest.fixture(scope="module")
def whole_run(sample_data, tmp_path_factory):
    """An uninterrupted run in its own process, the reference the interrupted ones must equal."""
    whole = tmp_path_factory.mktemp("whole") / "run"
    done = _run(*_train_cmd(sample_data("multiclass"), whole, EPOCHS))
    assert done.returncode == 0, done.stderr
    return whole


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights(sample_data, whole_run, tmp_path):
    data = sample_data("multiclass")
    whole, killed = whole_run, tmp_path / "killed"
    proc = _start(*_train_cmd(data, killed, EPOCHS))
    try:
        # last.pt exists once epoch 1 is saved: epoch 2 is under way. Kill it there, mid-epoch.
        assert _wait_for(lambda: (killed / "checkpoints/last.pt").is_file(), proc), proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == -signal.SIGKILL
    state = _checkpoint(killed / "checkpoints/last.pt")
    assert state["epoch"] < EPOCHS and not state["finished"], "the run finished before the kill: nothing was tried"

    resumed = _run("train", "--resume", "--output", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    _assert_same_weights(_weights(whole), _weights(killed))
    a, b = _checkpoint(whole / "checkpoints/last.pt"), _checkpoint(killed / "checkpoints/last.pt")
    assert b["finished"] and b["epoch"] == EPOCHS
    _assert_same_weights(a["model"], b["model"])


def _assert_every_final_file_whole(run: Path) -> int:
    """Every checkpoint under its final name loads (weights_only), and so do the model folder's
    weights if they are there; returns how many files were checked."""
    from safetensors.torch import load_file

    checked = 0
    for path in sorted((run / "checkpoints").glob("*.pt")) if (run / "checkpoints").is_dir() else []:
        state = _checkpoint(path)
        assert state["format"] == 1 and "model" in state, path
        checked += 1
    weights = run / "model" / "weights.safetensors"
    if weights.exists():
        load_file(str(weights), device="cpu")
        checked += 1
    return checked


@pytest.mark.slow
def test_kill_9_during_checkpoint_saves_never_leaves_half_a_checkpoint(sample_data, whole_run, tmp_path):
    """SIGKILL at a random short delay after a checkpoint's temporary file appears (its bytes are
    being written and fsynced, or it was just renamed), four times, resuming after each; then the
    run finishes with the uninterrupted run's weights, and no temporary file is left behind."""
    data = sample_data("multiclass")
    run = tmp_path / "run"
    rng = random.Random(18)
    kills = checked = 0
    def command():
        if (run / "checkpoints/last.pt").is_file():
            return ["train", "--resume", "--output", run]
        if run.exists():  # killed during the very first save: nothing to resume, start again
            shutil.rmtree(run)
        return _train_cmd(data, run, EPOCHS, "checkpoint_frequency=1")

    resumed_kills = 0
    # The save to kill in, counting the files each process writes (epoch_N.pt, then last.pt, per
    # epoch): epoch 2's copy in a fresh run, then in the resumed runs the copy, last.pt, the copy.
    for wanted in (3, 1, 2, 1):
        cmd = command()
        resumed_kills += cmd[1] == "--resume"
        old = set(_temporaries(run))
        fresh: set[Path] = set()

        def saves_seen() -> bool:
            fresh.update(p for p in _temporaries(run) if p not in old and p.parent.name == "checkpoints")
            return len(fresh) >= wanted

        proc = _start(*cmd)
        try:
            assert _wait_for(saves_seen, proc, poll=0.002), "no checkpoint save was seen: " + proc.communicate()[1]
            time.sleep(rng.uniform(0.0, 0.3))  # while that file (~135 MB, then fsync) is written, or just after
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            _stop(proc)
        assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
        kills += 1
        checked += _assert_every_final_file_whole(run)

    finished = _run(*command())
    assert finished.returncode == 0, finished.stderr
    checked += _assert_every_final_file_whole(run)
    _assert_same_weights(_weights(whole_run), _weights(run))
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        *(f"epoch_{e:03d}.pt" for e in range(1, EPOCHS + 1)), "last.pt"]
    # What the kills left half written under temporary names, up to a checkpoint's size each, is
    # deleted on --resume.
    assert _temporaries(run) == []
    print(f"kills during saves: {kills} ({resumed_kills} of resumed runs), files checked whole: {checked}")



def test_a_kill_between_the_two_checkpoint_writes_of_a_save_loses_no_kept_checkpoint(sample_data, tmp_path,
                                                                                     monkeypatch):
    """The deterministic form of one kill above: a save writes two files (the kept epoch copy and
    last.pt); the process dies after the first of epoch 2's. --resume must still end with every
    kept copy: written last.pt-first, epoch_002.pt was never written at all."""
    from visionml.train import TrainOptions, rundir, train

    from tests.support import fast_settings

    settings = {**fast_settings("multiclass"), "number_of_epochs": 3, "warmup_cosine_lr_warmup_epochs": 0,
                "early_stopping": False, "checkpoint_frequency": 1}
    options = dict(task="multiclass", training_data=sample_data("multiclass")["train"],
                   validation_data=sample_data("multiclass")["val"], output=tmp_path / "run", pretrained=False,
                   preset="cpu", seed=3, precision="fp32", device="cpu", overrides=settings)
    written = []
    real = rundir.write_bytes_atomic

    def dies_after_one_file_of_epoch_2(target, data, **kw):
        if Path(target).suffix == ".pt":
            written.append(Path(target).name)
            if len(written) == 4:  # epoch 1: two files; epoch 2: the first went through
                raise KeyboardInterrupt  # the process is gone before the second file
        return real(target, data, **kw)

    monkeypatch.setattr(rundir, "write_bytes_atomic", dies_after_one_file_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(TrainOptions(**options))
    monkeypatch.setattr(rundir, "write_bytes_atomic", real)
    train(TrainOptions(**options, resume=True))
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]
    for epoch in (1, 2, 3):
        assert _checkpoint(run / f"checkpoints/epoch_{epoch:03d}.pt")["epoch"] == epoch


# ---- SIGINT / SIGTERM of the commands that write ----

def _many_lines(data: dict, out: Path, copies: int) -> Path:
    """``data``'s train and val lines, repeated with absolute image paths: enough work to interrupt."""
    import json

    lines = []
    for split in ("train", "val"):
        folder = Path(data[split]).parent
        for line in Path(data[split]).read_text().splitlines():
            record = json.loads(line)
            record["image_url"] = str(folder / record["image_url"])
            lines.append(json.dumps(record))
    out.write_text("".join(f"{lines[i % len(lines)]}\n" for i in range(copies)))
    return out


def _valid_json(path: Path, key: str) -> None:
    import json

    assert key in json.loads(path.read_text()), path


def _valid_onnx(path: Path) -> None:
    import onnx

    onnx.checker.check_model(onnx.load(str(path / "model.onnx")))
    _valid_json(path / "manifest.json", "task") if (path / "manifest.json").exists() else None


def _temporaries_or_staging(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".export-" in p.name)


SIGNALLED = [
    ("convert", signal.SIGTERM), ("convert", signal.SIGINT),
    ("evaluate", signal.SIGTERM), ("evaluate", signal.SIGINT),
    ("export", signal.SIGTERM), ("export", signal.SIGINT),
    ("predict", signal.SIGINT),  # SIGTERM of predict: tests/test_output_failures.py
]


@pytest.mark.slow
@pytest.mark.parametrize("command, sig", SIGNALLED, ids=[f"{c}-{s.name}" for c, s in SIGNALLED])
def test_a_signal_while_writing_leaves_the_output_absent_or_whole(command, sig, sample_data, model_folder, tmp_path):
    """The signal is sent as soon as the command's temporary file or staging folder appears beside
    its output (polled every 2 ms): the output is then absent or complete, no temporary is left,
    the exit is 130/143 with one line and no traceback, and a rerun completes."""
    data = sample_data("multiclass")
    model = model_folder("multiclass")
    work = tmp_path / "out"
    work.mkdir()
    many = _many_lines(data, tmp_path / "many.jsonl", {"predict": 400, "evaluate": 800}.get(command, 3000))
    if command == "convert":
        many = _many_lines(sample_data("image_object_detection"), tmp_path / "boxes.jsonl", 3000)
        out, valid = work / "coco.json", lambda p: _valid_json(p, "images")
        args = ["convert", "--from", "jsonl", "--to", "coco", many, "-o", out]
    elif command == "evaluate":
        out, valid = work / "metrics.json", json_loads
        args = ["evaluate", "--model", model, "--data", many, "--output", out, "--plots", work / "plots"]
    elif command == "export":
        out, valid = work / "onnx", _valid_onnx
        args = ["export", "--model", model, "--format", "onnx", "-o", out]
    else:
        out, valid = work / "preds.jsonl", lambda p: [json_loads_line(x) for x in p.read_text().splitlines()]
        args = ["predict", "--model", model, many, "--output", out]

    proc = _start(*args)
    try:
        seen = _wait_for(lambda: bool(_temporaries_or_staging(work)), proc, timeout=120, poll=0.002)
        if proc.poll() is None:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    interrupted, left = proc.returncode != 0, out.exists()
    assert proc.returncode in (0, 128 + sig), err
    assert "Traceback" not in err, err
    assert _temporaries_or_staging(work) == []
    if left:  # the final name: absent, or whole
        valid(out)
    if interrupted:
        assert seen, "interrupted before it began writing: the test tried nothing"

    # A command that finished before the signal came left its output; convert then refuses to
    # replace it without --force (the others replace their output file).
    again = _run(*args, *(["--force"] if command == "convert" and left else []))
    assert again.returncode == 0, again.stderr
    valid(out)
    assert _temporaries_or_staging(work) == []
    print(f"{command} {sig.name}: temporary seen {seen}, interrupted {interrupted}, output left {left}")


def json_loads(path: Path):
    import json

    return json.loads(path.read_text())


def json_loads_line(line: str):
    import json

    return json.loads(line)


# ---- a full disk: a real size-limited file system ----

@pytest.fixture()
def small_disk(tmp_path):
    """``small_disk(size)`` -> a folder on a fresh tmpfs of that size (mount needs root: CI and
    this machine run as root; skipped, with the reason, where mounting is not permitted)."""
    mounted = []

    def make(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Fill the file system holding ``folder`` to the last byte, as another program writing there
    would; returns the folder of filler files (delete it to free the space)."""
    fillers = folder / "filler"
    fillers.mkdir()
    for size in (2**20, 4096, 1):
        for index in range(10**6):
            try:
                with open(fillers / f"{size}-{index}.bin", "wb") as handle:
                    handle.write(b"\0" * size)
            except OSError:
                break
    return fillers


def _one_error_line(err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("visionml ") and "error" in line]
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], err
    return errors[0]


@pytest.mark.slow
def test_a_disk_that_fills_during_training_is_one_error_and_keeps_the_last_checkpoint(sample_data, small_disk):
    data = sample_data("multiclass")
    run = small_disk("150m") / "run"  # room for last.pt (18 MB) twice, the model and the small files
    epochs = 40  # 0.2 s each: the disk fills while the run is under way
    cmd = [*_train_cmd(data, run, epochs, f"checkpoint_frequency={epochs}"), "--model-name", "mobilenet_v3_small"]
    proc = _start(*cmd)
    try:
        assert _wait_for(lambda: (run / "checkpoints/last.pt").is_file(), proc), proc.communicate()[1]
        filler = _fill(run.parent)  # the disk fills while later epochs run
        _, err = proc.communicate(timeout=180)
    finally:
        _stop(proc)
    assert proc.returncode == 1, err
    line = _one_error_line(err, "No space left on device", str(run))
    state = _checkpoint(run / "checkpoints/last.pt")  # the earlier checkpoint, whole
    assert 1 <= state["epoch"] < epochs and not state["finished"]
    assert _temporaries(run) == []
    _assert_every_final_file_whole(run)  # last.pt and the best epoch's model folder, if written

    shutil.rmtree(filler)  # space again: the run resumes from that checkpoint and finishes
    resumed = _run("train", "--resume", "--output", run)
    assert resumed.returncode == 0, resumed.stderr
    assert _checkpoint(run / "checkpoints/last.pt")["finished"]
    print(f"disk full during training: {line}")


def _export_on_a_full_disk(fmt, model_folder, small_disk) -> tuple[str, Path]:
    model = model_folder("multiclass")
    disk = small_disk("2m")  # the tiny resnet18's weights alone are 45 MB
    out = disk / fmt
    done = _run("export", "--model", model, "--format", fmt, "-o", out)
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr, "No space left on device", f"cannot write {disk}", "free some space")
    assert not out.exists()
    assert sorted(p.name for p in disk.iterdir()) == [], "the export left something on the full disk"
    return line, out


@pytest.mark.parametrize("fmt", ["onnx", "mlflow"])
def test_a_full_disk_during_export_is_one_error_and_leaves_nothing(fmt, model_folder, small_disk):
    """One line naming the output (not the exporter's failure, nor a staging folder's name that is
    gone when the user reads it), exit 1, nothing left on the disk."""
    line, out = _export_on_a_full_disk(fmt, model_folder, small_disk)
    assert f"cannot write {out}" in line and ".tmp" not in line and "export failed" not in line, line
    print(f"disk full during export: {line}")


# ---- the server under overload ----

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/PID/status")


def _score_body(image: bytes) -> bytes:
    import base64
    import json

    return json.dumps({"input_data": {"columns": ["image"], "data": [base64.b64encode(image).decode()]}}).encode()


def _probs(answer) -> list[float]:
    answer = answer[0] if isinstance(answer, list) else answer
    return answer["probs"]


@pytest.mark.slow
def test_an_overloaded_server_refuses_with_retry_after_and_never_mixes_up_answers(model_folder):
    """16 client threads against --max-queue 2 for a bounded 320 requests over 16 distinct images:
    refusals are 503 with Retry-After, every 200 is the offline prediction of its own image, the
    server's memory stays flat, and afterwards every request is served."""
    import threading

    import httpx

    from tests.support import ServeProcess, image_bytes
    from visionml.predict.predictor import Predictor

    model = model_folder("multiclass")
    images = [image_bytes(width=64 + 8 * i, height=48 + 4 * i, seed=i) for i in range(16)]
    offline = [Predictor.from_folder(model).predict([img])[0]["probs"] for img in images]
    nearest_other = min(max(abs(a - b) for a, b in zip(offline[i], offline[j]))
                        for i in range(16) for j in range(16) if i != j)
    assert nearest_other > 1e-3, "two images predict alike: a mix-up would not show"

    server = ServeProcess(model, "--max-queue", "2", "--max-batch", "2", "--device", "cpu")
    try:
        server.wait_ready()
        with httpx.Client(timeout=60) as client:  # warm up: the first batches allocate what they keep
            for img in images:
                assert client.post(server.url + "/score", content=_score_body(img)).status_code == 200
        before = _rss_kb(server.proc.pid)

        results, lock = [], threading.Lock()

        def client_loop(worker: int):
            with httpx.Client(timeout=60) as client:
                for k in range(20):
                    index = (worker * 5 + k) % len(images)
                    r = client.post(server.url + "/score", content=_score_body(images[index]))
                    with lock:
                        results.append((index, r.status_code, r.headers.get("retry-after"),
                                        r.json() if r.status_code == 200 else r.text))

        threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "clients still waiting after 300 s"
        after = _rss_kb(server.proc.pid)

        statuses = [status for _, status, _, _ in results]
        assert len(results) == 320 and set(statuses) <= {200, 503}, sorted(set(statuses))
        refused = [r for r in results if r[1] == 503]
        served = [r for r in results if r[1] == 200]
        assert refused, "the queue never filled: the overload was not tried"
        assert all(retry and int(retry) >= 1 for _, _, retry, _ in refused)
        for index, _, _, answer in served:  # its own image's answer, not a neighbour's
            assert max(abs(a - b) for a, b in zip(_probs(answer), offline[index])) < 1e-4, index
        assert after <= before * 1.25 + 50_000, f"RSS grew from {before} kB to {after} kB"

        with httpx.Client(timeout=60) as client:  # full service after the load
            for index, img in enumerate(images):
                r = client.post(server.url + "/score", content=_score_body(img))
                assert r.status_code == 200, r.text
                assert max(abs(a - b) for a, b in zip(_probs(r.json()), offline[index])) < 1e-4
        print(f"overload: {len(results)} requests, {len(served)} served (all checked), {len(refused)} refused 503 "
              f"with Retry-After, answers lost or mixed: 0, RSS {before} -> {after} kB")
    finally:
        server.stop()
