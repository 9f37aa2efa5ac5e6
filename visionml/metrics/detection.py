"""Object-detection and instance-segmentation metrics, Azure's definitions beside COCO's, from
faster-coco-eval's ``COCOeval`` (a C++ port of pycocotools with identical numbers).

The library does all matching of predictions to ground truth; ``voc`` turns its matches into
Azure's VOC numbers and ``azure_keys`` writes Azure's keys. docs/metrics.md explains each key.

Two sets of boxes are scored. *Deployed*: the predictions scoring at least ``score_threshold``
(the model's ``box_score_threshold``), what a served model returns and what Azure evaluates.
*All given*: every prediction passed in (training and ``visionml evaluate`` pass them down to
0.05, as pycocotools users and torchvision's references do).

* ``mean_average_precision`` (primary), Azure's definition by ``metric_type``: ``voc`` and
  ``coco_voc`` -> ``voc_mean_average_precision``; ``coco`` -> COCO's AP at IoU 0.5 over the
  deployed boxes (Azure's ``coco_score[1]``).
* ``voc_mean_average_precision``: per class, the all-point interpolated AP (area under the
  precision envelope) at ``iou_threshold`` over the deployed boxes; averaged over the classes
  that have ground truth.
* ``coco`` (12 numbers, COCO's -1 as ``None``) and ``coco_mean_average_precision``
  (AP@[.5:.95]): the full COCO summary over all given boxes, pycocotools-exact.
* ``precision``, ``recall``: Azure's, the mean over classes (where defined) of each class's
  precision and recall over its deployed boxes.
* ``per_label`` (visionml's): per class AP (VOC, as above), AP@[.5:.95] (COCO, all given),
  precision, recall and the counts behind them; ``voc_pr_curve``: each class's precision envelope
  at COCO's 101 recall points. Undefined values are ``None``.
* Azure's keys: ``per_label_metrics``, ``pr_curve`` and ``pr_curve_<label>``, and for boxes
  (Azure has no such keys for masks) ``image_level_binary_classifier_metrics`` and
  ``confusion_matrix_score_threshold_<t>``; for ``coco``/``coco_voc`` also ``coco_metrics`` (over
  the deployed boxes). Undefined values are -1.0 there, as Azure writes them.

A prediction matched to an ``iscrowd`` region counts as neither TP nor FP (COCO's and Azure's
rule). No ground truth at all: the means are 0.0 and ``notes`` says why. Every value is a float,
an int, ``None``, a string or a list/dict of those: the dict serialises to JSON without NaN.
"""

from __future__ import annotations

import numpy as np

from . import azure_keys, voc
from .coco import detections_coco, flat_ground_truth, flat_predictions, ground_truth_coco
from .coco import masks_to_rles, polygons_to_rles  # noqa: F401  (imported from here by tasks and tests)

METRIC_TYPES = ("voc", "coco", "coco_voc")
IOU_TYPES = ("bbox", "segm")
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MAX_DETS = 100  # COCO's per-image, per-class cap in its summary; Azure's box_detections_per_image default
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's recall grid, for voc_pr_curve


