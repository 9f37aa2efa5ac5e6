"""Classification metrics: a multi-class and a multi-label case checked by hand, agreement with
scikit-learn's own averages, and the defined values of the undefined cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from visionml.metrics.classification import multiclass_metrics, multilabel_metrics

LABELS = ["a", "b", "c"]
# true a, a, b, c; predicted (argmax) a, b, b, c
Y = [0, 0, 1, 2]
P = [[0.70, 0.20, 0.10],
     [0.30, 0.60, 0.10],
     [0.35, 0.55, 0.10],
     [0.10, 0.20, 0.70]]


def test_multiclass_hand_computed():
    m = multiclass_metrics(Y, P, LABELS)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["confusion_matrix"] == {"schema_type": "confusion_matrix", "schema_version": "1.0.0",
                                     "data": {"class_labels": LABELS, "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}}
    # per class: a P=1 R=1/2 F1=2/3; b P=1/2 R=1 F1=2/3; c P=R=F1=1; supports 2, 1, 1
    # a's AP: ranked by score a's samples come 1st and 3rd: precision 1 at recall 1/2, 2/3 at recall 1
    assert m["per_label"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1_score": 2 / 3, "support": 2,
                                                 "AUC": 3 / 4, "average_precision": 1 / 2 + 1 / 2 * 2 / 3})
    assert m["precision_score_macro"] == pytest.approx(5 / 6)
    assert m["recall_score_macro"] == pytest.approx(5 / 6)
    assert m["f1_score_macro"] == pytest.approx(7 / 9)
    assert m["precision_score_weighted"] == pytest.approx((2 * 1 + 0.5 + 1) / 4)
    assert m["recall_score_weighted"] == pytest.approx(3 / 4)
    assert m["f1_score_weighted"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert m["precision_score_micro"] == m["recall_score_micro"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx(5 / 6)
    assert m["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.55) + math.log(0.7)) / 4)
    # One-vs-rest AUC: a's positives (.7, .3) beat 3 of the 4 (positive, negative) pairs (.35, .1);
    # b's positive .55 beats 2 of its 3 negatives (.2, .6, .2); c is perfect.
    assert m["per_label"]["b"]["AUC"] == pytest.approx(2 / 3)
    assert m["AUC_macro"] == pytest.approx((3 / 4 + 2 / 3 + 1) / 3)
    assert m["AUC_weighted"] == pytest.approx((2 * 3 / 4 + 2 / 3 + 1) / 4)
    assert m["notes"] == [] and m["num_samples"] == 4


def test_multiclass_averages_are_scikit_learns_when_every_class_is_present():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 4
    probs = rng.dirichlet([1, 1, 1, 1], 60)
    m = multiclass_metrics(y, probs, list("wxyz"))
    assert m["AUC_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["AUC_weighted"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="weighted"))
    onehot = np.eye(4)[y]
    assert m["average_precision_score_macro"] == pytest.approx(skm.average_precision_score(onehot, probs))
    assert m["AUC_micro"] == pytest.approx(skm.roc_auc_score(onehot, probs, average="micro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs))


def test_class_absent_from_ground_truth_is_left_out_of_auc():
    m = multiclass_metrics([0, 1, 0, 1], [[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]],
                           LABELS)
    assert m["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1_score": 0.0, "support": 0,
                                   "AUC": None, "average_precision": None}
    a, b = m["per_label"]["a"]["AUC"], m["per_label"]["b"]["AUC"]
    assert m["AUC_macro"] == pytest.approx((a + b) / 2)
    assert "c" in m["notes"][0]
    assert m["confusion_matrix"]["data"]["matrix"][2] == [0, 0, 0]
    assert m["confusion_matrix"]["data"]["matrix"][1] == [0, 1, 1]  # a "b" predicted as the absent "c"
    json.dumps(m, allow_nan=False)


def test_class_never_predicted_has_zero_precision_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = multiclass_metrics([0, 1, 2], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]], LABELS)
    assert m["per_label"]["c"]["precision"] == 0.0
    # c's only sample scores 0.1: it beats a's 0.05 and ties with b's 0.1 (a tie counts half)
    assert m["per_label"]["c"]["AUC"] == pytest.approx(3 / 4)


def test_single_class_and_no_samples():
    one = multiclass_metrics([0, 0, 0], [[1.0], [1.0], [1.0]], ["only"])
    assert one["accuracy"] == 1.0
    assert one["AUC_macro"] is None and one["log_loss"] is None
    assert one["confusion_matrix"]["data"]["matrix"] == [[3]]
    json.dumps(one, allow_nan=False)
    empty = multiclass_metrics([], np.zeros((0, 2)), ["a", "b"])
    assert empty["accuracy"] == 0.0 and empty["num_samples"] == 0 and "no samples" in empty["notes"][0]
    json.dumps(empty, allow_nan=False)


def test_float32_softmax_rows_are_accepted():
    probs = np.array([[0.1, 0.2, 0.7], [0.3333333, 0.3333333, 0.3333333]], dtype=np.float32)
    m = multiclass_metrics([2, 0], probs, LABELS)
    assert math.isfinite(m["log_loss"])


def test_multiclass_bad_input():
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        multiclass_metrics([0, 1], [[0.5, 0.5], [0.5, 0.5]], LABELS)
    with pytest.raises(ValueError, match="outside 0..2"):
        multiclass_metrics([0, 3], [[0.2, 0.3, 0.5]] * 2, LABELS)
    with pytest.raises(ValueError, match="NaN"):
        multiclass_metrics([0], [[np.nan, 0.5, 0.5]], LABELS)


ML_Y = [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
ML_P = [[0.9, 0.1, 0.4], [0.2, 0.8, 0.6], [0.1, 0.2, 0.3]]


def test_multilabel_hand_computed():
    m = multilabel_metrics(ML_Y, ML_P, LABELS)
    # predicted at 0.5: {a}, {b, c}, {} against true {a, c}, {b}, {}
    # Jaccard per image: 1/2, 1/2, and 1 for the empty-empty image -> mean 2/3
    assert m["iou"] == pytest.approx(2 / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 9)
    assert m["accuracy"] == pytest.approx(1 / 3)  # only the empty image is exactly right
    assert m["precision_score_micro"] == pytest.approx(2 / 3)  # 2 right of 3 predicted
    assert m["recall_score_micro"] == pytest.approx(2 / 3)  # 2 found of 3 true
    assert m["per_label"]["c"]["precision"] == 0.0 and m["per_label"]["c"]["support"] == 1
    assert m["threshold"] == 0.5
    # threshold 0.35 adds c to the first image: Jaccard 1, 1/2, 1
    assert multilabel_metrics(ML_Y, ML_P, LABELS, threshold=0.35)["iou"] == pytest.approx(5 / 6)


def test_multilabel_agrees_with_scikit_learn():
    rng = np.random.default_rng(1)
    y = (rng.random((40, 4)) < 0.4).astype(int)
    probs = rng.random((40, 4))
    m = multilabel_metrics(y, probs, list("wxyz"))
    pred = (probs >= 0.5).astype(int)
    assert m["iou"] == pytest.approx(skm.jaccard_score(y, pred, average="samples", zero_division=1))
    assert m["f1_score_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["AUC_macro"] == pytest.approx(skm.roc_auc_score(y, probs, average="macro"))
    assert m["average_precision_score_weighted"] == pytest.approx(
        skm.average_precision_score(y, probs, average="weighted"))


def test_multilabel_label_never_present_and_bad_input():
    m = multilabel_metrics([[1, 0], [1, 0]], [[0.9, 0.1], [0.8, 0.7]], ["a", "b"])
    assert m["per_label"]["b"]["AUC"] is None and m["per_label"]["a"]["AUC"] is None  # a is always on
    assert m["AUC_macro"] is None
    json.dumps(m, allow_nan=False)
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_metrics([[2, 0]], [[0.5, 0.5]], ["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        multilabel_metrics([1, 0], [[0.5, 0.5]], ["a", "b"])
