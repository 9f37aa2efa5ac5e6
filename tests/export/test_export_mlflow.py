"""MLflow export: the pyfunc model folder, loaded with mlflow.pyfunc and served with `mlflow models
serve`, answers a DataFrame of base64 images with visionml's objects; mlflow is optional."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import visionml
from visionml.cli import main
from visionml.tasks import DETECTION, MULTICLASS

from tests.support import LABELS, free_port

from .helpers import assert_same_detections

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'visionml[mlflow]')")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def mlflow_dirs(model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    out = {}
    for task in (MULTICLASS, DETECTION):
        out[task] = root / task
        assert main(["export", "--model", str(model_dirs[task]), "--format", "mlflow", "-o", str(out[task])]) == 0
    return out


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def test_export_writes_a_pyfunc_model(mlflow_dirs):
    folder = mlflow_dirs[MULTICLASS]
    assert {"MLmodel", "requirements.txt", "python_env.yaml", "visionml_model.py"} <= {p.name for p in folder.iterdir()}
    assert sorted(p.name for p in (folder / "artifacts" / "model").iterdir()) == ["visionml.json", "weights.safetensors"]
    info = mlflow.models.Model.load(str(folder))
    assert "python_function" in info.flavors
    assert info.signature.inputs.input_names() == ["image"]
    assert any(r.startswith("visionml[mlflow]==") for r in (folder / "requirements.txt").read_text().split())
    assert not list(folder.rglob("*.pkl"))  # models from code: nothing pickled


def test_pyfunc_predict_takes_base64_dataframe_and_returns_visionml_objects(mlflow_dirs, model_dirs, sample_images):
    model = mlflow.pyfunc.load_model(str(mlflow_dirs[MULTICLASS]))
    items = [b64(sample_images[0]), base64.encodebytes(sample_images[1].read_bytes()).decode(),
             json.dumps({"image_base64": b64(sample_images[2]), "model_explainability": False})]
    result = model.predict(pd.DataFrame({"image": items}))
    assert isinstance(result, pd.DataFrame)
    records = result.to_dict(orient="records")
    expected = visionml.load_model(model_dirs[MULTICLASS]).predict([p.read_bytes() for p in sample_images[:3]])
    assert [r["filename"] for r in records] == [e["filename"] for e in expected]
    for got, want in zip(records, expected):
        assert list(got) == ["filename", "probs", "labels", "visualizations", "attributions"]
        assert got["labels"] == LABELS and got["visualizations"] is None
        np.testing.assert_allclose(got["probs"], want["probs"], atol=1e-6, rtol=0)


EXPLAIN = {"model_explainability": True, "xai_parameters": {"xai_algorithm": "guided_backprop",
                                                           "visualization_style": "overlay", "attributions": True}}


def test_rows_without_an_explanation_answer_none_not_nan(mlflow_dirs, sample_images):
    """pandas would make a missing string NaN, which MLflow's JSON writes as NaN (not JSON) or null
    only by luck; every column is of dtype object, so the row that asked for nothing gets None."""
    model = mlflow.pyfunc.load_model(str(mlflow_dirs[MULTICLASS]))
    rows = [json.dumps({"image_base64": b64(sample_images[0]), **EXPLAIN}),
            json.dumps({"image_base64": b64(sample_images[1]), "model_explainability": "False"}),
            json.dumps({"image_base64": b64(sample_images[2])})]  # takes the first row's settings, as Azure's
    records = model.predict(pd.DataFrame({"image": rows})).to_dict(orient="records")
    assert isinstance(records[0]["visualizations"], str) and np.asarray(records[0]["attributions"]).ndim == 3
    assert records[1]["visualizations"] is None and records[1]["attributions"] is None
    assert isinstance(records[2]["visualizations"], str)


def test_requirements_are_what_the_mlflow_extra_installs(mlflow_dirs):
    """requirements.txt pins visionml[mlflow], each package of that extra and the torch it ran on, each
    at the version installed here and within the range pyproject.toml asks for."""
    import re
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    pyproject = Path(visionml.__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("visionml is not run from its source tree")
    extra = [Requirement(r) for r in tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["mlflow"]]
    lines = (mlflow_dirs[MULTICLASS] / "requirements.txt").read_text().split()
    pins = dict(re.fullmatch(r"(.+?)==(.+)", line).groups() for line in lines)
    assert list(pins) == ["visionml[mlflow]", *[r.name for r in extra], "torch", "torchvision"]
    assert pins["visionml[mlflow]"] == visionml.__version__
    for requirement in extra:
        assert pins[requirement.name] == metadata.version(requirement.name)
        assert requirement.specifier.contains(pins[requirement.name]), requirement


def test_pyfunc_detection_with_settings_fixed_at_export(model_dirs, sample_images, tmp_path):
    out = tmp_path / "det"
    assert main(["export", "--model", str(model_dirs[DETECTION]), "--format", "mlflow", "-o", str(out),
                 "--set", "box_score_threshold=0.05"]) == 0
    records = mlflow.pyfunc.load_model(str(out)).predict(pd.DataFrame({"image": [b64(sample_images[0])]}))
    records = records.to_dict(orient="records")
    expected = visionml.load_model(model_dirs[DETECTION], box_score_threshold=0.05).predict([sample_images[0].read_bytes()])
    assert assert_same_detections(expected[0], records[0]) >= 1


def test_pyfunc_bad_input_is_an_mlflow_error(mlflow_dirs):
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(mlflow_dirs[MULTICLASS]))
    with pytest.raises(MlflowException, match="image row 1: not base64"):
        model.predict(pd.DataFrame({"image": [base64.b64encode(b"x" * 8).decode(), "not base64!"]}))
    with pytest.raises(MlflowException, match="image"):
        model.predict(pd.DataFrame({"picture": ["abc"]}))


def test_missing_mlflow_says_how_to_install_it(model_dirs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    out = tmp_path / "m"
    assert main(["export", "--model", str(model_dirs[MULTICLASS]), "--format", "mlflow", "-o", str(out)]) == 1
    assert "pip install 'visionml[mlflow]'" in capsys.readouterr().err
    assert not out.exists()


def test_export_needs_the_weights(onnx_dirs, tmp_path, capsys):
    assert main(["export", "--model", str(onnx_dirs[MULTICLASS]), "--format", "mlflow", "-o", str(tmp_path / "m")]) == 1
    assert "weights.safetensors: not found" in capsys.readouterr().err


def test_export_refuses_to_mix_into_another_folder_but_replaces_its_own(model_dirs, mlflow_dirs, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", "--model", str(model_dirs[MULTICLASS]), "--format", "mlflow", "-o", str(busy)]) == 1
    assert "not an MLflow model" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"
    again = shutil.copytree(mlflow_dirs[MULTICLASS], tmp_path / "again")
    (again / "stale.txt").write_text("old")
    assert main(["export", "--model", str(model_dirs[MULTICLASS]), "--format", "mlflow", "-o", str(again)]) == 0
    assert not (again / "stale.txt").exists() and (again / "MLmodel").is_file()


def _mlflow_cli() -> str | None:
    # The CLI of the mlflow this interpreter imports; its server runs `uvicorn` from the same folder.
    here = str(Path(sys.executable).parent)
    return shutil.which("mlflow", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


def test_mlflow_models_serve_answers_invocations(mlflow_dirs, model_dirs, sample_images, tmp_path):
    import httpx

    cli = _mlflow_cli()
    if cli is None:
        pytest.skip("the `mlflow` command is not installed next to this Python (pip install 'visionml[mlflow]')")
    port = free_port()
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(cli).parent), os.environ.get("PATH", "")]),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "mlflow-serve.log", "wb")
    # Its own session, so that the server and the uvicorn worker it starts are stopped together.
    proc = subprocess.Popen([cli, "models", "serve", "-m", str(mlflow_dirs[MULTICLASS]), "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(proc, url + "/ping", tmp_path / "mlflow-serve.log")
        rows = [[b64(sample_images[0])], [json.dumps({"image_base64": b64(sample_images[1]), **EXPLAIN})]]
        body = {"dataframe_split": {"columns": ["image"], "data": rows}}
        response = httpx.post(url + "/invocations", json=body, timeout=120)
        bad = httpx.post(url + "/invocations", json={"dataframe_split": {"columns": ["image"], "data": [["%%%"]]}},
                         timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = visionml.load_model(model_dirs[MULTICLASS]).predict([sample_images[0].read_bytes()])
    assert len(predictions) == 2 and predictions[0]["labels"] == LABELS
    np.testing.assert_allclose(predictions[0]["probs"], expected[0]["probs"], atol=1e-6, rtol=0)
    # JSON null (not NaN) where no explanation was asked for; the explained row has its PNG
    assert '"visualizations": null' in response.text.replace('":null', '": null')
    assert predictions[0]["visualizations"] is None and predictions[0]["attributions"] is None
    assert isinstance(predictions[1]["visualizations"], str)
    assert bad.status_code == 400 and "not base64" in bad.text


def _wait_for(proc, url: str, log: Path, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"mlflow models serve not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")
