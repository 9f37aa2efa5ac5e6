"""`visionml predict --engine ray`: on a local Ray cluster (a head and a worker node, loopback only)
the same JSON lines, skipped images and side files as the single-process path (multi-class,
detection with tiles, segmentation with its mask files); without Ray, an error that names the
install line."""

from __future__ import annotations

import math
import sys

import orjson
import pytest

from visionml.cli import main
from visionml.tasks import DETECTION, MULTICLASS, SEGMENTATION

from tests.support import free_port, image_bytes

# Each node as small as Ray takes: one CPU (one scoring worker), Ray's smallest object store.
RAY_NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024}


def test_without_ray_the_engine_names_the_install_line(model_dirs, jpeg_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # its import now raises, installed or not
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(jpeg_file), "-o", str(out),
                 "--engine", "ray"]) == 1
    err = capsys.readouterr().err
    assert "--engine ray needs the optional ray extra: pip install 'visionml[ray]'" in err
    assert "Traceback" not in err and not out.exists()


def test_cluster_options_without_the_ray_engine_are_a_usage_error(model_dirs, jpeg_file, capsys):
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(jpeg_file), "--workers", "2"]) == 2
    assert "--address and --workers apply to --engine ray" in capsys.readouterr().err


def test_an_address_where_no_cluster_listens_is_refused_at_once(model_dirs, jpeg_file, tmp_path, capsys):
    """Ray itself would retry such an address for minutes."""
    pytest.importorskip("ray", reason="needs the optional ray extra: pip install 'visionml[ray]'")
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(jpeg_file), "-o", str(out),
                 "--engine", "ray", "--address", address]) == 1
    err = capsys.readouterr().err
    assert f"--address {address}: cannot connect to a Ray cluster there" in err and "ray start --head" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def ray_address():
    """A head and a worker node on loopback, stopped at the end (on failure too)."""
    pytest.importorskip("ray", reason="needs the optional ray extra: pip install 'visionml[ray]'")
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    env = pytest.MonkeyPatch()
    # Ray turns 127.0.0.1 into the machine's outward address unless it runs without a cluster
    # network: so every node, and the command connecting to them, stays on loopback.
    env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # ray was imported before the variable was set
    env.setenv("OMP_NUM_THREADS", "1")
    cluster = Cluster()
    try:
        cluster.add_node(**RAY_NODE, include_dashboard=False)
        cluster.add_node(**RAY_NODE)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()
        env.undo()


def predict(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``visionml predict ARGV``: the exit code and the images it reported skipping."""
    code = main(["predict", *argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("visionml predict: skipped")]


def assert_same(ours, theirs, where="") -> None:
    """Equal, numbers within 1e-5 (the workers run torch with one thread, this process with two)."""
    if isinstance(ours, float) or isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=0, abs_tol=1e-5), f"{where}: {ours} != {theirs}"
    elif isinstance(ours, dict):
        assert isinstance(theirs, dict) and ours.keys() == theirs.keys(), f"{where}: {ours} != {theirs}"
        for key in ours:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), f"{where}: {ours} != {theirs}"
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{k}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def assert_same_lines(ray_file, local_file) -> None:
    ours, theirs = ray_file.read_bytes().splitlines(), local_file.read_bytes().splitlines()
    assert len(ours) == len(theirs) > 0
    for number, (a, b) in enumerate(zip(ours, theirs), 1):
        assert_same(orjson.loads(a), orjson.loads(b), f"{ray_file.name}:{number}")


# Beside the plain output, what else a task's scoring can take: tiles for a detector; for instance
# segmentation the mask files and the labeled data set (sinks the driver runs on the workers' rows).
EXTRA = {
    DETECTION: ["--set", "tile_grid_size=2x1", "--set", "tile_overlap_ratio=0.25"],
    SEGMENTATION: ["--set", "export_as_image=true", "--set", "image_type=png"],
}


# Multi-label is left out: the Ray path shares everything with multi-class but the activation, which
# runs in the same predictor code as the local path (tests/scoring covers it per task); each case
# here costs ~30 s of Ray workers starting and loading the model.
@pytest.mark.slow
@pytest.mark.parametrize("task", [MULTICLASS, DETECTION, SEGMENTATION])
def test_ray_scores_like_one_process(task, ray_address, model_dirs, sample_data, tmp_path, capsys):
    data = sample_data(task)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(image_bytes()[:300])
    inputs = [str(data["val"]), str(broken), str(data["train"]), str(tmp_path / "missing.jpg")]
    runs = {}
    for engine, extra in (("local", []), ("ray", ["--address", ray_address, "--workers", "2"])):
        folder = tmp_path / engine
        folder.mkdir()
        labeled = ["--labeled-dataset", str(folder / "labeled.jsonl")] if task == SEGMENTATION else []
        runs[engine] = predict(["--model", str(model_dirs[task]), *inputs, "-o", str(folder / "preds.jsonl"),
                                "--batch-size", "3", "--device", "cpu", "--engine", engine,
                                *EXTRA.get(task, []), *labeled, *extra], capsys)
    assert runs["ray"] == runs["local"]
    code, skipped = runs["ray"]
    assert code == 1 and len(skipped) == 2  # the missing path (found first), then the broken image
    assert "missing.jpg: no such file" in skipped[0] and "broken.jpg: not a readable image" in skipped[1]
    assert_same_lines(tmp_path / "ray" / "preds.jsonl", tmp_path / "local" / "preds.jsonl")
    assert len((tmp_path / "ray" / "preds.jsonl").read_bytes().splitlines()) == 10  # every readable image
    if task == SEGMENTATION:
        assert_same_lines(tmp_path / "ray" / "labeled.jsonl", tmp_path / "local" / "labeled.jsonl")
        masks = {engine: sorted(p.relative_to(tmp_path / engine).as_posix()
                                for p in (tmp_path / engine / "masks").rglob("*.png")) for engine in runs}
        assert masks["ray"] == masks["local"] and masks["ray"]


@pytest.mark.slow
def test_more_workers_than_the_cluster_holds_is_refused(ray_address, model_dirs, jpeg_file, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model_dirs[MULTICLASS]), str(jpeg_file), "-o", str(out),
                 "--engine", "ray", "--address", ray_address, "--workers", "3"]) == 1
    assert "--workers 3: the Ray cluster has 2 CPU(s)" in capsys.readouterr().err and not out.exists()


def _nan_head(model):
    import torch

    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.fill_(float("nan"))


@pytest.mark.slow
def test_a_worker_failure_stops_the_run_with_its_message(ray_address, model_folder, jpeg_file, tmp_path, capsys):
    """What stops one process (here a network whose outputs are NaN) stops the Ray run too, with the
    worker's message and no output file: never a file missing those images."""
    model = model_folder(MULTICLASS, adjust=_nan_head)
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(model), str(jpeg_file), "-o", str(out), "--engine", "ray",
                 "--address", ray_address, "--workers", "1"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("visionml predict: error:")]
    # One line, the worker's own message (Ray's logging may print its own noise beside it).
    assert len(errors) == 1 and "on Ray node" in errors[0], errors
    assert "the model's output is not finite (NaN or infinity)" in errors[0] and "RayTaskError" not in errors[0]
    assert not out.exists()
