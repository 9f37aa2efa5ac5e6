"""Object-detection and instance-segmentation metrics with Azure's names, computed by
faster-coco-eval's ``COCOeval`` (a C++ port of pycocotools with identical numbers).

Matching, accumulation and the COCO summary are the library's; this module only turns
per-image arrays into in-memory COCO objects and reads the library's arrays back.

Definitions (what a user sees in ``metrics.json``):

* ``mean_average_precision`` (primary) follows ``metric_type``:
  ``voc`` -> AP at ``iou_threshold`` (Azure's default, 0.5); ``coco`` -> AP@[.5:.95];
  ``coco_voc`` -> both are reported and the primary is the VOC one, so that switching
  between ``voc`` and ``coco_voc`` never changes which epoch or trial wins.
  ``voc_mean_average_precision`` and ``coco_mean_average_precision`` are always there.
* AP is COCO's 101-point interpolated AP (pycocotools), per class, averaged over the classes
  that have ground truth. A class without ground truth has AP ``None`` and is left out of
  the mean (its predictions cannot help or hurt other classes). No ground truth at all:
  the mAPs are 0.0 and ``notes`` says why.
* ``precision``/``recall`` per label are at ``iou_threshold`` over all predictions given
  (the model's ``box_score_threshold`` already applied): TP / (TP + FP) and TP / GT.
  A prediction matched to an ``iscrowd`` object counts as neither (COCO's rule).
  A class with ground truth but no prediction has precision 0.0 (sklearn's
  ``zero_division=0``); one without ground truth has recall ``None``. The top-level
  ``precision`` and ``recall`` are the means over the classes where they are defined.
* ``coco`` holds the 12 COCO summary numbers (AP, AP50, AP75, APs, APm, APl, AR1, AR10,
  AR100, ARs, ARm, ARl); COCO's ``-1`` ("nothing in that range") becomes ``None``.
* ``pr_curve`` is COCO's interpolated precision at the 101 recall points, per class, at
  ``iou_threshold``: enough to draw PR plots later from ``metrics.json`` alone.

Every value is a float, an int, ``None``, a string or a list/dict of those: the dict
serialises to JSON without NaN.
"""

from __future__ import annotations

import numpy as np

METRIC_TYPES = ("voc", "coco", "coco_voc")
IOU_TYPES = ("bbox", "segm")
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MAX_DETS = 100  # COCO's per-image, per-class cap; Azure's box_detections_per_image default