def detection_metrics(ground_truth: list[dict], predictions: list[dict], labels: list[str], *,
                      iou_type: str = "bbox", metric_type: str = "voc",
                      iou_threshold: float = 0.5, score_threshold: float | None = None) -> dict:
    """Azure's detection / instance-segmentation metrics for one evaluation set, with COCO's.

    ``ground_truth[i]``: ``{"height", "width", "boxes": [N, 4] xyxy pixels, "labels": int[N]
    0-based into ``labels``, "iscrowd": int[N] (optional)}`` plus, for ``iou_type="segm"``,
    either ``"masks"`` (bool [N, H, W] or a list of COCO RLE dicts) or ``"polygons"``: per
    object a list of flat pixel segments ``[[x1, y1, x2, y2, ...], ...]`` (rasterised once, the
    way pycocotools rasterises COCO polygons).
    ``predictions[i]``: ``{"boxes", "scores", "labels"}`` plus ``"masks"`` for segm (bool
    [N, H, W], [N, 1, H, W], or a list of COCO RLE dicts).

    ``score_threshold``: the deployment's ``box_score_threshold``; Azure's numbers count the
    predictions scoring at least that, the COCO summary every prediction given. None: every
    prediction counts for both.
    """
    _check_arguments(ground_truth, predictions, labels, iou_type, metric_type, iou_threshold)
    coco_gt = ground_truth_coco(ground_truth, labels, iou_type)
    coco_all = detections_coco(coco_gt, predictions, len(labels), iou_type)
    grid = _run_cocoeval(coco_gt, coco_all, iou_type)
    grid.summarize()

    deployed = _above(predictions, score_threshold)
    same = deployed is predictions
    coco_deployed = coco_all if same else detections_coco(coco_gt, deployed, len(labels), iou_type)
    gt, dt = flat_ground_truth(ground_truth), flat_predictions(deployed)
    # Azure caps nothing: every deployed box is matched (COCO's summary keeps 100 per image and class)
    cap = max(MAX_DETS, int(np.bincount(dt["image"]).max(initial=0)))
    matched = _run_cocoeval(coco_gt, coco_deployed, iou_type, iou_threshold=iou_threshold, max_dets=cap,
                            loaded_by=grid if same else None,  # the same boxes: the same annotations and IoUs
                            cached_ious=grid.ious if same and cap == MAX_DETS else None).eval["matched"]
    dt["outcome"] = _outcomes(matched, gt["iscrowd"], len(dt["labels"]))
    objects = np.bincount(gt["labels"][gt["iscrowd"] == 0], minlength=len(labels))
    summaries = {name: voc.precision_recall(dt["outcome"][dt["labels"] == k], dt["scores"][dt["labels"] == k],
                                            int(objects[k])) for k, name in enumerate(labels)}

    result = _visionml_keys(grid, dt, objects, summaries, labels, metric_type, iou_type, iou_threshold,
                            score_threshold)
    result.update(_azure_keys(summaries, dt, gt, objects, iou_type))
    if iou_type == "bbox":
        agnostic = _run_cocoeval(coco_gt, coco_deployed, iou_type, iou_threshold=iou_threshold, max_dets=cap,
                                 use_categories=False).eval["matched"]
        result.update(_confusion_keys(agnostic, gt, dt, objects, labels))
    if metric_type in ("coco", "coco_voc"):
        stats = _deployed_coco_stats(grid, coco_gt, coco_deployed, iou_type, same, len(dt["labels"]))
        result[azure_keys.COCO_METRICS] = azure_keys.coco_metrics(stats)
        if metric_type == "coco":  # Azure's coco_score[1]: AP at IoU 0.5
            result["mean_average_precision"] = max(float(stats[1]), 0.0)
    return result


def _check_arguments(ground_truth, predictions, labels, iou_type, metric_type, iou_threshold):
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric_type must be one of {METRIC_TYPES}, got {metric_type!r}")
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    if not labels:
        raise ValueError("labels is empty: detection metrics need at least one class")
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(predictions)} "
                         "prediction entries: give one prediction dict per image, in order")


# ----------------------------------------------------------------------------- evaluation

