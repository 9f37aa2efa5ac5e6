"""Small synthetic detection data shared by the metric tests (helpers, not fixtures)."""

from __future__ import annotations

import numpy as np


def random_detection_case(seed: int, images: int = 30, classes: int = 3, width: int = 160, height: int = 120,
                          crowd_rate: float = 0.1, segm: bool = False):
    """Ground truth and predictions in visionml's per-image format: jittered copies of the ground
    truth (some right, some off) plus noise boxes, random scores, a few crowd objects and some
    images without objects. With ``segm``: polygons for ground truth, bool masks for predictions."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    ground_truth, predictions = [], []
    for i in range(images):
        n_gt = 0 if i % 7 == 0 else int(rng.integers(1, 6))
        gt_boxes = _boxes(rng, n_gt, width, height)
        gt_labels = rng.integers(0, classes, n_gt)
        n_near, n_noise = int(rng.integers(0, 2 * n_gt + 1)), int(rng.integers(0, 4))
        source = rng.integers(0, max(n_gt, 1), n_near)  # which object each near-miss copies
        near = gt_boxes[source] + rng.normal(0, 3, (n_near, 4)) if n_gt else np.zeros((0, 4))
        boxes = np.concatenate([near, _boxes(rng, n_noise, width, height)])
        boxes = np.clip(boxes, 0, [width, height, width, height])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 2)
        near_labels = gt_labels[source] if n_gt else np.zeros(0, dtype=np.int64)
        labels = np.concatenate([near_labels, rng.integers(0, classes, n_noise)]).astype(np.int64)
        gt = {"height": height, "width": width, "boxes": gt_boxes, "labels": gt_labels,
              "iscrowd": (rng.random(n_gt) < crowd_rate).astype(np.int64)}
        pred = {"boxes": boxes, "scores": rng.random(len(boxes)), "labels": labels}
        if segm:
            gt["polygons"] = [[_polygon(rng, b)] for b in gt_boxes]
            masks = [mask_utils.decode(mask_utils.frPyObjects([_polygon(rng, b)], height, width))[..., 0]
                     for b in boxes]
            pred["masks"] = np.array(masks, dtype=bool).reshape(len(boxes), height, width)
        ground_truth.append(gt)
        predictions.append(pred)
    return ground_truth, predictions


def _boxes(rng, n, width, height):
    x0, y0 = rng.uniform(0, width * 0.7, n), rng.uniform(0, height * 0.7, n)
    w, h = rng.uniform(6, width * 0.4, n), rng.uniform(6, height * 0.4, n)
    return np.stack([x0, y0, np.minimum(x0 + w, width), np.minimum(y0 + h, height)], axis=1)


def _polygon(rng, box, points=8):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1).reshape(-1).tolist()


def to_pycocotools(ground_truth, predictions, iou_type, num_classes):
    """The same data as a COCO dataset dict and a result list, for plain pycocotools."""
    from pycocotools import mask as mask_utils

    images, anns, results = [], [], []
    for i, (gt, pred) in enumerate(zip(ground_truth, predictions)):
        images.append({"id": i + 1, "height": gt["height"], "width": gt["width"]})
        for j, b in enumerate(gt["boxes"]):
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(gt["labels"][j]) + 1,
                   "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "iscrowd": int(gt["iscrowd"][j]),
                   "area": float((b[2] - b[0]) * (b[3] - b[1]))}
            if iou_type == "segm":
                ann["segmentation"] = gt["polygons"][j]
                rle = mask_utils.merge(mask_utils.frPyObjects(gt["polygons"][j], gt["height"], gt["width"]))
                ann["area"] = float(mask_utils.area(rle))
            anns.append(ann)
        for j, b in enumerate(pred["boxes"]):
            res = {"image_id": i + 1, "category_id": int(pred["labels"][j]) + 1, "score": float(pred["scores"][j])}
            if iou_type == "segm":
                res["segmentation"] = mask_utils.encode(np.asfortranarray(pred["masks"][j].astype(np.uint8)))
            else:
                res["bbox"] = [b[0], b[1], b[2] - b[0], b[3] - b[1]]
            results.append(res)
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    return {"images": images, "annotations": anns, "categories": categories}, results
