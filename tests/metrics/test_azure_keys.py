"""metrics.json carries Azure's keys in Azure's shapes, so a script written for an Azure AutoML run's
metrics reads visionml's. The names below are written out the way Azure's own constants spell them
(``MetricsLiterals`` in ``common/constants.py``, the logged names in ``common/utils.py``,
``cocotools.convert_coco_metrics``; classification: the ``azureml.metrics`` constants), and the
values are worked on paper."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from visionml.cli import main
from visionml.data.reader import read_dataset
from visionml.data.sample import make_sample_data
from visionml.metrics.classification import multiclass_metrics, multilabel_metrics
from visionml.metrics.detection import detection_metrics
from visionml.tasks import DETECTION

from tests.support import make_untrained_model_folder

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Azure's MetricsLiterals and logged metric names, as a script reading an Azure run has them
MEAN_AVERAGE_PRECISION = "mean_average_precision"
PRECISION, RECALL, AVERAGE_PRECISION = "precision", "recall", "average_precision"
PER_LABEL_METRICS = "per_label_metrics"
PRECISIONS_PER_SCORE_THRESHOLD = "precisions_per_score_threshold"
RECALLS_PER_SCORE_THRESHOLD = "recalls_per_score_threshold"
IMAGE_LEVEL_BINARY_CLASSIFIER_METRICS = "image_level_binary_classifier_metrics"
COCO_METRICS = "coco_metrics"
UNDEFINED = -1.0
COCO_SUMMARY = [  # cocotools.convert_coco_metrics's keys, in order
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
]


def confusion_matrix_name(score_threshold):  # "confusion_matrix" + "_score_threshold_{}".format(st)
    return "confusion_matrix_score_threshold_{}".format(score_threshold)


LABELS = ["cat", "dog", "bird"]
# Image 0: cat A = [0,0,10,10], dog B = [20,0,30,10]. Image 1: dog C = [0,0,10,10]. Image 2: nothing.
GT = [{"height": 50, "width": 50, "boxes": [[0, 0, 10, 10], [20, 0, 30, 10]], "labels": [0, 1]},
      {"height": 50, "width": 50, "boxes": [[0, 0, 10, 10]], "labels": [1]},
      {"height": 50, "width": 50, "boxes": [], "labels": []}]
# Image 0: cat .9 on A, cat .6 on B, dog .4 on B. Image 2: dog .8 where there is nothing. Nothing is a bird.
PRED = [{"boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [20, 0, 30, 10]], "scores": [0.9, 0.6, 0.4], "labels": [0, 0, 1]},
        {"boxes": [], "scores": [], "labels": []},
        {"boxes": [[0, 0, 10, 10]], "scores": [0.8], "labels": [1]}]


def _as_read_back(metrics):
    return json.loads(json.dumps(metrics, allow_nan=False))


def test_detection_keys_read_the_azure_way_worked_on_paper():
    """Per class (IoU 0.5): cat .9 TP, .6 FP (A is taken): AP 1, precision 1/2, recall 1.
    dog .8 FP, .4 TP, 2 objects: points (0, 0), (1/2, 1/2): AP 1/2 * 1/2 = 1/4, precision 1/2,
    recall 1/2. bird: nothing to find, nothing predicted: all undefined (-1).
    mean_average_precision = (1 + 1/4) / 2 = 5/8, bird left out; precision 1/2, recall 3/4.
    Image level (images with objects: 0 and 1), ranked .9 TP (image 0), .8 FP (image 2), .6 FP
    and .4 TP (image 0 is already a TP image): true 1, false 1: precision 1/2, recall 1/2, and
    the envelope is 1 up to recall 1/2: AP 1/2."""
    m = _as_read_back(detection_metrics(GT, PRED, LABELS, metric_type="coco_voc", score_threshold=0.3))
    assert m[MEAN_AVERAGE_PRECISION] == pytest.approx(5 / 8)
    assert (m[PRECISION], m[RECALL]) == (pytest.approx(1 / 2), pytest.approx(3 / 4))
    per_label = m[PER_LABEL_METRICS]
    assert set(per_label) == set(LABELS)
    cat, dog, bird = per_label["cat"], per_label["dog"], per_label["bird"]
    assert (cat[PRECISION], cat[RECALL], cat[AVERAGE_PRECISION]) == (0.5, 1.0, 1.0)
    assert (dog[PRECISION], dog[RECALL], dog[AVERAGE_PRECISION]) == (0.5, 0.5, 0.25)
    assert (bird[PRECISION], bird[RECALL], bird[AVERAGE_PRECISION]) == (UNDEFINED,) * 3
    # At a score threshold: the predictions scoring at least that. Over every score: undefined.
    assert (cat[PRECISIONS_PER_SCORE_THRESHOLD]["0.9"], cat[RECALLS_PER_SCORE_THRESHOLD]["0.9"]) == (1.0, 1.0)
    assert (cat[PRECISIONS_PER_SCORE_THRESHOLD]["0.6"], cat[RECALLS_PER_SCORE_THRESHOLD]["0.6"]) == (0.5, 1.0)
    assert (dog[PRECISIONS_PER_SCORE_THRESHOLD]["0.8"], dog[RECALLS_PER_SCORE_THRESHOLD]["0.8"]) == (0.0, 0.0)
    assert (dog[PRECISIONS_PER_SCORE_THRESHOLD]["0.4"], dog[RECALLS_PER_SCORE_THRESHOLD]["0.4"]) == (0.5, 0.5)
    assert (cat[PRECISIONS_PER_SCORE_THRESHOLD]["0.95"], cat[RECALLS_PER_SCORE_THRESHOLD]["0.95"]) == (UNDEFINED, 0.0)
    assert len(cat[PRECISIONS_PER_SCORE_THRESHOLD]) == 100 and "0.0" in cat[PRECISIONS_PER_SCORE_THRESHOLD]
    assert m[IMAGE_LEVEL_BINARY_CLASSIFIER_METRICS] == {PRECISION: 0.5, RECALL: 0.5, AVERAGE_PRECISION: 0.5}
    assert list(m[COCO_METRICS]) == COCO_SUMMARY
    assert m[COCO_METRICS][COCO_SUMMARY[1]] == m["coco"]["AP50"]  # every box scores >= 0.3 here
    json.dumps(m, allow_nan=False)


def test_pr_curve_as_azures_run_history_returns_it():
    """All classes pooled (3 objects), ranked .9 TP, .8 FP, .6 FP, .4 TP: (recall, precision) is
    (1/3, 1) from threshold .9, (1/3, 1/2) from .8, (1/3, 1/3) from .6, (2/3, 1/2) from .4 down to
    0; above .9 nothing is predicted, precision is undefined and Azure logs no row."""
    m = _as_read_back(detection_metrics(GT, PRED, LABELS))
    curve = m["pr_curve"]
    assert set(curve) == {"recall", "precision", "score_threshold"}
    assert curve["score_threshold"] == [round(t / 100, 2) for t in range(90, -1, -1)]
    rows = dict(zip(curve["score_threshold"], zip(curve["recall"], curve["precision"])))
    assert rows[0.9] == rows[0.81] == (0.33333, 1.0)
    assert rows[0.8] == rows[0.61] == (0.33333, 0.5)
    assert rows[0.6] == rows[0.41] == (0.33333, 0.33333)
    assert rows[0.4] == rows[0.0] == (0.66667, 0.5)
    # one per class with a defined point: bird has none, so Azure logs no pr_curve_bird
    assert m["pr_curve_cat"]["score_threshold"][0] == 0.9 and m["pr_curve_dog"]["score_threshold"][0] == 0.8
    assert "pr_curve_bird" not in m


def test_confusion_matrices_at_azures_thresholds_worked_on_paper():
    """Matched across classes, best score first: cat .9 takes A (cat as cat), cat .6 takes B (a dog
    seen as a cat), dog .4 finds B taken and nothing else. Rows: cat, dog, bird; columns: cat, dog,
    bird, Missed. Down to threshold .6: dog row [1, 0, 0, 1] (B as a cat, C missed); from .7 the
    cat .6 no longer counts: dog row [0, 0, 0, 2]."""
    m = _as_read_back(detection_metrics(GT, PRED, LABELS))
    names = [confusion_matrix_name(t / 10) for t in range(10)]
    assert [k for k in m if k.startswith("confusion_matrix_score_threshold_")] == names
    value = m[confusion_matrix_name(0.5)]
    assert (value["schema_type"], value["schema_version"]) == ("confusion_matrix", "1.0.0")
    assert value["data"]["class_labels"] == ["cat", "dog", "bird", "Missed"]
    assert value["data"]["matrix"] == [[1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], ["N/A"] * 4]
    assert m[confusion_matrix_name(0.6)]["data"]["matrix"][1] == [1, 0, 0, 1]
    assert m[confusion_matrix_name(0.7)]["data"]["matrix"][:3] == [[1, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0]]
    assert m[confusion_matrix_name(0.9)]["data"]["matrix"][0] == [1, 0, 0, 0]


def test_masks_have_azures_segmentation_keys_only():
    gt = [{**g, "polygons": [[[b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]]] for b in g["boxes"]]} for g in GT]
    pred = []
    for p in PRED:
        masks = np.zeros((len(p["boxes"]), 50, 50), dtype=bool)
        for i, (x0, y0, x1, y1) in enumerate(p["boxes"]):
            masks[i, y0:y1, x0:x1] = True
        pred.append({**p, "masks": masks})
    m = detection_metrics(gt, pred, LABELS, iou_type="segm")
    assert m[MEAN_AVERAGE_PRECISION] == pytest.approx(5 / 8)  # the masks are the boxes, filled
    assert PER_LABEL_METRICS in m and "pr_curve" in m
    # Azure computes no image-level metrics and no confusion matrices for instance segmentation
    assert IMAGE_LEVEL_BINARY_CLASSIFIER_METRICS not in m
    assert not [k for k in m if k.startswith("confusion_matrix")]


def test_no_ground_truth_is_written_as_azure_writes_undefined():
    gt = [{"height": 10, "width": 10, "boxes": [], "labels": []}]
    pred = [{"boxes": [[0, 0, 5, 5]], "scores": [0.9], "labels": [0]}]
    m = _as_read_back(detection_metrics(gt, pred, ["a"], metric_type="coco"))
    # predictions but nothing to find: precision 0, AP and recall undefined (Azure's rule)
    assert m[PER_LABEL_METRICS]["a"][PRECISION] == 0.0
    assert m[PER_LABEL_METRICS]["a"][AVERAGE_PRECISION] == m[PER_LABEL_METRICS]["a"][RECALL] == UNDEFINED
    assert m[IMAGE_LEVEL_BINARY_CLASSIFIER_METRICS][AVERAGE_PRECISION] == UNDEFINED
    assert m[COCO_METRICS][COCO_SUMMARY[0]] == UNDEFINED  # COCO's own -1, kept as Azure keeps it
    # visionml's own keys: None where undefined, and a number for the primary
    assert m["per_label"]["a"]["average_precision"] is None and m["coco"]["AP"] is None
    assert m[MEAN_AVERAGE_PRECISION] == 0.0 and "no ground-truth objects" in m["notes"][0]


# ----------------------------------------------------------------------------- classification

Y = [0, 0, 1, 2]
P = [[0.70, 0.20, 0.10], [0.30, 0.60, 0.10], [0.35, 0.55, 0.10], [0.10, 0.20, 0.70]]


def test_multiclass_azure_keys():
    m = _as_read_back(multiclass_metrics(Y, P, ["a", "b", "c"]))
    # classwise: one value per class name (argmax a, b, b, c against a, a, b, c)
    assert m["precision_score_classwise"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["recall_score_classwise"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert m["f1_score_classwise"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 1.0})
    assert m["AUC_classwise"] == pytest.approx({"a": 3 / 4, "b": 2 / 3, "c": 1.0})
    assert m["average_precision_score_classwise"]["c"] == 1.0
    # binary scores exist for two classes only: NaN in Azure, null here
    assert all(m[k] is None for k in ("AUC_binary", "f1_score_binary", "precision_score_binary",
                                      "recall_score_binary", "average_precision_score_binary"))
    assert m["confusion_matrix"] == {"schema_type": "confusion_matrix", "schema_version": "1.0.0",
                                     "data": {"class_labels": ["a", "b", "c"],
                                              "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}}
    report = m["classification_report"]["data"]
    expected = skm.classification_report(np.eye(3)[Y], np.eye(3)[np.argmax(P, 1)], target_names=["a", "b", "c"],
                                         output_dict=True, zero_division=0)
    assert report["class_labels"] == ["a", "b", "c"]
    assert report["average"] == ["micro avg", "macro avg", "weighted avg"]
    assert report["matrix"] == [[expected[k][c] for c in ("precision", "recall", "f1-score", "support")]
                                for k in ("a", "b", "c", "micro avg", "macro avg", "weighted avg")]
    assert report["matrix"][0] == [1.0, 0.5, pytest.approx(2 / 3), 2.0]


def test_accuracy_table_worked_on_paper():
    """Class a's probabilities are .7, .3, .35, .1 for samples of a, a, b, c: 2 positives. A sample
    counts as predicted positive when its probability is at least the threshold; the probability
    thresholds are k/99, k = 0..99. [TP, FP, TN, FN]:
      k 0..9   (up to .091): every sample predicted           [2, 2, 0, 0]
      k 10..29 (.101-.293): c's .1 under it                   [2, 1, 1, 0]
      k 30..34 (.303-.343): a's .3 too                        [1, 1, 1, 1]
      k 35..69 (.354-.697): b's .35 too                       [1, 0, 2, 1]
      k 70..99 (.707-1):    a's .7 too, nothing predicted     [0, 0, 2, 2]"""
    table = multiclass_metrics(Y, P, ["a", "b", "c"])["accuracy_table"]
    assert (table["schema_type"], table["schema_version"]) == ("accuracy_table", "1.0.1")
    data = table["data"]
    assert data["probability_thresholds"] == pytest.approx(np.linspace(0, 1, 100).tolist())
    assert data["percentile_thresholds"] == pytest.approx(np.percentile(np.ravel(P), np.linspace(0, 100, 100)))
    a = data["probability_tables"][0]
    assert [a[k] for k in (0, 9, 10, 29, 30, 34, 35, 69, 70, 99)] == [
        [2, 2, 0, 0], [2, 2, 0, 0], [2, 1, 1, 0], [2, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1],
        [1, 0, 2, 1], [1, 0, 2, 1], [0, 0, 2, 2], [0, 0, 2, 2]]
    assert len(data["percentile_tables"]) == 3 and all(len(t) == 100 for t in data["percentile_tables"])
    assert all(sum(row) == 4 for t in data["probability_tables"] for row in t)