def _run_cocoeval(coco_gt, coco_dt, iou_type, *, iou_threshold=None, max_dets=MAX_DETS, use_categories=True,
                  loaded_by=None, cached_ious=None):
    """Run COCOeval: COCO's full grid, or (``iou_threshold``) one threshold, one area range ('all')
    and one detection cap, the form in which the library's match list (``eval["matched"]``,
    ``"dtId_gtId" -> IoU``) is unambiguous. ``use_categories=False`` matches across classes.
    ``loaded_by``: an earlier run on the same two COCO objects (same images, classes and
    ``use_categories``), whose loaded annotations this run takes instead of loading them again;
    ``cached_ious``: the IoU matrices of such a run (valid with the same detection cap)."""
    from faster_coco_eval import COCOeval_faster

    class _Eval(COCOeval_faster):
        def computeIoU(self, image_id, category_id):  # noqa: N802 (the library's name)
            if cached_ious is not None:
                return cached_ious[image_id, category_id]
            return super().computeIoU(image_id, category_id)

        def _prepare(self):
            # Loading the annotations into the C++ evaluator is most of a single-threshold run's time;
            # what it loads depends only on the COCO objects, images, classes and use_categories.
            try:
                self.gt_dataset, self.dt_dataset = loaded_by.gt_dataset, loaded_by.dt_dataset
                self._nonempty_iou_pairs = loaded_by._nonempty_iou_pairs
            except AttributeError:  # no earlier run (or a library without these): load them
                super()._prepare()

    ev = _Eval(coco_gt, coco_dt, iou_type, print_function=_quiet)
    ev.params.maxDets = [1, 10, MAX_DETS]
    if iou_threshold is not None:
        ev.params.iouThrs = np.array([float(iou_threshold)])
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e5 ** 2]], ["all"]
        ev.params.maxDets = [int(max_dets)]
    ev.params.useCats = int(use_categories)
    ev.evaluate()
    ev.accumulate()
    return ev


def _quiet(*_args, **_kwargs):
    """faster-coco-eval prints progress through this; metrics calls stay silent."""


def _pairs(matched) -> np.ndarray:
    """The library's ``{"dtId_gtId": IoU}`` as 0-based (prediction, ground truth) index rows."""
    if not matched:
        return np.zeros((0, 2), dtype=np.int64)
    return np.array([key.split("_", 1) for key in matched], dtype=np.int64) - 1


def _outcomes(matched, gt_crowd, count) -> np.ndarray:
    """Per deployed prediction: a true positive (matched to an object), ignored (matched to a crowd
    region) or a false positive (unmatched)."""
    out = np.full(count, voc.FALSE_POSITIVE, dtype=np.int64)
    pairs = _pairs(matched)
    out[pairs[:, 0]] = np.where(gt_crowd[pairs[:, 1]] == 1, voc.IGNORED, voc.TRUE_POSITIVE)
    return out


def _above(predictions: list[dict], score_threshold: float | None) -> list[dict]:
    """``predictions`` without the entries scoring under ``score_threshold`` (the same list when
    none is under it, so that the caller can reuse what it computed for all of them)."""
    if score_threshold is None:
        return predictions
    keep = [np.asarray(p.get("scores", []), dtype=np.float64).reshape(-1) >= float(score_threshold)
            for p in predictions]
    if all(k.all() for k in keep):
        return predictions
    out = []
    for pred, k in zip(predictions, keep):
        where = np.flatnonzero(k)
        item = dict(pred)
        for key in ("boxes", "scores", "labels"):
            if pred.get(key) is not None:
                item[key] = np.asarray(pred[key])[where]
        masks = pred.get("masks")
        if masks is not None:
            item["masks"] = [masks[i] for i in where] if isinstance(masks, list) else np.asarray(masks)[where]
        out.append(item)
    return out


def _deployed_coco_stats(grid, coco_gt, coco_deployed, iou_type, same, count):
    """COCO's 12 numbers over the deployed boxes (Azure's coco_score); Azure's own answer when
    there is no box at all: twelve zeros."""
    if count == 0:
        return [0.0] * 12
    if same:
        return list(grid.stats[:12])
    ev = _run_cocoeval(coco_gt, coco_deployed, iou_type)
    ev.summarize()
    return list(ev.stats[:12])


# ----------------------------------------------------------------------------- results