def detection_metrics(ground_truth: list[dict], predictions: list[dict], labels: list[str], *,
                      iou_type: str = "bbox", metric_type: str = "voc",
                      iou_threshold: float = 0.5, score_threshold: float | None = None) -> dict:
    """Azure's detection / instance-segmentation metrics for one evaluation set.

    ``ground_truth[i]``: ``{"height", "width", "boxes": [N, 4] xyxy pixels, "labels": int[N]
    0-based into ``labels``, "iscrowd": int[N] (optional)}`` plus, for ``iou_type="segm"``,
    either ``"masks"`` (bool [N, H, W] or a list of COCO RLE dicts) or ``"polygons"``: per
    object a list of flat pixel segments ``[[x1, y1, x2, y2, ...], ...]`` (rasterised once, the
    way pycocotools rasterises COCO polygons).
    ``predictions[i]``: ``{"boxes", "scores", "labels"}`` plus ``"masks"`` for segm (bool
    [N, H, W], [N, 1, H, W], or a list of COCO RLE dicts).

    ``score_threshold``: the deployment's ``box_score_threshold``. AP integrates over every
    prediction given (give them down to a low score, as COCO does: a cut at 0.3 truncates the
    precision-recall curve and understates AP), while ``precision``/``recall`` and the TP/FP
    counts count only predictions scoring at least ``score_threshold``: what a served model
    returns. None: every prediction counts for both.
    """
    _check_arguments(ground_truth, predictions, labels, iou_type, metric_type, iou_threshold)
    coco_gt = _coco_ground_truth(ground_truth, labels, iou_type)
    coco_dt = _coco_detections(coco_gt, predictions, len(labels), iou_type)

    grid = _run_cocoeval(coco_gt, coco_dt, iou_type)
    grid.summarize()
    at_threshold, t_index = grid, _grid_index(grid.params.iouThrs, iou_threshold)
    if t_index is None:  # e.g. 0.45: evaluate once more at that threshold alone
        at_threshold, t_index = _run_cocoeval(coco_gt, coco_dt, iou_type, iou_threshold=iou_threshold,
                                              cached_ious=grid.ious), 0
    crowd_hits = _crowd_matches(coco_gt, coco_dt, iou_type, iou_threshold, grid.ious)
    counted = (at_threshold, t_index, crowd_hits, coco_dt)
    kept = _above(predictions, score_threshold)
    if kept is not predictions:  # precision and recall over the predictions a deployment returns
        coco_kept = _coco_detections(coco_gt, kept, len(labels), iou_type)
        counted = (_run_cocoeval(coco_gt, coco_kept, iou_type, iou_threshold=iou_threshold), 0,
                   _crowd_matches(coco_gt, coco_kept, iou_type, iou_threshold, None), coco_kept)
    per_label = _per_label(grid, at_threshold, t_index, counted, coco_gt, labels)
    return _assemble(grid, per_label, _pr_curve(at_threshold, t_index, labels), coco_gt,
                     iou_type, metric_type, iou_threshold)


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


# ----------------------------------------------------------------------------- COCO objects

def _coco_ground_truth(ground_truth, labels, iou_type):
    from faster_coco_eval import COCO

    images, annotations = [], []
    for index, image in enumerate(ground_truth):
        image_id = index + 1
        height, width = _image_size(image, iou_type, index)
        images.append({"id": image_id, "height": height, "width": width})
        boxes = _boxes(image.get("boxes"))
        classes = _classes(image.get("labels"), len(boxes), len(labels), f"ground_truth[{index}]")
        crowd = np.asarray(image.get("iscrowd", np.zeros(len(boxes))), dtype=np.int64).reshape(-1)
        if len(crowd) != len(boxes):
            raise ValueError(f"ground_truth[{index}]: {len(crowd)} iscrowd flags for {len(boxes)} boxes")
        segments = _gt_segments(image, len(boxes), height, width, index) if iou_type == "segm" else None
        xywh = _xywh(boxes)
        areas = [a for a, _ in segments] if segments else (xywh[:, 2] * xywh[:, 3]).tolist()
        for j, (box, category, is_crowd, area) in enumerate(
                zip(xywh.tolist(), (classes + 1).tolist(), crowd.tolist(), areas)):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                   "bbox": box, "iscrowd": is_crowd, "area": area}
            if segments is not None:
                ann["segmentation"] = segments[j][1]
            annotations.append(ann)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(labels)]
    return COCO({"images": images, "annotations": annotations, "categories": categories})


def _coco_detections(coco_gt, predictions, num_classes, iou_type):
    """Detections as a COCO object built directly (like ``loadRes`` without its per-box
    polygon bookkeeping, which bbox evaluation never reads)."""
    from faster_coco_eval import COCO

    annotations = []
    for index, pred in enumerate(predictions):
        boxes = _boxes(pred.get("boxes"))
        scores = np.asarray(pred.get("scores", []), dtype=np.float64).reshape(-1)
        classes = _classes(pred.get("labels"), len(boxes), num_classes, f"predictions[{index}]")
        if len(scores) != len(boxes):
            raise ValueError(f"predictions[{index}]: {len(scores)} scores for {len(boxes)} boxes")
        rles = _prediction_rles(pred, len(boxes), index) if iou_type == "segm" else None
        xywh = _xywh(boxes)
        areas = (_rle_areas(rles) if rles is not None else xywh[:, 2] * xywh[:, 3]).tolist()
        image_id = index + 1
        for j, (box, category, score, area) in enumerate(
                zip(xywh.tolist(), (classes + 1).tolist(), scores.tolist(), areas)):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                   "bbox": box, "score": score, "iscrowd": 0, "area": area}
            if rles is not None:
                ann["segmentation"] = rles[j]
            annotations.append(ann)
    coco_dt = COCO()
    coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                       "annotations": annotations}
    coco_dt.createIndex()
    return coco_dt


