"""Detection / instance-segmentation metrics: a case computed on paper, agreement with plain
pycocotools, and the edge cases with their defined results. (The VOC AP itself is pinned in
test_voc_ap.py, Azure's keys in test_azure_keys.py.)"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from visionml.metrics.detection import COCO_STAT_NAMES, detection_metrics, masks_to_rles

from .cases import random_detection_case, to_pycocotools

# pycocotools' decode under numpy 2 (its own code, harmless)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LABELS = ["cat", "dog"]

# Three "cat" objects on a 100x20 image, one crowd region, and five predictions.
#   A = [0,0,10,10]  B = [20,0,30,10]  C = [40,0,50,10]  crowd D = [60,0,80,10]
# by score:  d0 .95 inside D          -> matched to the crowd region: ignored (neither TP nor FP)
#            d1 .90 == A              -> TP
#            d2 .80 = [44,0,54,10]    -> IoU with C = 60 / 140 = 0.43: FP at 0.5, TP at 0.4
#            d3 .70 == B              -> TP
#            d4 .60 == A again        -> FP (A is taken)
HAND_GT = [{"height": 20, "width": 100,
            "boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 80, 10]],
            "labels": [0, 0, 0, 0], "iscrowd": [0, 0, 0, 1]}]
HAND_PRED = [{"boxes": [[62, 0, 78, 10], [0, 0, 10, 10], [44, 0, 54, 10], [20, 0, 30, 10], [0, 0, 10, 10]],
              "scores": [0.95, 0.9, 0.8, 0.7, 0.6], "labels": [0, 0, 0, 0, 0]}]


def test_hand_computed_average_precision_at_iou_05():
    m = detection_metrics(HAND_GT, HAND_PRED, LABELS, metric_type="voc", iou_threshold=0.5)
    # IoU 0.5, 3 GT. Ranked TP, FP, TP, FP: recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2.
    # VOC (all points): the envelope is 1 up to recall 1/3, 2/3 up to 2/3: AP = 1/3 + 2/9 = 5/9.
    # COCO interpolates (best precision at recall >= r) at r = 0, 0.01, ..., 1:
    #   r = 0.00 .. 0.33 -> 1      (34 points)
    #   r = 0.34 .. 0.66 -> 2/3    (33 points)
    #   r = 0.67 .. 1.00 -> 0      (34 points, never reached)
    # AP = (34 * 1 + 33 * 2/3) / 101 = 56 / 101
    cat = m["per_label"]["cat"]
    assert cat["average_precision"] == pytest.approx(5 / 9, abs=1e-12)
    assert m["mean_average_precision"] == m["voc_mean_average_precision"] == pytest.approx(5 / 9, abs=1e-12)
    assert cat["average_precision_coco"] == pytest.approx(56 / 101, abs=1e-12)
    # Precision and recall over all predictions: TP 2, FP 2 (d0 ignored), GT 3.
    assert (cat["true_positives"], cat["false_positives"], cat["num_predictions"]) == (2, 2, 5)
    assert cat["precision"] == pytest.approx(2 / 4)
    assert cat["recall"] == pytest.approx(2 / 3)
    assert cat["num_ground_truth"] == 3  # the crowd region is not an object to find
    # Exact boxes have IoU 1, so every COCO threshold 0.5..0.95 sees the same ranking:
    assert m["coco"]["AP"] == pytest.approx(56 / 101, abs=1e-12)
    assert m["coco_mean_average_precision"] == pytest.approx(56 / 101, abs=1e-12)
    # "dog" has no ground truth: undefined, not zero, and out of the means.
    assert m["per_label"]["dog"]["average_precision"] is None
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert any("dog" in note for note in m["notes"])


def test_score_threshold_decides_azures_numbers_not_the_coco_summary():
    # The deployment's box_score_threshold 0.75 keeps d0 (crowd), d1 (TP) and d2 (FP): TP 1, FP 1.
    m = detection_metrics(HAND_GT, HAND_PRED, LABELS, iou_threshold=0.5, score_threshold=0.75)
    cat = m["per_label"]["cat"]
    assert (cat["true_positives"], cat["false_positives"], cat["num_predictions"]) == (1, 1, 3)
    assert cat["precision"] == pytest.approx(1 / 2) and cat["recall"] == pytest.approx(1 / 3)
    # Azure's AP is over those boxes only: recall stops at 1/3 with precision 1, so AP = 1/3 ...
    assert cat["average_precision"] == pytest.approx(1 / 3, abs=1e-12)
    assert m["mean_average_precision"] == pytest.approx(1 / 3, abs=1e-12)
    # ... while the COCO summary integrates over every prediction given, as without the threshold.
    assert cat["average_precision_coco"] == pytest.approx(56 / 101, abs=1e-12)
    assert m["coco"]["AP"] == m["coco_mean_average_precision"] == pytest.approx(56 / 101, abs=1e-12)
    # A threshold under every score changes nothing; one over every score leaves no predictions.
    low = detection_metrics(HAND_GT, HAND_PRED, LABELS, score_threshold=0.1)
    assert low.pop("score_threshold") == 0.1
    assert low == {k: v for k, v in detection_metrics(HAND_GT, HAND_PRED, LABELS).items() if k != "score_threshold"}
    none = detection_metrics(HAND_GT, HAND_PRED, LABELS, score_threshold=0.99)
    cat = none["per_label"]["cat"]
    assert (cat["true_positives"], cat["num_predictions"], cat["precision"], cat["recall"]) == (0, 0, 0.0, 0.0)
    assert (cat["average_precision"], none["mean_average_precision"]) == (0.0, 0.0)
    assert none["coco"] == m["coco"]


def test_score_threshold_filters_predicted_masks_with_their_boxes():
    ground_truth, predictions = random_detection_case(3, images=12, classes=2, segm=True)
    full = detection_metrics(ground_truth, predictions, LABELS, iou_type="segm")
    cut = detection_metrics(ground_truth, predictions, LABELS, iou_type="segm", score_threshold=0.5)
    assert cut["coco"] == full["coco"]
    kept = sum(int((np.asarray(p["scores"]) >= 0.5).sum()) for p in predictions)
    assert sum(m["num_predictions"] for m in cut["per_label"].values()) == kept
    by_hand = [{**p, "boxes": p["boxes"][p["scores"] >= 0.5], "labels": p["labels"][p["scores"] >= 0.5],
                "masks": p["masks"][p["scores"] >= 0.5], "scores": p["scores"][p["scores"] >= 0.5]}
               for p in predictions]
    # Azure's numbers are those of the kept boxes with their masks, given alone
    alone = detection_metrics(ground_truth, by_hand, LABELS, iou_type="segm")
    assert cut["per_label_metrics"] == alone["per_label_metrics"]
    assert cut["mean_average_precision"] == alone["mean_average_precision"] != full["mean_average_precision"]


def test_hand_computed_at_a_threshold_off_the_coco_grid():
    m = detection_metrics(HAND_GT, HAND_PRED, LABELS, metric_type="voc", iou_threshold=0.4)
    # IoU 0.4: d2 now matches C. Ranked TP, TP, TP, FP: recall reaches 1 at precision 1, so AP = 1.
    cat = m["per_label"]["cat"]
    assert m["iou_threshold"] == 0.4
    assert cat["average_precision"] == pytest.approx(1.0)
    assert (cat["true_positives"], cat["false_positives"]) == (3, 1)
    assert cat["precision"] == pytest.approx(3 / 4) and cat["recall"] == pytest.approx(1.0)
    # the COCO numbers stay on COCO's own grid
    assert m["coco"]["AP"] == pytest.approx(56 / 101, abs=1e-12)
    assert m["voc_pr_curve"]["precision"]["cat"] == [1.0] * 101


def test_crowd_matches_neither_help_nor_hurt():
    without = copy.deepcopy(HAND_PRED)
    for key in ("boxes", "scores", "labels"):
        without[0][key] = without[0][key][1:]  # drop d0, the prediction on the crowd region
    a = detection_metrics(HAND_GT, HAND_PRED, LABELS)
    b = detection_metrics(HAND_GT, without, LABELS)
    for key in ("average_precision", "precision", "recall", "true_positives", "false_positives"):
        assert a["per_label"]["cat"][key] == b["per_label"]["cat"][key]
    # COCO's AR1 is the exception: it keeps each image's single best-scored prediction, here the
    # ignored d0, so nothing is left to recall with one prediction per image.
    assert {k: v for k, v in a["coco"].items() if k != "AR1"} == {k: v for k, v in b["coco"].items() if k != "AR1"}


def test_metric_type_picks_the_primary():
    voc = detection_metrics(HAND_GT, HAND_PRED, LABELS, metric_type="voc", iou_threshold=0.4)
    coco = detection_metrics(HAND_GT, HAND_PRED, LABELS, metric_type="coco", iou_threshold=0.4)
    both = detection_metrics(HAND_GT, HAND_PRED, LABELS, metric_type="coco_voc", iou_threshold=0.4)
    assert voc["mean_average_precision"] == pytest.approx(1.0)
    # coco: COCO's AP at IoU 0.5 whatever the IoU threshold (Azure's coco_score[1]); here d2 is a FP
    assert coco["mean_average_precision"] == pytest.approx(56 / 101)
    # coco_voc: both are computed, the VOC one is the primary (Azure's order of assignment)
    assert both["mean_average_precision"] == voc["mean_average_precision"]
    assert both["coco_metrics"] == coco["coco_metrics"] and "coco_metrics" not in voc


def _pycocotools_stats(ground_truth, predictions, iou_type, num_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = to_pycocotools(ground_truth, predictions, iou_type, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:12]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_all_12_coco_stats_agree_with_pycocotools(iou_type):
    gt, pred = random_detection_case(seed=3, images=25 if iou_type == "segm" else 60, width=400, height=300,
                                     segm=iou_type == "segm")
    m = detection_metrics(gt, pred, ["a", "b", "c"], iou_type=iou_type, metric_type="coco")
    expected = _pycocotools_stats(gt, pred, iou_type, 3)
    ours = [-1.0 if m["coco"][name] is None else m["coco"][name] for name in COCO_STAT_NAMES]
    assert expected[1] > 0.1  # real matches, not an all-zero agreement
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(m["coco_metrics"].values()), expected, rtol=0, atol=1e-12)
    assert m["coco_mean_average_precision"] == pytest.approx(expected[0], abs=1e-12)
    assert m["mean_average_precision"] == pytest.approx(expected[1], abs=1e-12)  # coco: AP50


def test_recall_and_counts_agree_with_each_other():
    gt, pred = random_detection_case(seed=5, images=40)
    m = detection_metrics(gt, pred, ["a", "b", "c"])
    for k, name in enumerate(["a", "b", "c"]):
        row = m["per_label"][name]
        n_gt = sum(int(((g["labels"] == k) & (g["iscrowd"] == 0)).sum()) for g in gt)
        n_pred = sum(int((p["labels"] == k).sum()) for p in pred)
        assert (row["num_ground_truth"], row["num_predictions"]) == (n_gt, n_pred)
        assert row["recall"] == pytest.approx(row["true_positives"] / n_gt)
        assert row["true_positives"] + row["false_positives"] <= n_pred


def test_segm_masks_and_polygons_give_the_same_numbers():
    from visionml.geometry import polygons_abs_to_mask

    gt, pred = random_detection_case(seed=7, images=12, segm=True)
    as_masks = [{**g, "polygons": None,
                 "masks": np.array([polygons_abs_to_mask(p, g["height"], g["width"]) for p in g["polygons"]],
                                   dtype=bool).reshape(-1, g["height"], g["width"])} for g in gt]
    as_rles = [{**p, "masks": masks_to_rles(p["masks"])} for p in pred]
    as_float = [{**p, "masks": p["masks"][:, None].astype(np.float32)} for p in pred]  # [N, 1, H, W] scores
    a = detection_metrics(gt, pred, ["a", "b", "c"], iou_type="segm")
    b = detection_metrics(as_masks, as_rles, ["a", "b", "c"], iou_type="segm")
    c = detection_metrics(gt, as_float, ["a", "b", "c"], iou_type="segm")
    assert a["coco"] == b["coco"] == c["coco"]
    assert a["per_label"] == b["per_label"] and a["per_label_metrics"] == b["per_label_metrics"]


def test_segm_is_judged_on_masks_not_boxes():
    # Same box, but the predicted mask is the other half of it: a perfect box, a wrong mask.
    gt = [{"height": 20, "width": 20, "boxes": [[0, 0, 20, 20]], "labels": [0], "iscrowd": [0],
           "polygons": [[[0, 0, 10, 0, 10, 20, 0, 20]]]}]
    mask = np.zeros((1, 20, 20), dtype=bool)
    mask[0, :, 10:] = True
    pred = [{"boxes": [[0, 0, 20, 20]], "scores": [0.9], "labels": [0], "masks": mask}]
    assert detection_metrics(gt, pred, ["a"], iou_type="bbox")["mean_average_precision"] == pytest.approx(1.0)
    assert detection_metrics(gt, pred, ["a"], iou_type="segm")["mean_average_precision"] == 0.0


def _empty_pred():
    return {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, dtype=np.int64)}


def test_no_predictions_at_all():
    gt, _ = random_detection_case(seed=1, images=10)
    m = detection_metrics(gt, [_empty_pred() for _ in gt], ["a", "b", "c"], metric_type="coco_voc")
    assert m["mean_average_precision"] == 0.0
    assert m["coco"]["AP"] == 0.0 and m["coco"]["AR100"] == 0.0
    for row in m["per_label"].values():
        assert (row["average_precision"], row["precision"], row["recall"]) == (0.0, 0.0, 0.0)
    json.dumps(m, allow_nan=False)


def test_no_objects_anywhere():
    gt = [{"height": 50, "width": 50, "boxes": [], "labels": []} for _ in range(3)]
    pred = [{"boxes": [[0, 0, 10, 10]], "scores": [0.5], "labels": [0]}, _empty_pred(), _empty_pred()]
    m = detection_metrics(gt, pred, ["a", "b"])
    assert m["mean_average_precision"] == 0.0
    assert m["per_label"]["a"] == {
        "average_precision": None, "average_precision_coco": None, "precision": 0.0, "recall": None,
        "num_ground_truth": 0, "num_predictions": 1, "true_positives": 0, "false_positives": 1}
    assert all(v is None for v in m["coco"].values())
    assert "no ground-truth objects" in m["notes"][0]
    json.dumps(m, allow_nan=False)


def test_images_without_objects_only_add_false_positives():
    gt = [{"height": 50, "width": 50, "boxes": [[0, 0, 10, 10]], "labels": [0]},
          {"height": 50, "width": 50, "boxes": [], "labels": []}]
    pred = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]},
            {"boxes": [[5, 5, 20, 20]], "scores": [0.5], "labels": [0]}]
    m = detection_metrics(gt, pred, ["a"])
    row = m["per_label"]["a"]
    assert row["average_precision"] == pytest.approx(1.0)  # the FP ranks below the only TP
    assert (row["precision"], row["recall"]) == (0.5, 1.0)


def test_class_absent_from_predictions_and_single_class():
    gt = [{"height": 40, "width": 40, "boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 1]}]
    pred = [{"boxes": [[0, 0, 10, 10]], "scores": [0.8], "labels": [0]}]
    m = detection_metrics(gt, pred, ["a", "b"])
    assert m["per_label"]["b"]["average_precision"] == 0.0  # has GT, never predicted
    assert m["per_label"]["b"]["precision"] == 0.0
    assert m["mean_average_precision"] == pytest.approx(0.5)
    single = detection_metrics([{**gt[0], "boxes": gt[0]["boxes"][:1], "labels": [0]}], pred, ["a"])
    assert single["mean_average_precision"] == pytest.approx(1.0)
    assert single["notes"] == []


def test_more_than_100_predictions_per_image():
    gt = [{"height": 500, "width": 500, "boxes": [[0, 0, 10, 10]], "labels": [0]}]
    boxes = [[200 + i, 200, 210 + i, 210] for i in range(150)] + [[0, 0, 10, 10]]
    pred = [{"boxes": boxes, "scores": [0.9] * 150 + [0.1], "labels": [0] * 151}]
    m = detection_metrics(gt, pred, ["a"])
    row = m["per_label"]["a"]
    # Azure's numbers count every box: the TP at 0.1 ranks 151st, precision 1/151 at recall 1 ...
    assert (row["num_predictions"], row["true_positives"], row["false_positives"]) == (151, 1, 150)
    assert row["average_precision"] == pytest.approx(1 / 151, abs=1e-12)
    # ... while COCO's summary keeps the 100 best-scored predictions of an image and class: cut.
    assert row["average_precision_coco"] == 0.0 and m["coco"]["AR100"] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"metric_type": "map"}, "metric_type"),
    ({"iou_type": "mask"}, "iou_type"),
    ({"iou_threshold": 0.0}, "iou_threshold"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        detection_metrics(HAND_GT, HAND_PRED, LABELS, **kwargs)


def test_bad_inputs_name_the_image():
    with pytest.raises(ValueError, match=r"predictions\[0\].*out of range"):
        detection_metrics(HAND_GT, [{**HAND_PRED[0], "labels": [0, 0, 0, 0, 2]}], LABELS)
    with pytest.raises(ValueError, match="1 ground-truth images but 2"):
        detection_metrics(HAND_GT, HAND_PRED * 2, LABELS)
    with pytest.raises(ValueError, match=r"predictions\[0\].*needs 'masks'"):
        detection_metrics([{**HAND_GT[0], "masks": np.zeros((4, 20, 100), bool)}], HAND_PRED, LABELS,
                          iou_type="segm")
