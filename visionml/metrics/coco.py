"""visionml's per-image arrays as faster-coco-eval ``COCO`` objects, and masks and polygons as
COCO run-length encodings (pycocotools), so the evaluator rasterises each polygon once.

Ids follow the input order: image ``i`` has id ``i + 1``; annotations are numbered 1, 2, ...
image by image, in the order given, so an annotation's id minus 1 is its position in the
concatenation of the images' arrays (``detection.py`` relies on it).
"""

from __future__ import annotations

import numpy as np


def ground_truth_coco(ground_truth, labels, iou_type):
    """The ground truth as a COCO object; ``labels`` become categories 1..C (checked here: every
    image's arrays agree in length and its labels are in range)."""
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


def detections_coco(coco_gt, predictions, num_classes, iou_type):
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


def flat_ground_truth(ground_truth) -> dict:
    """Every ground-truth object in annotation-id order: ``labels`` (0-based), ``iscrowd`` and
    ``image`` (its image's index)."""
    labels = [_classes(g.get("labels"), len(_boxes(g.get("boxes"))), None, "") for g in ground_truth]
    crowd = [np.asarray(g.get("iscrowd", np.zeros(len(k))), dtype=np.int64).reshape(-1)
             for g, k in zip(ground_truth, labels)]
    return {"labels": _concat(labels), "iscrowd": _concat(crowd), "image": _image_index(labels)}


def flat_predictions(predictions) -> dict:
    """Every prediction in annotation-id order: ``labels`` (0-based), ``scores``, ``image``."""
    labels = [_classes(p.get("labels"), len(_boxes(p.get("boxes"))), None, "") for p in predictions]
    scores = [np.asarray(p.get("scores", []), dtype=np.float64).reshape(-1) for p in predictions]
    return {"labels": _concat(labels), "scores": np.concatenate(scores) if scores else np.zeros(0),
            "image": _image_index(labels)}


def _concat(arrays) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)


def _image_index(per_image) -> np.ndarray:
    return np.repeat(np.arange(len(per_image)), [len(a) for a in per_image]).astype(np.int64)


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
    if num_classes is not None and len(out) and (out.min() < 0 or out.max() >= num_classes):
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
