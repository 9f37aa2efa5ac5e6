"""Azure's VOC mean_average_precision: all-point interpolated AP at the IoU threshold over the boxes
a deployment returns. Pinned on a case worked on paper and against two implementations written
here: the library's own precision array sampled where the all-point envelope steps, and a
brute-force sort-and-match. Plus: the ``coco`` primary is the COCO evaluator's AP50."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from visionml.metrics.detection import detection_metrics
from visionml.metrics.voc import all_point_ap

from .cases import random_detection_case, to_pycocotools

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LABELS = ["cat", "dog"]
# Image 0 (100 x 20): cats A = [0,0,10,10], B = [20,0,30,10], C = [40,0,50,10], crowd region D = [60,0,80,10].
# Images 1 and 2: one dog each, E = F = [0,0,10,10].
PAPER_GT = [
    {"height": 20, "width": 100, "boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 80, 10]],
     "labels": [0, 0, 0, 0], "iscrowd": [0, 0, 0, 1]},
    {"height": 100, "width": 100, "boxes": [[0, 0, 10, 10]], "labels": [1], "iscrowd": [0]},
    {"height": 100, "width": 100, "boxes": [[0, 0, 10, 10]], "labels": [1], "iscrowd": [0]},
]
PAPER_PRED = [
    # cats: .95 inside D (crowd: ignored), .90 = A (TP), .80 = [44,0,54,10] (IoU with C 60/140: FP),
    #       .70 = B (TP), .60 = A again (FP: A is taken)
    {"boxes": [[62, 0, 78, 10], [0, 0, 10, 10], [44, 0, 54, 10], [20, 0, 30, 10], [0, 0, 10, 10]],
     "scores": [0.95, 0.9, 0.8, 0.7, 0.6], "labels": [0, 0, 0, 0, 0]},
    # dogs: .90 far from E (FP), .80 = E (TP)
    {"boxes": [[50, 50, 60, 60], [0, 0, 10, 10]], "scores": [0.9, 0.8], "labels": [1, 1]},
    # dogs: .70 far from F (FP), .60 = F (TP)
    {"boxes": [[30, 30, 40, 40], [0, 0, 10, 10]], "scores": [0.7, 0.6], "labels": [1, 1]},
]


def test_all_point_ap_worked_on_paper():
    """Every box counted (no score threshold), IoU 0.5.

    cat, 3 objects (D is a crowd region, not an object), ranked: ignored, TP, FP, TP, FP
        precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3 (the ignored one adds no point)
        envelope (best precision at that recall or beyond): 1 up to recall 1/3, 2/3 up to 2/3
        AP = 1/3 * 1 + (2/3 - 1/3) * 2/3 = 5/9
        (COCO's 101 recall points give (34 * 1 + 33 * 2/3) / 101 = 56/101 instead)
    dog, 2 objects, ranked: FP, TP, FP, TP
        precision 0, 1/2, 1/3, 2/4 at recall 0, 1/2, 1/2, 1
        envelope 1/2 up to recall 1: AP = 1/2 * 1/2 + 1/2 * 1/2 = 1/2
    mean_average_precision = (5/9 + 1/2) / 2 = 19/36
    precision (last point): cat 2/4, dog 2/4 -> 1/2; recall: cat 2/3, dog 1 -> 5/6
    """
    m = detection_metrics(PAPER_GT, PAPER_PRED, LABELS, iou_threshold=0.5)
    assert m["per_label"]["cat"]["average_precision"] == pytest.approx(5 / 9, abs=1e-12)
    assert m["per_label"]["dog"]["average_precision"] == pytest.approx(1 / 2, abs=1e-12)
    assert m["mean_average_precision"] == m["voc_mean_average_precision"] == pytest.approx(19 / 36, abs=1e-12)
    assert m["per_label"]["cat"]["average_precision_coco"] == pytest.approx(56 / 101, abs=1e-12)
    assert (m["precision"], m["recall"]) == (pytest.approx(1 / 2), pytest.approx(5 / 6))
    assert all_point_ap([1, 1 / 2, 2 / 3, 2 / 4], [1 / 3, 1 / 3, 2 / 3, 2 / 3]) == pytest.approx(5 / 9, abs=1e-15)
    assert all_point_ap([0, 1 / 2, 1 / 3, 2 / 4], [0, 1 / 2, 1 / 2, 1]) == pytest.approx(1 / 2, abs=1e-15)


def test_all_point_ap_counts_only_the_deployed_boxes_worked_on_paper():
    """box_score_threshold 0.65: the deployment drops cat .60 and dog .60.

    cat: ignored, TP, FP, TP: the dropped FP added no recall, so AP stays 5/9
    dog: FP, TP, FP: recall stops at 1/2 with the envelope at 1/2: AP = 1/2 * 1/2 = 1/4
    mean_average_precision = (5/9 + 1/4) / 2 = 29/72
    precision: cat 2/3, dog 1/3 -> 1/2; recall: cat 2/3, dog 1/2 -> 7/12
    The COCO summary still counts every box: cat AP@[.5:.95] 56/101, as above.
    """
    m = detection_metrics(PAPER_GT, PAPER_PRED, LABELS, iou_threshold=0.5, score_threshold=0.65)
    assert m["per_label"]["cat"]["average_precision"] == pytest.approx(5 / 9, abs=1e-12)
    assert m["per_label"]["dog"]["average_precision"] == pytest.approx(1 / 4, abs=1e-12)
    assert m["mean_average_precision"] == pytest.approx(29 / 72, abs=1e-12)
    assert (m["precision"], m["recall"]) == (pytest.approx(1 / 2), pytest.approx(7 / 12))
    assert m["per_label"]["cat"]["average_precision_coco"] == pytest.approx(56 / 101, abs=1e-12)


# ----------------------------------------------------------------------------- second implementations

def _deployed(predictions, threshold):
    out = []
    for p in predictions:
        keep = np.asarray(p["scores"]) >= threshold
        out.append({"boxes": np.asarray(p["boxes"]).reshape(-1, 4)[keep], "scores": np.asarray(p["scores"])[keep],
                    "labels": np.asarray(p["labels"])[keep]})
    return out


def _objects(ground_truth, k):
    return sum(int(((np.asarray(g["labels"]) == k) & (np.asarray(g["iscrowd"]) == 0)).sum()) for g in ground_truth)


def _library_all_point_ap(ground_truth, predictions, num_classes, iou_threshold):
    """faster-coco-eval's precision array, sampled at the recalls where the all-point envelope can
    step: with n objects a class's recall moves in steps of 1/n, and COCO's interpolated precision
    at recall r is the best precision at recall r or beyond, i.e. the envelope. Summing it times
    the width of each step gives the area under the envelope exactly."""
    from faster_coco_eval import COCO, COCOeval_faster

    counts = [_objects(ground_truth, k) for k in range(num_classes)]
    grid = np.unique([j / n for n in counts if n for j in range(1, n + 1)])
    dataset, results = to_pycocotools(ground_truth, predictions, "bbox", num_classes)
    gt = COCO(dataset)
    ev = COCOeval_faster(gt, gt.loadRes(results), "bbox", print_function=lambda *a, **k: None)
    ev.params.iouThrs = np.array([iou_threshold])
    ev.params.recThrs = grid
    ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
    ev.params.maxDets = [10_000]
    ev.evaluate()
    ev.accumulate()
    widths = np.diff(grid, prepend=0.0)
    return [float(np.sum(widths * ev.eval["precision"][0, :, k, 0, 0])) if counts[k] else None
            for k in range(num_classes)]


def _iou(box, other, crowd):
    ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    union = area if crowd else area + (other[2] - other[0]) * (other[3] - other[1]) - inter
    return inter / union if union > 0 else 0.0


def _brute_force_ap(ground_truth, predictions, k, iou_threshold):
    """Match the way COCO's evaluateImg does, by hand: per image, predictions best-scored first each
    take the free object of highest IoU (at least the threshold; an object before a crowd region,
    which may be hit any number of times and makes the prediction count for nothing); then rank all
    predictions and take the mean over the recall levels j/n of the best precision at recall >= j/n."""
    ranked = []  # (score, image, position, is true positive or None for ignored)
    for i, (g, p) in enumerate(zip(ground_truth, predictions)):
        objects = [(b, int(c)) for b, label, c in zip(g["boxes"], g["labels"], g["iscrowd"]) if label == k]
        objects.sort(key=lambda o: o[1])  # objects first, crowd regions last
        taken = [False] * len(objects)
        mine = [(s, j, b) for j, (b, s, label) in enumerate(zip(p["boxes"], p["scores"], p["labels"])) if label == k]
        for s, j, b in sorted(mine, key=lambda d: -d[0]):
            best, best_iou = None, min(iou_threshold, 1 - 1e-10)
            for o, (gb, crowd) in enumerate(objects):
                if taken[o] and not crowd:
                    continue
                if best is not None and not objects[best][1] and crowd:
                    break
                value = _iou(b, gb, crowd)
                if value < best_iou:
                    continue
                best, best_iou = o, value
            if best is not None and not objects[best][1]:
                taken[best] = True
            ranked.append((s, i, j, None if best is not None and objects[best][1] else best is not None))
    ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
    n = _objects(ground_truth, k)
    points, tp, fp = [], 0, 0
    for *_, hit in ranked:
        if hit is None:
            continue
        tp, fp = tp + hit, fp + (not hit)
        points.append((tp / (tp + fp), tp / n))
    return sum(max([p for p, r in points if r >= j / n - 1e-12], default=0.0) for j in range(1, n + 1)) / n


@pytest.mark.parametrize("seed, threshold", [(3, 0.3), (5, 0.0), (11, 0.5)])
def test_all_point_ap_agrees_with_two_implementations_written_here(seed, threshold):
    gt, pred = random_detection_case(seed, images=40, crowd_rate=0.15)
    m = detection_metrics(gt, pred, ["a", "b", "c"], iou_threshold=0.5, score_threshold=threshold)
    deployed = _deployed(pred, threshold)
    library = _library_all_point_ap(gt, deployed, 3, 0.5)
    ours = [m["per_label"][name]["average_precision"] for name in "abc"]
    brute = [_brute_force_ap(gt, deployed, k, 0.5) for k in range(3)]
    assert min(ours) > 0.05 and max(ours) < 0.95  # a real ranking, not a trivial 0 or 1
    np.testing.assert_allclose(ours, library, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, brute, rtol=0, atol=1e-12)
    assert m["mean_average_precision"] == pytest.approx(np.mean(ours), abs=1e-15)


def test_all_point_ap_at_another_iou_threshold():
    gt, pred = random_detection_case(8, images=30)
    m = detection_metrics(gt, pred, ["a", "b", "c"], iou_threshold=0.35, score_threshold=0.2)
    deployed = _deployed(pred, 0.2)
    ours = [m["per_label"][name]["average_precision"] for name in "abc"]
    np.testing.assert_allclose(ours, _library_all_point_ap(gt, deployed, 3, 0.35), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, [_brute_force_ap(gt, deployed, k, 0.35) for k in range(3)], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- coco

def _pycocotools_stats(ground_truth, predictions, num_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = to_pycocotools(ground_truth, predictions, "bbox", num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:12]


def test_coco_primary_is_the_coco_evaluators_ap50_over_the_deployed_boxes():
    gt, pred = random_detection_case(seed=6, images=50)
    m = detection_metrics(gt, pred, ["a", "b", "c"], metric_type="coco", iou_threshold=0.7, score_threshold=0.4)
    deployed = _pycocotools_stats(gt, _deployed(pred, 0.4), 3)
    every = _pycocotools_stats(gt, pred, 3)
    assert deployed[1] != pytest.approx(every[1])  # the threshold matters here
    assert m["mean_average_precision"] == pytest.approx(deployed[1], abs=1e-12)  # AP50, whatever the IoU threshold
    np.testing.assert_allclose(list(m["coco_metrics"].values()), deployed, rtol=0, atol=1e-12)
    # the full COCO summary beside it: every box given
    assert m["coco"]["AP50"] == pytest.approx(every[1], abs=1e-12)
    assert m["coco_mean_average_precision"] == pytest.approx(every[0], abs=1e-12)
    # coco_voc: the same COCO numbers, the VOC AP as the primary (Azure assigns it last)
    both = detection_metrics(gt, pred, ["a", "b", "c"], metric_type="coco_voc", iou_threshold=0.7, score_threshold=0.4)
    voc = detection_metrics(gt, pred, ["a", "b", "c"], metric_type="voc", iou_threshold=0.7, score_threshold=0.4)
    assert both["coco_metrics"] == m["coco_metrics"]
    assert both["mean_average_precision"] == voc["mean_average_precision"] == voc["voc_mean_average_precision"]
