"""--precision fp32|bf16 and --threads N on predict, evaluate and serve (issue 21 items 2 and 4).

bf16 runs where the CPU computes it natively and as fp32 elsewhere, said once, as training does
(train/loop.resolve_precision). The CI machine is AVX2-only, so native bf16 is simulated by
patching ``bf16_available``: PyTorch then emulates it, slower but with bf16's rounding, which is
what the tests look for."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import torch

from visionml.cli import main
from visionml.explain import methods
from visionml.predict import threads as threads_module
from visionml.tasks import DETECTION, MULTICLASS

from tests.support import ServeProcess, image_bytes

NOTE = "no native bf16"


@pytest.fixture()
def torch_threads():
    """--threads sets PyTorch's count for the process, as a command owns its process: put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for seed, (w, h) in enumerate([(120, 90), (90, 120), (200, 150)]):
        (folder / f"img{seed}.jpg").write_bytes(image_bytes(w, h, seed=seed))
    return folder


def predict(capsys, model_dir, images, out, *extra) -> tuple[int, list[dict], str]:
    code = main(["predict", "--model", str(model_dir), str(images), "-o", str(out), *extra])
    err = capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, sorted(rows, key=lambda r: r["filename"]), err


def probs(rows) -> np.ndarray:
    return np.array([r["probs"] for r in rows])


def test_bf16_without_native_support_runs_fp32_and_says_so_once(model_dirs, images, tmp_path, capsys,
                                                                 monkeypatch, torch_threads):
    monkeypatch.setattr(methods, "bf16_available", lambda device: False)
    _, fp32, _ = predict(capsys, model_dirs[MULTICLASS], images, tmp_path / "fp32.jsonl")
    code, bf16, err = predict(capsys, model_dirs[MULTICLASS], images, tmp_path / "bf16.jsonl", "--precision", "bf16")
    assert code == 0 and len(bf16) == 3
    assert err.count(NOTE) == 1 and "running fp32" in err
    np.testing.assert_array_equal(probs(bf16), probs(fp32))


@pytest.mark.parametrize("task", [MULTICLASS, DETECTION])
def test_bf16_where_native_runs_bf16(model_dirs, images, tmp_path, capsys, monkeypatch, torch_threads, task):
    monkeypatch.setattr(methods, "bf16_available", lambda device: True)
    _, fp32, _ = predict(capsys, model_dirs[task], images, tmp_path / "fp32.jsonl")
    code, bf16, err = predict(capsys, model_dirs[task], images, tmp_path / "bf16.jsonl", "--precision", "bf16")
    assert code == 0 and NOTE not in err and len(bf16) == len(fp32) == 3
    if task == MULTICLASS:
        difference = np.abs(probs(bf16) - probs(fp32)).max()
        assert 0 < difference < 0.05  # bf16's 8-bit mantissa: close, not equal
    else:
        first = [(b["label"], b["score"]) for b in bf16[0]["boxes"][:3]]
        assert first and all(isinstance(score, float) for _, score in first)
        assert [b["box"] for b in bf16[0]["boxes"]] != [b["box"] for b in fp32[0]["boxes"]]


def test_evaluate_bf16_reports_the_metric_in_both_precisions(model_dirs, sample_data, tmp_path, capsys,
                                                              monkeypatch, torch_threads):
    monkeypatch.setattr(methods, "bf16_available", lambda device: True)
    data = sample_data(MULTICLASS)
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(model_dirs[MULTICLASS]), "--data", str(data["val"]), "-o", str(out),
                 "--precision", "bf16", "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    metrics = json.loads(out.read_text())
    ran = metrics["inference_precision"]
    assert ran["name"] == "bf16" and ran["bf16"] == metrics["accuracy"]
    assert ran["change"] == pytest.approx(ran["bf16"] - ran["fp32"])
    assert f"accuracy in bf16: {ran['bf16']:.4f}, in fp32: {ran['fp32']:.4f}" in printed


