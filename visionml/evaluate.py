"""Evaluation: a model folder against a labelled dataset (``visionml evaluate``), and the one
dispatch from a task to its metric family that the training loop uses at every evaluation.

Ground truth comes from the JSONL records in the pixel coordinates of the decoded image (EXIF
orientation applied, the same image the predictor sees); predictions come from
``Predictor.raw_predict`` in those same coordinates, so boxes and masks meet without rescaling.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from .errors import VisionMLError
from .models.detection import AP_SCORE_FLOOR
from .tasks import MULTICLASS, MULTILABEL, PRIMARY_METRIC, SEGMENTATION, canonical_task, is_detection_like


def metrics_for_task(task: str, ground_truth, predictions, labels: list[str], hp: dict | None = None) -> dict:
    """Azure's metrics for ``task``. Classification: ``ground_truth`` int[N] (multi-class) or
    {0,1}[N, C] (multi-label) and ``predictions`` float[N, C] probabilities. Detection and
    segmentation: per-image dicts as ``visionml.metrics.detection.detection_metrics`` takes
    them, evaluated per ``hp["validation_metric_type"]`` and ``hp["validation_iou_threshold"]``
    (segmentation on masks)."""
    task = canonical_task(task)
    hp = hp or {}
    if task == MULTICLASS:
        from .metrics.classification import multiclass_metrics

        return multiclass_metrics(ground_truth, predictions, labels)
    if task == MULTILABEL:
        from .metrics.classification import multilabel_metrics

        return multilabel_metrics(ground_truth, predictions, labels)
    from .metrics.detection import detection_metrics

    metric_type = str(hp.get("validation_metric_type") or "voc").lower()
    notes = []
    if metric_type == "none":
        # Azure then skips validation metrics; visionml still needs a score to pick the best epoch.
        metric_type = "voc"
        notes.append("validation_metric_type 'none': mean_average_precision computed the 'voc' way")
    metrics = detection_metrics(ground_truth, predictions, labels,
                                iou_type="segm" if task == SEGMENTATION else "bbox",
                                metric_type=metric_type,
                                iou_threshold=float(hp.get("validation_iou_threshold") or 0.5),
                                score_threshold=hp.get("box_score_threshold"))
    metrics["notes"] = notes + metrics["notes"]
    return metrics


def save_plots(task: str, ground_truth, predictions, labels: list[str], metrics: dict, out_dir) -> list[Path]:
    """The evaluation PNGs for ``task`` in ``out_dir``: confusion matrix, PR and ROC curves
    (classification, from the arrays); PR curves and AP bars (detection, from ``metrics``)."""
    from .metrics import plots

    task = canonical_task(task)
    if is_detection_like(task):
        return plots.save_detection_plots(out_dir, metrics, labels)
    threshold = float(metrics.get("threshold", 0.5)) if task == MULTILABEL else 0.5
    return plots.save_classification_plots(out_dir, task, ground_truth, predictions, labels, threshold)


def evaluate_model(model_dir, data, *, datastores: dict[str, str] | None = None, plots_dir=None,
                   batch_size: int | None = None, backend: str = "torch", device: str = "cpu",
                   overrides: dict | None = None, progress: bool = False) -> dict:
    """Load ``model_dir``, score every image of ``data`` (JSONL or MLTable) and return Azure's
    metrics for the model's task, plus ``task``, ``primary_metric``, ``model`` and ``data``.
    With ``plots_dir`` the evaluation PNGs are written there too."""
    from .predict import Predictor

    predictor = Predictor.from_folder(model_dir, backend=backend, overrides=overrides, device=device)
    metrics = evaluate_predictor(predictor, data, datastores=datastores, plots_dir=plots_dir,
                                 batch_size=batch_size, progress=progress)
    return {**metrics, "model": str(model_dir)}


def evaluate_predictor(predictor, data, *, datastores: dict[str, str] | None = None, plots_dir=None,
                       batch_size: int | None = None, progress: bool = False) -> dict:
    """``evaluate_model`` for an already loaded predictor (anything with ``task``, ``labels``,
    ``settings`` and ``raw_predict(pil_images)``; with ``scoring_down_to(threshold)``, as
    ``Predictor`` has, detectors are scored down to ``AP_SCORE_FLOOR`` for AP)."""
    from .data.reader import read_dataset

    task = canonical_task(predictor.task)
    loaded = read_dataset(data, task, datastores=datastores)
    _check_labels(loaded, predictor.labels, task)
    # AP from boxes down to a low score; precision/recall at the deployment's threshold (metrics_for_task).
    floor = getattr(predictor, "scoring_down_to", None)
    records, skipped = _usable(predictor, loaded.records)
    with floor(AP_SCORE_FLOOR) if floor is not None else contextlib.nullcontext():
        ground_truth, predictions = _score(predictor, records, task, batch_size, progress)
    metrics = metrics_for_task(task, ground_truth, predictions, predictor.labels, predictor.settings)
    if skipped:
        metrics["notes"] = [_skipped_note(skipped), *metrics.get("notes", [])]
    if plots_dir is not None:
        save_plots(task, ground_truth, predictions, predictor.labels, metrics, plots_dir)
    return {"task": task, "primary_metric": PRIMARY_METRIC[task], **metrics, "data": str(data)}


def _check_labels(loaded, model_labels: list[str], task: str) -> None:
    """Every class in the data must be one the model predicts; model classes missing from the
    data are fine (they are reported as classes without ground truth)."""
    known = set(model_labels)
    unknown = [name for name in loaded.labels if name not in known]
    if not unknown:
        return
    first = next(r for r in loaded.records if unknown[0] in _record_labels(r))
    raise VisionMLError(
        f"{first.where}: label: {unknown[0]!r} is not a class of this model "
        f"({len(unknown)} unknown class(es) in the data: {', '.join(map(repr, unknown[:10]))}). "
        f"The model knows: {', '.join(map(repr, model_labels[:30]))}"
        f"{' ...' if len(model_labels) > 30 else ''}. Evaluate with data labelled for this model "
        f"({task}).")


def _record_labels(record) -> list[str]:
    if record.objects:
        return [o.label for o in record.objects]
    return [record.label] if isinstance(record.label, str) else list(record.label or [])


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

    from .data.images import load_rgb, local_path

    index = {name: k for k, name in enumerate(predictor.labels)}
    step = int(batch_size or predictor.settings.get("validation_batch_size") or 16)
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
                ground_truth.append(_ground_truth(record, image.width, image.height, task, index))
                predictions.append(_prediction(output, task))
            bar.update(len(chunk))
    if not is_detection_like(task):
        return np.stack(ground_truth), np.stack(predictions)
    return ground_truth, predictions


def _ground_truth(record, width: int, height: int, task: str, index: dict):
    from .geometry import polygon_norm_to_abs, xyxy_norm_to_abs

    if task == MULTICLASS:
        return index[record.label]
    if task == MULTILABEL:
        hot = np.zeros(len(index), dtype=np.int64)
        hot[[index[name] for name in record.label]] = 1
        return hot
    objects = record.objects
    gt = {"height": height, "width": width,
          "boxes": xyxy_norm_to_abs([o.box for o in objects], width, height),
          "labels": np.array([index[o.label] for o in objects], dtype=np.int64),
          "iscrowd": np.array([int(o.is_crowd) for o in objects], dtype=np.int64)}
    if task == SEGMENTATION:
        # COCO's own polygon form: the evaluator rasterises it exactly as it does for COCO data
        gt["polygons"] = [[seg.reshape(-1).tolist() for seg in polygon_norm_to_abs(o.polygon or [], width, height)]
                          for o in objects]
    return gt


def _prediction(output, task: str):
    if not is_detection_like(task):
        return np.asarray(output, dtype=np.float64)
    pred = {"boxes": np.asarray(output["boxes"], dtype=np.float64).reshape(-1, 4),
            "scores": np.asarray(output["scores"], dtype=np.float64).reshape(-1),
            "labels": np.asarray(output["labels"], dtype=np.int64).reshape(-1)}
    if task == SEGMENTATION:
        from .metrics.detection import masks_to_rles

        pred["masks"] = masks_to_rles(output.get("masks"), len(pred["boxes"]))
    return pred