def _image_size(image, iou_type, index):
    if "height" in image and "width" in image:
        return int(image["height"]), int(image["width"])
    if iou_type == "segm":
        raise ValueError(f"ground_truth[{index}]: 'height' and 'width' are required for segm")
    return 0, 0  # bbox IoU never reads the image size


def _boxes(boxes) -> np.ndarray:
    return np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _classes(classes, count, num_classes, where) -> np.ndarray:
    out = np.asarray([] if classes is None else classes, dtype=np.int64).reshape(-1)
    if len(out) != count:
        raise ValueError(f"{where}: {len(out)} labels for {count} boxes")
    if len(out) and (out.min() < 0 or out.max() >= num_classes):
        raise ValueError(f"{where}: label index out of range 0..{num_classes - 1}: "
                         f"{out[(out < 0) | (out >= num_classes)].tolist()}")
    return out


def _xywh(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, 2:] -= out[:, :2]
    return out


def _gt_segments(image, count, height, width, index):
    """(area, COCO RLE) per object, from masks or pixel polygons."""
    if image.get("masks") is not None:
        rles = masks_to_rles(image["masks"], count, f"ground_truth[{index}]")
    elif image.get("polygons") is not None:
        if len(image["polygons"]) != count:
            raise ValueError(f"ground_truth[{index}]: {len(image['polygons'])} polygons for {count} boxes")
        rles = polygons_to_rles(image["polygons"], height, width)
    else:
        raise ValueError(f"ground_truth[{index}]: segm evaluation needs 'masks' or 'polygons'")
    return list(zip(_rle_areas(rles).tolist(), rles))


def polygons_to_rles(objects, height: int, width: int) -> list[dict]:
    """Per object, its pixel polygons ``[[x1, y1, x2, y2, ...], ...]`` rasterised the way COCO
    rasterises them (pycocotools), segments of one object merged: one RLE per object. Done
    once here so that no later evaluation pass rasterises a polygon again."""
    from pycocotools import mask as mask_utils

    flat = [[seg for seg in (np.asarray(s, dtype=np.float64).reshape(-1).tolist() for s in obj) if len(seg) >= 6]
            for obj in objects]
    segments = [seg for obj in flat for seg in obj]
    rles = mask_utils.frPyObjects(segments, height, width) if segments else []
    empty = None
    out, start = [], 0
    for obj in flat:
        part = rles[start:start + len(obj)]
        start += len(obj)
        if len(part) == 1:
            out.append(part[0])
        elif part:
            out.append(mask_utils.merge(part))
        else:  # an object without a usable polygon covers no pixel
            if empty is None:
                empty = mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
            out.append(empty)
    return out


def _prediction_rles(pred, count, index):
    if pred.get("masks") is None:
        raise ValueError(f"predictions[{index}]: segm evaluation needs 'masks'")
    return masks_to_rles(pred["masks"], count, f"predictions[{index}]")


def masks_to_rles(masks, count: int | None = None, where: str = "masks") -> list[dict]:
    """Binary masks [N, H, W] or [N, 1, H, W] (bool, uint8 or probabilities cut at 0.5) as COCO
    RLE dicts via pycocotools, a few hundred bytes each instead of H*W. A list of RLE dicts is
    returned as is. ``count``: the number of objects expected (checked)."""
    from pycocotools import mask as mask_utils

    if isinstance(masks, (list, tuple)) and (not masks or isinstance(masks[0], dict)):
        rles = list(masks)
    else:
        arr = np.asarray(masks if masks is not None else np.zeros((0, 0, 0), dtype=bool))
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3:
            raise ValueError(f"{where}: masks have shape {arr.shape}, expected (N, H, W)")
        binary = arr > 0.5 if arr.dtype.kind == "f" else arr != 0
        rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8))) \
            if len(arr) else []
    if count is not None and len(rles) != count:
        raise ValueError(f"{where}: {len(rles)} masks for {count} boxes")
    return rles