def _visionml_keys(grid, dt, objects, summaries, labels, metric_type, iou_type, iou_threshold,
                   score_threshold) -> dict:
    per_label, curves = {}, {}
    for k, name in enumerate(labels):
        mine = dt["labels"] == k
        outcome, scores = dt["outcome"][mine], dt["scores"][mine]
        tp, fp = int((outcome == voc.TRUE_POSITIVE).sum()), int((outcome == voc.FALSE_POSITIVE).sum())
        n_gt = int(objects[k])
        per_label[name] = {
            "average_precision": summaries[name]["average_precision"],
            "average_precision_coco": _coco_ap(grid.eval["precision"][:, :, k, 0, -1]),
            "precision": tp / (tp + fp) if tp + fp else (0.0 if n_gt else None),
            "recall": tp / n_gt if n_gt else None,
            "num_ground_truth": n_gt,
            "num_predictions": int(mine.sum()),
            "true_positives": tp,
            "false_positives": fp,
        }
        if n_gt:
            curves[name] = [round(v, 6) for v in voc.envelope(outcome, scores, n_gt, RECALL_POINTS)]
    with_gt = [name for k, name in enumerate(labels) if objects[k] > 0]
    voc_map = _mean([per_label[name]["average_precision"] for name in with_gt])
    return {
        "mean_average_precision": voc_map,
        "voc_mean_average_precision": voc_map,
        "coco_mean_average_precision": _mean([per_label[name]["average_precision_coco"] for name in with_gt]),
        "precision": _mean([summaries[name]["precision"] for name in labels]),
        "recall": _mean([summaries[name]["recall"] for name in labels]),
        "metric_type": metric_type,
        "iou_type": iou_type,
        "iou_threshold": float(iou_threshold),
        "score_threshold": None if score_threshold is None else float(score_threshold),
        "num_images": len(grid.params.imgIds),
        "coco": {name: _defined(v) for name, v in zip(COCO_STAT_NAMES, grid.stats[:12])},
        "per_label": per_label,
        "voc_pr_curve": {"recall": [round(float(r), 4) for r in RECALL_POINTS], "precision": curves},
        "notes": _notes(labels, with_gt),
    }


def _azure_keys(summaries, dt, gt, objects, iou_type) -> dict:
    out = {azure_keys.PER_LABEL_METRICS: {name: azure_keys.per_label_entry(s) for name, s in summaries.items()},
           azure_keys.pr_curve_key(): azure_keys.pr_curve(
               voc.precision_recall(dt["outcome"], dt["scores"], int(objects.sum())))}
    for name, summary in summaries.items():
        curve = azure_keys.pr_curve(summary)
        if curve["recall"]:  # Azure logs no table for a class without a defined point
            out[azure_keys.pr_curve_key(name)] = curve
    if iou_type == "bbox":
        with_objects = len(np.unique(gt["image"][gt["iscrowd"] == 0]))
        image = voc.image_level(dt["outcome"], dt["scores"], dt["image"], with_objects)
        out[azure_keys.IMAGE_LEVEL] = {key: azure_keys.value(v) for key, v in image.items()}
    return out


def _confusion_keys(matched, gt, dt, objects, labels) -> dict:
    """Azure's confusion matrices: class-agnostic matches of deployed boxes to objects."""
    pairs = _pairs(matched)
    pairs = pairs[gt["iscrowd"][pairs[:, 1]] == 0]  # a crowd region is no object to confuse
    rows = np.stack([gt["labels"][pairs[:, 1]], dt["labels"][pairs[:, 0]], dt["scores"][pairs[:, 0]]], axis=1)
    return {azure_keys.confusion_matrix_key(t): azure_keys.confusion_matrix(labels, matrix, missed=True)
            for t, matrix in voc.confusion_matrices(objects, rows).items()}


def _notes(labels, with_gt) -> list[str]:
    if not with_gt:
        return ["no ground-truth objects in the evaluation set: AP is undefined, "
                "mean_average_precision is reported as 0.0"]
    absent = [name for name in labels if name not in with_gt]
    return [f"classes without ground truth are left out of the means: {', '.join(absent)}"] if absent else []


def _coco_ap(precision: np.ndarray):
    """Mean of COCO's interpolated precision where defined; ``None`` for a class without GT."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _defined(value):
    value = float(value)
    return None if value < 0 or not np.isfinite(value) else value


def _mean(values) -> float:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else 0.0
