"""COCO evaluation speed: visionml's ``detection_metrics`` against plain pycocotools ``COCOeval``
on the same synthetic data, measured in one run, interleaved, with the 12 summary numbers compared
(faster-coco-eval used directly is timed too, for reference: visionml's call also returns
per-class AP, precision, recall and PR curves).

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 3]

bbox: 500 images x 10 ground-truth boxes x 100 detections, 5 classes (issue 3: >= 3x).
segm: 100 images, ground truth as polygons, detections as COCO RLE (issue 3: >= 2x), the form
pycocotools takes; visionml's evaluation passes predicted masks as RLE too (``masks_to_rles``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import numpy as np

from visionml.metrics.detection import COCO_STAT_NAMES, detection_metrics

LABELS = [f"class{k}" for k in range(5)]


def random_boxes(rng, n, width, height):
    x0 = rng.uniform(0, width * 0.8, n)
    y0 = rng.uniform(0, height * 0.8, n)
    w = rng.uniform(8, width * 0.3, n)
    h = rng.uniform(8, height * 0.3, n)
    return np.stack([x0, y0, np.minimum(x0 + w, width), np.minimum(y0 + h, height)], axis=1)


def make_bbox_data(seed=0, images=500, gts=10, dets=100, width=640, height=480):
    rng = np.random.default_rng(seed)
    ground_truth, predictions = [], []
    for _ in range(images):
        gt_boxes = random_boxes(rng, gts, width, height)
        gt_labels = rng.integers(0, len(LABELS), gts)
        crowd = (rng.random(gts) < 0.05).astype(int)
        # half the detections are jittered copies of ground truth, half are noise
        near = gt_boxes[rng.integers(0, gts, dets // 2)] + rng.normal(0, 6, (dets // 2, 4))
        boxes = np.concatenate([near, random_boxes(rng, dets - dets // 2, width, height)])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = np.concatenate([gt_labels[rng.integers(0, gts, dets // 2)],
                                 rng.integers(0, len(LABELS), dets - dets // 2)])
        ground_truth.append({"height": height, "width": width, "boxes": gt_boxes,
                             "labels": gt_labels, "iscrowd": crowd})
        predictions.append({"boxes": boxes, "scores": rng.random(dets), "labels": labels})
    return ground_truth, predictions


def box_polygon(rng, box, points=12):
    """A jagged polygon (pixel, flat) inscribed in a box."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    radius = rng.uniform(0.6, 1.0, points)
    return np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], 1).reshape(-1)


def make_segm_data(seed=1, images=100, gts=10, dets=100, width=640, height=480):
    from pycocotools import mask as mask_utils

    ground_truth, predictions = make_bbox_data(seed, images, gts, dets, width, height)
    rng = np.random.default_rng(seed + 1)
    for gt, pred in zip(ground_truth, predictions):
        gt["polygons"] = [[box_polygon(rng, b).tolist()] for b in gt["boxes"]]
        polys = [box_polygon(rng, b).tolist() for b in pred["boxes"]]
        pred["masks"] = [mask_utils.merge(mask_utils.frPyObjects([p], height, width)) for p in polys]
    return ground_truth, predictions


def to_coco_dicts(ground_truth, predictions, iou_type):
    """The same data as pycocotools input: a dataset dict and a result list."""
    images, anns, results = [], [], []
    for i, (gt, pred) in enumerate(zip(ground_truth, predictions)):
        images.append({"id": i + 1, "height": gt["height"], "width": gt["width"]})
        for j, box in enumerate(gt["boxes"]):
            xywh = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(gt["labels"][j]) + 1,
                   "bbox": xywh, "iscrowd": int(gt["iscrowd"][j]), "area": xywh[2] * xywh[3]}
            if iou_type == "segm":
                from pycocotools import mask as mask_utils
                ann["segmentation"] = gt["polygons"][j]
                ann["area"] = float(mask_utils.area(mask_utils.merge(
                    mask_utils.frPyObjects(gt["polygons"][j], gt["height"], gt["width"]))))
            anns.append(ann)
        for j, box in enumerate(pred["boxes"]):
            res = {"image_id": i + 1, "category_id": int(pred["labels"][j]) + 1, "score": float(pred["scores"][j])}
            if iou_type == "segm":
                res["segmentation"] = pred["masks"][j]
            else:
                res["bbox"] = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
            results.append(res)
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(LABELS)]
    return {"images": images, "annotations": anns, "categories": categories}, results


def run_pycocotools(dataset, results, iou_type):
    import copy

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = copy.deepcopy(dataset), copy.deepcopy(results)  # pycocotools mutates them
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.stats[:12])


def run_faster_coco_eval(dataset, results, iou_type):
    """The library visionml wraps, used directly the pycocotools way (for reference)."""
    import copy

    from faster_coco_eval import COCO, COCOeval_faster

    dataset, results = copy.deepcopy(dataset), copy.deepcopy(results)
    start = time.perf_counter()
    gt = COCO(dataset)
    ev = COCOeval_faster(gt, gt.loadRes(results), iou_type, print_function=lambda *_: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.stats[:12])


def run_visionml(ground_truth, predictions, iou_type):
    start = time.perf_counter()
    metrics = detection_metrics(ground_truth, predictions, LABELS, iou_type=iou_type, metric_type="coco")
    elapsed = time.perf_counter() - start
    stats = np.asarray([-1.0 if metrics["coco"][n] is None else metrics["coco"][n] for n in COCO_STAT_NAMES])
    return elapsed, stats


def compare(name, ground_truth, predictions, iou_type, repeats):
    dataset, results = to_coco_dicts(ground_truth, predictions, iou_type)
    times = {"pycocotools": [], "visionml": [], "faster-coco-eval alone": []}
    stats = {}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t, stats["pycocotools"] = run_pycocotools(dataset, results, iou_type)
        times["pycocotools"].append(t)
        t, stats["visionml"] = run_visionml(ground_truth, predictions, iou_type)
        times["visionml"].append(t)
        t, stats["faster-coco-eval alone"] = run_faster_coco_eval(dataset, results, iou_type)
        times["faster-coco-eval alone"].append(t)
    base = statistics.median(times["pycocotools"])
    print(f"\n{name}")
    for who, ts in times.items():
        med = statistics.median(ts)
        print(f"  {who:<28} median {med:7.3f} s  (runs: {', '.join(f'{t:.3f}' for t in ts)})"
              f"  speed-up vs pycocotools: {base / med:5.2f}x")
    diff = max(float(np.max(np.abs(stats[w] - stats["pycocotools"]))) for w in stats)
    print(f"  12 COCO stats (pycocotools): {np.round(stats['pycocotools'], 4).tolist()}")
    print(f"  max |difference| of the 12 stats vs pycocotools: {diff:.2e}")
    return base / statistics.median(times["visionml"]), diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gt, pred = make_bbox_data()
    bbox_ratio, bbox_diff = compare("bbox: 500 images x 10 GT x 100 detections, 5 classes", gt, pred, "bbox",
                                    args.repeats)
    gt, pred = make_segm_data()
    segm_ratio, segm_diff = compare("segm: 100 images (640x480) x 10 GT polygons x 100 RLE detections, 5 classes",
                                    gt, pred, "segm", args.repeats)
    print(f"\nbbox {bbox_ratio:.2f}x (target >= 3x), segm {segm_ratio:.2f}x (target >= 2x); "
          f"stats identical: {max(bbox_diff, segm_diff) < 1e-12}")


if __name__ == "__main__":
    main()