def _rle_areas(rles):
    from pycocotools import mask as mask_utils

    return mask_utils.area(rles) if rles else np.zeros(0)


# ----------------------------------------------------------------------------- evaluation

def _run_cocoeval(coco_gt, coco_dt, iou_type, *, iou_threshold=None, image_ids=None,
                  category_ids=None, cached_ious=None):
    """Run COCOeval: COCO's full grid, or (``iou_threshold``) one threshold, one area range
    ('all') and one detection cap. The library's match list (``eval["matched"]``) is only
    unambiguous in that single-range form (otherwise it holds the matches of every area range
    and threshold). ``cached_ious`` reuses the IoU matrices of the first run."""
    from faster_coco_eval import COCOeval_faster

    class _Eval(COCOeval_faster):
        def computeIoU(self, image_id, category_id):  # noqa: N802 (the library's name)
            if cached_ious is not None:
                return cached_ious[image_id, category_id]
            return super().computeIoU(image_id, category_id)

    ev = _Eval(coco_gt, coco_dt, iou_type, print_function=_quiet)
    ev.params.maxDets = [1, 10, MAX_DETS]
    if iou_threshold is not None:
        ev.params.iouThrs = np.array([float(iou_threshold)])
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e5 ** 2]], ["all"]
        ev.params.maxDets = [MAX_DETS]
    if image_ids is not None:
        ev.params.imgIds = sorted(image_ids)
    if category_ids is not None:
        ev.params.catIds = sorted(category_ids)
    ev.evaluate()
    ev.accumulate()
    return ev


def _grid_index(thresholds, iou_threshold):
    hits = np.flatnonzero(np.isclose(thresholds, float(iou_threshold)))
    return int(hits[0]) if hits.size else None


def _crowd_matches(coco_gt, coco_dt, iou_type, iou_threshold, cached_ious) -> np.ndarray:
    """Per class, how many predictions matched an ``iscrowd`` object at the threshold: COCO
    ignores those (neither TP nor FP), so precision must leave them out. Only the images and
    classes that have a crowd object are looked at again."""
    counts = np.zeros(len(coco_gt.cats), dtype=np.int64)
    crowd = [a for a in coco_gt.anns.values() if a["iscrowd"]]
    if not crowd or not coco_dt.anns:
        return counts
    ev = _run_cocoeval(coco_gt, coco_dt, iou_type, iou_threshold=iou_threshold,
                       image_ids={a["image_id"] for a in crowd},
                       category_ids={a["category_id"] for a in crowd}, cached_ious=cached_ious)
    for pair in ev.eval["matched"]:  # "dtId_gtId" -> IoU
        dt_id, gt_id = (int(v) for v in pair.split("_", 1))
        if coco_gt.anns[gt_id]["iscrowd"]:
            counts[coco_dt.anns[dt_id]["category_id"] - 1] += 1
    return counts


def _quiet(*_args, **_kwargs):
    """faster-coco-eval prints progress through this; metrics calls stay silent."""


def _above(predictions: list[dict], score_threshold: float | None) -> list[dict]:
    """``predictions`` without the entries scoring under ``score_threshold`` (the same list when
    none is under it, so that the caller can skip a second evaluation)."""
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


