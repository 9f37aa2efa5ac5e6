"""Evaluation: a model folder against a labelled dataset (``visionml evaluate``).

Ground truth comes from the JSONL records in the pixel coordinates of the decoded image (EXIF
orientation applied, the same image the predictor sees); predictions come from
``Predictor.raw_predict`` in those same coordinates, so boxes and masks meet without rescaling.
"""

from __future__ import annotations

import contextlib
import sys

from ..errors import VisionMLError
from ..models.detection import AP_SCORE_FLOOR
from ..tasks import get_task


def metrics_for_task(task, ground_truth, predictions, labels: list[str], hp=None) -> dict:
    """Azure's metrics for ``task`` (any spelling or a Task): ``Task.metrics``, which takes the
    ground truth and predictions in the form ``Task.finish`` gives them. ``hp``: resolved
    hyperparameters, or a partial dict (the defaults fill the rest)."""
    from ..config import Hyperparameters, resolve_hyperparameters

    task = get_task(task)
    if not isinstance(hp, Hyperparameters):
        hp = resolve_hyperparameters(task, hp or {})
    return task.metrics(ground_truth, predictions, labels, hp)


def evaluate_model(model_dir, data, *, datastores: dict[str, str] | None = None, plots_dir=None,
                   batch_size: int | None = None, backend: str = "torch", device: str = "cpu",
                   overrides: dict | None = None, progress: bool = False) -> dict:
    """Load ``model_dir``, score every image of ``data`` (JSONL or MLTable) and return Azure's
    metrics for the model's task, plus ``task``, ``primary_metric``, ``model`` and ``data``.
    With ``plots_dir`` the evaluation PNGs are written there too."""
    from ..predict import Predictor

    predictor = Predictor.from_folder(model_dir, backend=backend, overrides=overrides, device=device)
    metrics = evaluate_predictor(predictor, data, datastores=datastores, plots_dir=plots_dir,
                                 batch_size=batch_size, progress=progress)
    return {**metrics, "model": str(model_dir)}


def evaluate_predictor(predictor, data, *, datastores: dict[str, str] | None = None, plots_dir=None,
                       batch_size: int | None = None, progress: bool = False) -> dict:
    """``evaluate_model`` for an already loaded predictor (anything with ``task``, ``labels``,
    ``settings`` and ``raw_predict(pil_images)``; with ``scoring_down_to(threshold)``, as
    ``Predictor`` has, detectors are scored down to ``AP_SCORE_FLOOR`` for the COCO summary)."""
    from ..data.reader import read_dataset

    task = get_task(predictor.task)
    loaded = read_dataset(data, task, datastores=datastores)
    _check_labels(loaded, predictor.labels, task)
    # Boxes down to a low score: the COCO summary counts them all, Azure's numbers (the primary among
    # them) only those at or above the deployment's box_score_threshold (docs/metrics.md).
    floor = getattr(predictor, "scoring_down_to", None)
    records, skipped = _usable(predictor, loaded.records)
    with floor(AP_SCORE_FLOOR) if floor is not None else contextlib.nullcontext():
        ground_truth, predictions = _score(predictor, records, task, batch_size, progress)
    metrics = task.metrics(ground_truth, predictions, predictor.labels, predictor.settings)
    if skipped:
        metrics["notes"] = [_skipped_note(skipped), *metrics.get("notes", [])]
    if plots_dir is not None:
        task.plots(ground_truth, predictions, predictor.labels, metrics, plots_dir)
    return {"task": task.name, "primary_metric": task.primary_metric, **metrics, "data": str(data)}


def _check_labels(loaded, model_labels: list[str], task: str) -> None:
    """Every class in the data must be one the model predicts; model classes missing from the
    data are fine (they are reported as classes without ground truth)."""
    known = set(model_labels)
    unknown = [name for name in loaded.labels if name not in known]
    if not unknown:
        return
    first = next(r for r in loaded.records if unknown[0] in task.class_names(r))
    raise VisionMLError(
        f"{first.where}: label: {unknown[0]!r} is not a class of this model "
        f"({len(unknown)} unknown class(es) in the data: {', '.join(map(repr, unknown[:10]))}). "
        f"The model knows: {', '.join(map(repr, model_labels[:30]))}"
        f"{' ...' if len(model_labels) > 30 else ''}. Evaluate with data labelled for this model "
        f"({task}).")


def _usable(predictor, records) -> tuple[list, list[str]]:
    """The records the model can take, and ``FILE:LINE: image_url: reason`` for each it cannot (an
    aspect ratio that resizes to nothing, say), from the sizes the reader took from the headers.
    Each skipped one is reported on stderr; none left is an error."""
    check = getattr(predictor, "size_problem", None)
    if check is None:
        return list(records), []
    usable, skipped = [], []
    for record in records:
        problem = check(record.width, record.height) if record.width and record.height else None
        if problem:
            skipped.append(f"{record.where}: image_url: {record.image_url}: {problem}")
            print(f"visionml evaluate: skipped {skipped[-1]}", file=sys.stderr)
        else:
            usable.append(record)
    if not usable:
        raise VisionMLError("no image of the data can be scored by this model:\n" + "\n".join(skipped[:20]))
    return usable, skipped


def _skipped_note(skipped: list[str]) -> str:
    shown = "; ".join(skipped[:5]) + (f"; ... and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return (f"skipped {len(skipped)} image(s) the model cannot take (not in these metrics): {shown}")


# ----------------------------------------------------------------------------- scoring

def _score(predictor, records, task, batch_size, progress):
    """Ground truth and predictions for all records, decoding ``batch_size`` images at a time
    so that memory holds one batch of images (predicted masks are kept as RLE)."""
    from tqdm import tqdm

    from ..data.images import load_rgb, local_path

    index = {name: k for k, name in enumerate(predictor.labels)}
    step = int(batch_size or predictor.settings["validation_batch_size"])
    ground_truth, predictions = [], []
    with tqdm(total=len(records), unit="img", desc="evaluate", disable=not progress) as bar:
        for start in range(0, len(records), step):
            chunk = records[start:start + step]
            images = []
            for record in chunk:
                try:
                    images.append(load_rgb(local_path(record.path)))
                except ValueError as exc:
                    raise VisionMLError(f"{record.where}: image_url: {record.image_url}: {exc}") from exc
            raw = predictor.raw_predict(images, batch_size=step)
            for record, image, output in zip(chunk, images, raw):
                ground_truth.append(task.ground_truth(record, image.width, image.height, index))
                predictions.append(task.metric_prediction(output))
            bar.update(len(chunk))
    return task.finish(ground_truth, predictions)
