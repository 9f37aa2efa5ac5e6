"""MLflow export: a visionml model folder as an MLflow pyfunc model, the way Azure AutoML ships
its ``mlflow-model`` output. ``mlflow models serve -m OUT --env-manager local`` and Azure ML's
MLflow deployments serve it; ``mlflow.pyfunc.load_model(OUT).predict(df)`` scores a DataFrame.

The model folder is stored as an MLflow artifact and loaded by ``visionml.load_model``; the
Python side is ``pyfunc.VisionMLPyfunc``, built by a three-line models-from-code script, so the
saved model holds no pickled objects.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from ..errors import VisionMLError

ENTRY_SCRIPT = "visionml_model.py"
_ENTRY_CODE = '''\
# Written by `visionml export --format mlflow`. MLflow runs this file to build the model
# ("models from code"); the weights are the visionml model folder in artifacts/model.
import mlflow

from visionml.export.pyfunc import VisionMLPyfunc

mlflow.models.set_model(VisionMLPyfunc())
'''


def require_mlflow():
    """The mlflow module, or a VisionMLError saying how to install the optional extra."""
    try:
        import mlflow
        import mlflow.pyfunc  # noqa: F401
        import pandas  # noqa: F401
    except ImportError as exc:
        raise VisionMLError(f"MLflow export needs the optional mlflow extra ({exc.name or 'mlflow'} is not "
                            f"installed): pip install 'visionml[mlflow]'") from None
    return mlflow


def export_mlflow(model_dir, out_dir, overrides: dict | None = None) -> Path:
    """Write ``model_dir`` as an MLflow pyfunc model folder ``out_dir``.

    ``overrides`` (inference settings, checked now) are stored in the MLmodel's ``model_config``
    and applied whenever the model is loaded."""
    mlflow = require_mlflow()
    from ..modelio import WEIGHTS, read_manifest
    from ..predict.settings import resolve_settings
    from ..fileio import replace_folder, staging_folder

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    manifest = read_manifest(model_dir)
    if not (model_dir / WEIGHTS).is_file():
        raise VisionMLError(f"{model_dir / WEIGHTS}: not found; MLflow export needs the model folder with its "
                            f"weights (RUN/model), not an ONNX export")
    resolve_settings(manifest, overrides)  # bad keys or values fail here, not at serving time
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "MLmodel").is_file():
        raise VisionMLError(f"-o {out_dir}: the folder exists and is not an MLflow model; pass a new folder")
    with staging_folder(out_dir) as tmp:
        entry = tmp / ENTRY_SCRIPT
        entry.write_text(_ENTRY_CODE, encoding="utf-8")
        with warnings.catch_warnings():
            # MLflow suggests type hints and an input example; the explicit signature covers both.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
            _save(mlflow, tmp, entry, model_dir, overrides, manifest)
        replace_folder(tmp / "model", out_dir)  # a previous MLflow export is replaced whole: no stale files
    return out_dir


def _save(mlflow, tmp: Path, entry: Path, model_dir: Path, overrides, manifest: dict) -> None:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from .pyfunc import IMAGE_COLUMN

    mlflow.pyfunc.save_model(
        path=str(tmp / "model"), python_model=str(entry), artifacts={"model": str(_stage_model(model_dir, tmp))},
        signature=ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN)])),
        model_config={"backend": "torch", "overrides": dict(overrides or {})},
        pip_requirements=_requirements(), metadata={"visionml_task": manifest["task"]})


def _stage_model(model_dir: Path, tmp: Path) -> Path:
    """The model folder's own files (manifest, weights, an ONNX export if there is one) in a
    folder named ``model``, so the artifact is always ``artifacts/model`` and nothing else that
    happens to sit in the model folder is copied."""
    from ..modelio import MANIFEST, WEIGHTS

    staged = tmp / "source" / "model"
    staged.mkdir(parents=True)
    for name in (MANIFEST, WEIGHTS, "model.onnx", "labels.json"):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, staged / name)
    return staged


def _requirements() -> list[str]:
    """What a fresh serving environment needs, pinned to what exported the model: visionml with its
    mlflow extra, each package that extra installs (mlflow-skinny, pandas: named here, MLflow adds no
    full ``mlflow`` of its own) and the torch it ran on. MLflow's virtualenv manager installs these;
    ``--env-manager local`` ignores them."""
    import torch
    import torchvision

    from .. import __version__

    pins = [f"visionml[mlflow]=={__version__}"]
    pins += [f"{name}=={_installed(name)}" for name in mlflow_extra()]
    return pins + [f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}"]


# pyproject.toml's [project.optional-dependencies] mlflow, for a visionml run from a source tree
# without installed metadata; an installed visionml's own metadata is read first.
_MLFLOW_EXTRA = ("mlflow-skinny", "pandas")


def mlflow_extra() -> tuple[str, ...]:
    """The distributions ``pip install 'visionml[mlflow]'`` adds, by name."""
    import re
    from importlib import metadata

    try:
        requires = metadata.requires("visionml") or []
    except metadata.PackageNotFoundError:
        return _MLFLOW_EXTRA
    names = [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in requires if re.search(r"extra\s*==\s*.mlflow.", r)]
    return tuple(names) or _MLFLOW_EXTRA


def _installed(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise VisionMLError(f"MLflow export needs {name}, which the mlflow extra installs: "
                            f"pip install 'visionml[mlflow]'") from None
