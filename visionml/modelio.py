"""The model folder: ``visionml.json`` (manifest) + ``weights.safetensors``. Nothing is pickled.

Loading rebuilds the network by registry name from the manifest and fills it from the
safetensors file, so a model folder can come from anyone without running their code. The
manifest records the SHA-256 of the weights (``"sha256": {"weights.safetensors": HEX}``), checked
on load, so a damaged copy fails loudly instead of answering NaN; its values are checked with the
hyperparameters' own types and ranges, so an edited manifest cannot make predict or serve
allocate gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path

from .errors import UsageError, VisionMLError
from .fileio import atomic_path, json_bytes, write_error
from .tasks import TASKS, get_task

FORMAT_VERSION = 1
MANIFEST = "visionml.json"
WEIGHTS = "weights.safetensors"

# Each preprocessing value is checked as the hyperparameter it comes from.
PREPROCESSING_PARAMS = {"resize_size": "validation_resize_size", "crop_size": "validation_crop_size",
                        "min_size": "min_size", "max_size": "max_size"}


def make_manifest(task, model_name: str, labels: list[str], hp) -> dict:
    """The manifest for a model trained with resolved hyperparameters ``hp`` on ``labels`` (in order):
    ``preprocessing`` is the model's data config (how an image becomes its input), ``inference`` the
    deployment settings that apply after the network (thresholds, caps)."""
    from .config import inference_keys
    from .data.dataconfig import resolve_data_config
    from .models.registry import get_spec

    task = get_task(task)
    spec = get_spec(model_name, task)
    preprocessing = resolve_data_config(spec.name, hp).to_manifest()
    sizes = set(PREPROCESSING_PARAMS.values()) | {"validation_batch_size"}
    inference = {k: _jsonable(hp[k]) for k in inference_keys(task) if k not in sizes}
    hp = _jsonable(dict(hp))
    return {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "model_name": spec.name,
        "labels": list(labels),
        "preprocessing": preprocessing,
        "inference": inference,
        "hyperparameters": hp,
        "versions": _versions(spec.source),
    }


def save_model_folder(folder, model, manifest: dict) -> Path:
    """Write the manifest (with the weights' SHA-256) and the weights into ``folder``, each to a
    temporary name then renamed, so a crash never leaves a half-written file under the final name."""
    from safetensors.torch import save

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc) from None
    _check_manifest(manifest, folder / MANIFEST)
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    # How the network was laid out (pretrained detectors use frozen BatchNorm), so that loading
    # rebuilds the same modules; the model carries it from registry.build_model.
    manifest = {**manifest, "build": {"pretrained": bool(getattr(module, "visionml_pretrained", False))}}
    # safetensors refuses shared or non-contiguous storage; clone() gives each tensor its own.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    # Serialised here and written by Python: safetensors' save_file ignores a full disk, and the
    # hash is then of exactly the bytes written.
    data = save(state, metadata={"format": "pt"})
    del state
    manifest = {**manifest, "sha256": {WEIGHTS: hashlib.sha256(data).hexdigest()}}
    manifest_bytes = json_bytes(manifest)
    # Both files are complete under temporary names before either is renamed (weights first), so a
    # failed write leaves the previous pair as it was.
    with atomic_path(folder / MANIFEST) as manifest_tmp, atomic_path(folder / WEIGHTS) as weights_tmp:
        Path(weights_tmp).write_bytes(data)
        Path(manifest_tmp).write_bytes(manifest_bytes)
    return folder


def read_manifest(folder) -> dict:
    """The checked manifest of a model folder; VisionMLError saying what is wrong and where."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VisionMLError(f"{folder}: no such model folder (it should hold {MANIFEST} and {WEIGHTS}, "
                            f"as written by `visionml train` into RUN/model)")
    path = folder / MANIFEST
    if not path.is_file():
        raise VisionMLError(f"{path}: not found; {folder} is not a visionml model folder "
                            f"(pass the model/ folder inside a run folder)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise VisionMLError(f"{path}{where}: not valid JSON ({exc}); the file is damaged: "
                            f"copy the model folder again or retrain") from None
    _check_manifest(manifest, path)
    return manifest


def load_model_folder(folder, device: str = "cpu"):
    """``(model, manifest)``: the network rebuilt by name from the manifest's hyperparameters,
    weights loaded, in eval mode on ``device``."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models.registry import build_model

    folder = Path(folder)
    manifest = read_manifest(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise VisionMLError(f"{weights}: not found; the model folder is incomplete: copy it again or retrain")
    from .predict.settings import resolve_settings

    hp = resolve_settings(manifest)
    pretrained = bool((manifest.get("build") or {}).get("pretrained", False))
    model = build_model(manifest["model_name"], manifest["task"], len(manifest["labels"]), pretrained=pretrained,
                        hp=hp, fetch_weights=False)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise VisionMLError(f"{weights}: not a readable safetensors file ({exc}); copy the model folder "
                            f"again or retrain") from None
    check_sha256(folder, manifest, WEIGHTS)  # a readable file may still hold damaged numbers
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise VisionMLError(f"{weights}: the weights do not fit a {manifest['model_name']} with "
                            f"{len(manifest['labels'])} labels as {folder / MANIFEST} says ({first})") from None
    return model.to(torch.device(device)).eval(), manifest


def file_sha256(path) -> str:
    """The SHA-256 of the file at ``path``, as lowercase hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_sha256(folder, manifest: dict, name: str,
                 remedy: str = "Copy the model folder again from where it was trained, or retrain") -> None:
    """Refuse ``folder/name`` when the manifest records a SHA-256 for it that its bytes do not
    have (the message ends with ``remedy``). A manifest without one (written before visionml
    recorded hashes) is trusted as before."""
    expected = (manifest.get("sha256") or {}).get(name)
    if expected is None:
        return
    path = Path(folder) / name
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise VisionMLError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if actual != expected:
        raise VisionMLError(f"{path}: the file is damaged: its SHA-256 is {actual[:12]}..., but "
                            f"{Path(folder) / MANIFEST} records {expected[:12]}... for it (a partial copy or "
                            f"a failing disk). {remedy}")


def _check_manifest(manifest, path: Path) -> None:
    if not isinstance(manifest, dict):
        raise VisionMLError(f"{path}: the manifest must be a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise VisionMLError(f"{path}: format_version: missing or not an integer")
    if version > FORMAT_VERSION:
        from . import __version__

        raise VisionMLError(f"{path}: format_version {version} is newer than this visionml ({__version__}) "
                            f"reads (up to {FORMAT_VERSION}); upgrade visionml (pip install -U visionml)")
    for key, kind in (("task", str), ("model_name", str), ("labels", list)):
        if not isinstance(manifest.get(key), kind):
            raise VisionMLError(f"{path}: {key}: missing or not a {kind.__name__}")
    if manifest["task"] not in TASKS:
        raise VisionMLError(f"{path}: task: {manifest['task']!r} is not one of {', '.join(TASKS)}")
    labels = manifest["labels"]
    if not labels or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
        raise VisionMLError(f"{path}: labels: must be a non-empty list of distinct strings")
    for key in ("hyperparameters", "inference", "preprocessing", "sha256"):
        if not isinstance(manifest.get(key, {}), dict):
            raise VisionMLError(f"{path}: {key}: must be a JSON object")
    _check_values(manifest, path)


def _check_values(manifest: dict, path: Path) -> None:
    """Every hyperparameter, inference setting and preprocessing value through its hyperparameter's
    type and range (``visionml.config.PARAMS``), so a damaged or hand-edited manifest fails here,
    naming the field, instead of as a 30 GB allocation or a server answering 500 to everything."""
    from .config import PARAMS

    task = manifest["task"]
    for block in ("hyperparameters", "inference"):
        for key, value in (manifest.get(block) or {}).items():
            param = PARAMS.get(key)
            if param is not None and param.applies_to(task) and not (block == "inference" and value is None):
                _parse(param, value, path, f"{block}.{key}")
    pre = manifest.get("preprocessing") or {}
    values = {}
    for key, name in PREPROCESSING_PARAMS.items():
        if pre.get(key) is not None and PARAMS[name].applies_to(task):
            values[key] = _parse(PARAMS[name], pre[key], path, f"preprocessing.{key}")
    if values.get("crop_size", 0) > values.get("resize_size", math.inf):
        raise VisionMLError(f"{path}: preprocessing.crop_size ({values['crop_size']}) must be at most "
                            f"preprocessing.resize_size ({values['resize_size']})")
    if values.get("min_size", 0) > values.get("max_size", math.inf):
        raise VisionMLError(f"{path}: preprocessing.min_size ({values['min_size']}) must be at most "
                            f"preprocessing.max_size ({values['max_size']})")
    for key in ("mean", "std"):
        if key in pre and not _channel_values(pre[key], positive=key == "std"):
            raise VisionMLError(f"{path}: preprocessing.{key}: {pre[key]!r} must be 3 finite numbers "
                                f"(one per RGB channel){', each above 0' if key == 'std' else ''}")
    for name, digest in (manifest.get("sha256") or {}).items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise VisionMLError(f"{path}: sha256.{name}: {digest!r} is not a SHA-256 in hex")


def _parse(param, value, path: Path, field: str):
    try:
        return param.parse(value)
    except UsageError:
        raise VisionMLError(f"{path}: {field}: {value!r} is not valid: it must be {param.describe()}. "
                            f"The manifest was damaged or edited: restore the value (or copy the model "
                            f"folder again)") from None


def _channel_values(values, positive: bool) -> bool:
    if not isinstance(values, list) or len(values) != 3:
        return False
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return len(numbers) == 3 and (not positive or all(v > 0 for v in numbers))


def _jsonable(value):
    """Resolved hyperparameters as plain JSON values (tuples such as tile_grid_size become lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise VisionMLError(f"hyperparameter value {value!r} ({type(value).__name__}) cannot be saved in a manifest")


def _versions(source: str) -> dict:
    import torch
    import torchvision

    from . import __version__

    versions = {"visionml": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version()}
    if source == "timm":
        import timm

        versions["timm"] = timm.__version__
    return versions