def _per_label(grid, at_threshold, t_index, counted, coco_gt, labels):
    """Per class: AP from ``at_threshold``/``grid``; precision, recall and TP/FP from ``counted``
    = (evaluation at the IoU threshold, its index, crowd matches, the predictions counted)."""
    count_eval, count_index, crowd_hits, coco_dt = counted
    n_gt = np.zeros(len(labels), dtype=np.int64)
    for ann in coco_gt.anns.values():
        if not ann["iscrowd"]:
            n_gt[ann["category_id"] - 1] += 1
    n_dt = _counted_predictions(coco_dt, len(labels))
    out = {}
    for k, name in enumerate(labels):
        recall = _defined(count_eval.eval["recall"][count_index, k, 0, -1])
        # COCO's recall is TP / GT exactly, so TP comes back as an integer
        tp = int(round(recall * n_gt[k])) if recall is not None else 0
        scored = int(n_dt[k] - crowd_hits[k])  # predictions that are TP or FP
        precision = tp / scored if scored > 0 else (0.0 if n_gt[k] > 0 else None)
        out[name] = {
            "average_precision": _ap(at_threshold.eval["precision"][t_index, :, k, 0, -1]),
            "average_precision_coco": _ap(grid.eval["precision"][:, :, k, 0, -1]),
            "precision": precision,
            "recall": recall,
            "num_ground_truth": int(n_gt[k]),
            "num_predictions": int(n_dt[k]),
            "true_positives": tp,
            "false_positives": scored - tp,
        }
    return out


def _counted_predictions(coco_dt, num_classes) -> np.ndarray:
    """Predictions per class that COCO looks at: at most MAX_DETS per image and class."""
    per_image_class: dict[tuple[int, int], int] = {}
    for ann in coco_dt.anns.values():
        key = (ann["image_id"], ann["category_id"])
        per_image_class[key] = per_image_class.get(key, 0) + 1
    counts = np.zeros(num_classes, dtype=np.int64)
    for (_, category_id), n in per_image_class.items():
        counts[category_id - 1] += min(n, MAX_DETS)
    return counts


def _assemble(grid, per_label, pr_curve, coco_gt, iou_type, metric_type, iou_threshold):
    notes = []
    with_gt = [m for m in per_label.values() if m["num_ground_truth"] > 0]
    if not with_gt:
        notes.append("no ground-truth objects in the evaluation set: AP is undefined, "
                     "mean_average_precision is reported as 0.0")
    absent = [name for name, m in per_label.items() if m["num_ground_truth"] == 0]
    if with_gt and absent:
        notes.append(f"classes without ground truth are left out of the means: {', '.join(absent)}")
    voc_map = _mean([m["average_precision"] for m in with_gt])
    coco_map = _mean([m["average_precision_coco"] for m in with_gt])
    return {
        "mean_average_precision": coco_map if metric_type == "coco" else voc_map,
        "voc_mean_average_precision": voc_map,
        "coco_mean_average_precision": coco_map,
        "precision": _mean([m["precision"] for m in per_label.values()]),
        "recall": _mean([m["recall"] for m in per_label.values()]),
        "metric_type": metric_type,
        "iou_type": iou_type,
        "iou_threshold": float(iou_threshold),
        "num_images": len(coco_gt.dataset["images"]),
        "coco": {name: _defined(v) for name, v in zip(COCO_STAT_NAMES, grid.stats[:12])},
        "per_label_metrics": per_label,
        "pr_curve": pr_curve,
        "notes": notes,
    }


def _ap(precision: np.ndarray):
    """Mean of COCO's interpolated precision where defined; ``None`` for a class without GT."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _pr_curve(ev, t_index, labels) -> dict:
    curves = {}
    for k, name in enumerate(labels):
        p = ev.eval["precision"][t_index, :, k, 0, -1]
        if (p > -1).any():
            curves[name] = [round(float(v), 6) for v in p]
    return {"recall": [round(float(r), 4) for r in ev.params.recThrs], "precision": curves}


def _defined(value):
    value = float(value)
    return None if value < 0 or not np.isfinite(value) else value


def _mean(values) -> float:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else 0.0