def test_binary_scores_are_the_second_class():
    y, probs = [0, 1, 1, 0], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]
    m = multiclass_metrics(y, probs, ["no", "yes"])
    positive = np.asarray(probs)[:, 1]
    assert m["AUC_binary"] == pytest.approx(skm.roc_auc_score(y, positive))
    assert m["average_precision_score_binary"] == pytest.approx(skm.average_precision_score(y, positive))
    assert m["precision_score_binary"] == pytest.approx(skm.precision_score(y, np.argmax(probs, 1)))
    assert m["recall_score_binary"] == m["f1_score_binary"] == pytest.approx(1 / 2)


def test_multilabel_azure_keys():
    y = [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    m = _as_read_back(multilabel_metrics(y, [[0.9, 0.1, 0.4], [0.2, 0.8, 0.6], [0.1, 0.2, 0.3]], ["a", "b", "c"]))
    # predicted {a}, {b, c}, {}: per class Jaccard a 1, b 1, c 0 (one true, one predicted, no overlap)
    assert m["iou_classwise"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert m["recall_score_classwise"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert m["AUC_binary"] is None
    assert m["classification_report"]["data"]["matrix"][2] == [0.0, 0.0, 0.0, 1.0]
    # Azure computes no confusion matrix and no accuracy table for multi-label
    assert "confusion_matrix" not in m and "accuracy_table" not in m


# ----------------------------------------------------------------------------- visionml evaluate

def test_evaluate_writes_azures_keys_and_prints_both_maps(tmp_path, capsys):
    data = make_sample_data(DETECTION, tmp_path / "data", n=8, seed=2, size=(160, 120))
    labels = read_dataset(data["train"], DETECTION).labels
    model = make_untrained_model_folder(tmp_path / "model", DETECTION, "fasterrcnn_resnet18_fpn", labels,
                                        {"min_size": 96, "max_size": 128, "box_detections_per_image": 10})
    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data["val"]), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    m = json.loads(output.read_text())
    assert set(m[PER_LABEL_METRICS]) == set(labels)
    for name in (IMAGE_LEVEL_BINARY_CLASSIFIER_METRICS, "pr_curve", confusion_matrix_name(0.0),
                 confusion_matrix_name(0.3), confusion_matrix_name(0.9)):
        assert name in m
    assert m["score_threshold"] == 0.3 and m["metric_type"] == "voc"
    # both numbers, each saying what it is
    assert f"{MEAN_AVERAGE_PRECISION:<26}{m[MEAN_AVERAGE_PRECISION]:.4f}  (primary)" in printed
    assert ("(Azure's voc mean_average_precision: all-point VOC AP at IoU 0.5 over the boxes scoring >= 0.3, "
            "bbox)") in printed
    assert (f"COCO AP@[.5:.95] / AP50   {m['coco']['AP']:.4f} / {m['coco']['AP50']:.4f}  "
            "(pycocotools summary over every box down to score 0.05)") in printed
