"""Before the first trial: what would make every trial (or every trial of a model) fail for one reason
of this machine, checked once in the sweep's own process, so the sweep fails once with that reason
instead of starting trial after trial that each fail with it.

Checked: the device asked for exists; every model the search space can pick can be built here (its
library is installed) and, unless the sweep trains from scratch, has its pretrained weights in the
cache (downloaded now, once, when the network is allowed; refused when offline mode is on); and the
trials compute the primary metric the sweep ranks them by.
"""

from __future__ import annotations

import importlib.util

from ..errors import UsageError, VisionMLError
from ..tasks import get_task


def check_environment(task, training_parameters: dict, subspaces: list, *, preset: str | None,
                      pretrained: bool | None, device: str, log=None) -> None:
    """Raise one VisionMLError listing every reason that trials would fail here; log the notes
    resolving the job's hyperparameters gave (each once)."""
    task = get_task(task)
    problems: list[str] = []
    device_problem = _device_problem(device)
    if device_problem:
        problems.append(device_problem)
    candidates, notes = _candidates(task, training_parameters, subspaces, preset)
    for note in notes:
        if log is not None:
            log(note)
    unscored = sorted({hp["model_name"] for hp in candidates if not task.computes_metrics(hp)})
    if unscored:
        problems.append(f"validation_metric_type is 'none' (for {', '.join(unscored)}): trials would compute no "
                        f"{task.primary_metric}, which the sweep ranks them by. Use voc, coco or coco_voc.")
    models = sorted({hp["model_name"] for hp in candidates})
    problems += _library_problems(models)
    if pretrained is not False and not problems:
        problems += _weights_problems(models, log)
    if problems:
        raise VisionMLError("the sweep cannot run on this machine; every trial that meets one of these would fail, "
                            "so none was started:\n  - " + "\n  - ".join(problems))


def _device_problem(device: str) -> str | None:
    name = str(device or "auto")
    if name == "auto" or name == "cpu":
        return None
    if not name.startswith("cuda"):
        return f"--device {name!r} is not one of auto, cpu, cuda, cuda:N"
    import torch

    if not torch.cuda.is_available():
        return f"--device {name}: no CUDA device is available here; use --device cpu"
    index = name.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        return f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def _candidates(task, training_parameters: dict, subspaces: list, preset: str | None):
    """The resolved hyperparameters of every model each sub-space can pick (its other values at
    their fixed ones where the sub-space fixes them), and the notes resolving them gave."""
    from ..config import check_supported, resolve_hyperparameters

    out, notes = [], []
    for sub in subspaces or [{}]:
        fixed = {name: dist.values[0] for name, dist in sub.items()
                 if dist.kind == "choice" and len(dist.values) == 1 and name != "model_name"}
        model_dist = sub.get("model_name")
        models = list(model_dist.values) if model_dist is not None and model_dist.kind == "choice" else [None]
        for model in models:
            values = {**training_parameters, **fixed, **({"model_name": model} if model is not None else {})}
            try:
                hp = resolve_hyperparameters(task, values, preset)
                check_supported(hp)
            except UsageError as exc:  # a bad value: the job check (runner) reports it with its context
                raise VisionMLError(f"training_parameters/search_space: {exc}") from None
            out.append(hp)
            notes += [note for note in hp.notes if note not in notes]
    return out, notes


def _library_problems(models: list[str]) -> list[str]:
    from ..models.registry import get_spec

    missing = {}
    for name in models:
        source = get_spec(name).source
        if source != "torchvision" and importlib.util.find_spec(source) is None:
            missing.setdefault(source, []).append(name)
    return [f"{', '.join(names)} need(s) the {source} package, which is not installed: pip install {source}"
            for source, names in missing.items()]


def _weights_problems(models: list[str], log) -> list[str]:
    """Pretrained weights each model needs, cached or fetched now; a line per model that has none."""
    from ..models.registry import get_spec
    from ..models.weights import ensure_cached, offline, weights_location

    problems = []
    for name in models:
        spec = get_spec(name)
        if not spec.weights:
            continue
        _, path = weights_location(spec.weights)
        if path.is_file():
            continue
        if not offline() and log is not None:
            log(f"downloading the pretrained weights of {name} once, before the first trial")
        try:
            ensure_cached(spec.weights, spec.name)
        except VisionMLError as exc:
            problems.append(str(exc))
    return problems