def test_evaluate_bf16_without_native_support_notes_the_fallback(model_dirs, sample_data, tmp_path, capsys,
                                                                  monkeypatch, torch_threads):
    monkeypatch.setattr(methods, "bf16_available", lambda device: False)
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(model_dirs[MULTICLASS]), "--data", str(sample_data(MULTICLASS)["val"]),
                 "-o", str(out), "--precision", "bf16"])
    captured = capsys.readouterr()
    metrics = json.loads(out.read_text())
    assert code == 0 and "inference_precision" not in metrics
    assert sum(NOTE in n for n in metrics["notes"]) == 1
    assert (captured.out + captured.err).count(NOTE) == 1


def test_onnx_backend_refuses_bf16(model_dirs, images, tmp_path, capsys, torch_threads):
    code, rows, err = predict(capsys, model_dirs[MULTICLASS], images, tmp_path / "p.jsonl", "--backend", "onnx",
                              "--precision", "bf16")
    assert code == 2 and not rows
    assert "--precision bf16 is for --backend torch" in err and "--quantize int8" in err


@pytest.mark.parametrize("arguments, message", [
    (["--threads", "0"], "argument --threads: must be at least 1"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
], ids=["threads-0", "fp8"])
def test_bad_values_are_usage_errors(model_dirs, images, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(model_dirs[MULTICLASS]), str(images), *arguments])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_ray_engine_refuses_threads_its_workers_would_not_honour(model_dirs, images, capsys):
    args = ["predict", "--model", str(model_dirs[MULTICLASS]), str(images), "--engine", "ray", "--threads", "2"]
    assert main(args) == 2
    assert "--threads applies to --engine local" in capsys.readouterr().err


@pytest.fixture(scope="module")
def onnx_dir(model_dirs, tmp_path_factory):
    from visionml.export import export_model

    return export_model(model_dirs[MULTICLASS], tmp_path_factory.mktemp("onnx") / "out", "onnx")


def test_threads_set_both_runtimes(model_dirs, onnx_dir, images, tmp_path, capsys, torch_threads):
    from visionml.predict import Predictor

    torch.set_num_threads(2)
    code, rows, _ = predict(capsys, onnx_dir, images, tmp_path / "p.jsonl", "--backend", "onnx", "--threads", "1")
    assert code == 0 and len(rows) == 3
    assert torch.get_num_threads() == 1  # the command's process: PyTorch's pool (preprocessing, torch backend)
    predictor = Predictor.from_folder(onnx_dir, backend="onnx", threads=1)
    assert predictor.backend.session.get_session_options().intra_op_num_threads == 1


def test_default_threads_keep_within_a_cpu_quota(tmp_path, monkeypatch, torch_threads):
    torch.set_num_threads(2)
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads_module, "_CGROUP_V2", quota)
    monkeypatch.setattr(threads_module, "_affinity_cpus", lambda: 2)
    quota.write_text("max 100000\n")
    assert threads_module.cpu_quota() is None and threads_module.default_threads() == 2
    quota.write_text("50000 100000\n")  # docker run --cpus 0.5
    assert threads_module.cpu_quota() == 0.5 and threads_module.default_threads() == 1
    quota.write_text("150000 100000\n")
    assert threads_module.default_threads() == 2
    monkeypatch.setattr(threads_module, "_affinity_cpus", lambda: 1)  # taskset -c 0
    assert threads_module.default_threads() == 1


def test_serve_with_threads_and_precision(model_dirs):
    server = ServeProcess(model_dirs[MULTICLASS], "--threads", "1", "--precision", "bf16")
    try:
        server.wait_ready()
        body = {"input_data": {"columns": ["image"], "data": [base64.b64encode(image_bytes()).decode()]}}
        response = httpx.post(server.url + "/score", json=body, timeout=60)
        assert response.status_code == 200 and len(response.json()[0]["probs"]) == 4
        native = methods.bf16_available(torch.device("cpu"))
        assert (NOTE in server.log()) is not native
        assert f"torch backend, {'bf16' if native else 'fp32'}, 1 thread(s))" in server.log()
    finally:
        server.stop()
