"""Multi-class and multi-label classification metrics with Azure's names, from scikit-learn.

Every scikit-learn call gets ``labels=`` (or works column by column) so that a class that
never occurs in the evaluation set still has its row and column, and results never depend
on which classes happen to be present.

Defined values where a metric is undefined (all documented in ``notes`` of the result):

* AUC and average precision of a class are undefined when that class has no positive (or
  no negative) sample: the per-class value is ``None`` and the class is left out of the
  macro and weighted averages (scikit-learn would raise or warn and return 0). If no class
  is defined, the averages are ``None``.
* precision / recall / F1 of a class with no prediction or no sample are 0.0
  (scikit-learn's ``zero_division=0``).
* Multi-label ``iou`` is the Jaccard index of each sample's predicted and true label sets,
  averaged over samples; a sample with no true and no predicted label counts as 1.0 (both
  sets agree: scikit-learn's ``zero_division=1``).
* A single-class model: AUC, average precision and log loss are undefined (``None``).
* No samples at all: the scores are 0.0 (the training loop needs a number to compare).
* Multi-label ``accuracy`` is scikit-learn's subset accuracy (all labels of a sample right).

Azure's own keys are there too, in Azure's shapes (``azure_keys``; docs/metrics.md): the
per-class ``*_classwise`` dicts, the ``*_binary`` scores (two classes: of the second class,
``labels[1]``; otherwise undefined), ``classification_report``, and for multi-class
``confusion_matrix`` and ``accuracy_table``. Where Azure's scoring writes NaN they hold ``None``.

The result is plain floats, ints, strings, ``None``, lists and dicts: JSON without NaN.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import azure_keys

_AVERAGES = ("macro", "micro", "weighted")
_CLASSWISE = {"precision_score_classwise": "precision", "recall_score_classwise": "recall",
              "f1_score_classwise": "f1_score", "AUC_classwise": "AUC",
              "average_precision_score_classwise": "average_precision"}
_BINARY = {"precision_score_binary": "precision", "recall_score_binary": "recall", "f1_score_binary": "f1_score",
           "AUC_binary": "AUC", "average_precision_score_binary": "average_precision"}
ACCURACY_TABLE_POINTS = 100  # Azure's AccuracyTable.NUM_POINTS


def multiclass_metrics(y_true, probs, labels: list[str]) -> dict:
    """Metrics for single-label classification. ``y_true``: int[N] class indices into
    ``labels``; ``probs``: float[N, C] class probabilities (rows summing to 1)."""
    from sklearn import metrics as skm

    y_true, probs = _check_multiclass(y_true, probs, labels)
    classes = list(range(len(labels)))
    y_pred = probs.argmax(axis=1)
    onehot = np.eye(len(labels), dtype=np.int64)[y_true]
    notes = [] if len(y_true) else ["no samples in the evaluation set: scores are 0.0"]
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred, classes),
        **_prf(y_true, y_pred, classes),
        "log_loss": _log_loss(y_true, probs, classes, notes),
    }
    ranking, auc, ap = _ranking_metrics(onehot, probs, labels, notes)
    out.update(ranking)
    out["per_label"] = _per_label(y_true, y_pred, onehot.sum(axis=0), labels, auc, ap)
    out.update(_azure_keys(out["per_label"], onehot, np.eye(len(labels), dtype=np.int64)[y_pred], labels))
    out["confusion_matrix"] = azure_keys.confusion_matrix(labels, _confusion(y_true, y_pred, classes))
    out["accuracy_table"] = _accuracy_table(onehot, probs, labels)
    out["num_samples"] = len(y_true)
    out["notes"] = notes
    return out


def multilabel_metrics(y_true, probs, labels: list[str], threshold: float = 0.5) -> dict:
    """Metrics for multi-label classification. ``y_true``: {0,1}[N, C]; ``probs``: float[N, C]
    independent per-class probabilities; a class is predicted when its probability is at
    least ``threshold``."""
    from sklearn import metrics as skm

    y_true, probs = _check_multilabel(y_true, probs, labels)
    y_pred = (probs >= threshold).astype(np.int64)
    classes = list(range(len(labels)))
    notes = [] if len(y_true) else ["no samples in the evaluation set: scores are 0.0"]
    out = {
        "iou": _jaccard(y_true, y_pred, "samples"),
        **{f"iou_{avg}": _jaccard(y_true, y_pred, avg) for avg in _AVERAGES},
        "accuracy": float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "hamming_loss": float(skm.hamming_loss(y_true, y_pred)) if len(y_true) else 0.0,
        **_prf(y_true, y_pred, classes),
        "log_loss": _multilabel_log_loss(y_true, probs, notes),
        "threshold": float(threshold),
    }
    ranking, auc, ap = _ranking_metrics(y_true, probs, labels, notes)
    out.update(ranking)
    out["per_label"] = _per_label(y_true, y_pred, y_true.sum(axis=0), labels, auc, ap)
    out.update(_azure_keys(out["per_label"], y_true, y_pred, labels, multilabel=True))
    out["iou_classwise"] = _iou_classwise(y_true, y_pred, labels)
    out["num_samples"] = len(y_true)
    out["notes"] = notes
    return out


# ----------------------------------------------------------------------------- inputs

def _check_multiclass(y_true, probs, labels):
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = _probabilities(probs, len(y_true), labels)
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= len(labels)):
        raise ValueError(f"y_true holds class indices outside 0..{len(labels) - 1}")
    return y_true, probs


def _check_multilabel(y_true, probs, labels):
    y_true = np.asarray(y_true)
    if y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(f"y_true must be a {{0,1}} array of shape (N, {len(labels)}), got {y_true.shape}")
    if y_true.size and not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    return y_true.astype(np.int64), _probabilities(probs, len(y_true), labels)


def _probabilities(probs, n, labels):
    if not labels:
        raise ValueError("labels is empty: classification metrics need at least one class")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0 and n == 0:
        return probs.reshape(0, len(labels))
    if probs.shape != (n, len(labels)):
        raise ValueError(f"probs must have shape ({n}, {len(labels)}), got {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("probs holds NaN or infinite values")
    return probs


# ----------------------------------------------------------------------------- metrics

def _prf(y_true, y_pred, classes) -> dict:
    from sklearn import metrics as skm

    out = {}
    for avg in _AVERAGES:
        if len(y_true) == 0:
            p = r = f = 0.0
        else:
            p, r, f, _ = skm.precision_recall_fscore_support(
                y_true, y_pred, labels=classes, average=avg, zero_division=0)
        out[f"precision_score_{avg}"] = float(p)
        out[f"recall_score_{avg}"] = float(r)
        out[f"f1_score_{avg}"] = float(f)
    return out


def _confusion(y_true, y_pred, classes) -> list[list[int]]:
    """Rows: true class, columns: predicted class, in ``labels`` order."""
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return np.zeros((len(classes), len(classes)), dtype=np.int64).tolist()
    with warnings.catch_warnings():
        # scikit-learn warns about one class even when labels= is given (the shape is right)
        warnings.filterwarnings("ignore", message="A single label was found")
        return skm.confusion_matrix(y_true, y_pred, labels=classes).tolist()


def _balanced_accuracy(y_true, y_pred, classes) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's definition: a class
    without samples has no recall to average)."""
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return 0.0
    present = sorted(set(y_true.tolist()))
    recall = skm.recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    return float(np.mean(recall[present]))


def _log_loss(y_true, probs, classes, notes) -> float | None:
    from sklearn import metrics as skm

    if len(classes) < 2 or len(y_true) == 0:
        notes.append("log_loss is undefined with a single class or no samples")
        return None
    # float32 softmax rows sum to 1 only up to rounding; log_loss wants them exact (the other
    # metrics keep the scores untouched so that ties stay ties)
    rows = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return float(skm.log_loss(y_true, rows, labels=classes))


def _multilabel_log_loss(y_true, probs, notes) -> float | None:
    """Mean over classes of the binary cross-entropy (each label is its own yes/no question)."""
    from sklearn import metrics as skm

    if len(y_true) == 0:
        notes.append("log_loss is undefined with no samples")
        return None
    losses = [skm.log_loss(y_true[:, k], probs[:, k], labels=[0, 1]) for k in range(y_true.shape[1])]
    return float(np.mean(losses))


def _jaccard(y_true, y_pred, average) -> float:
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return 0.0
    return float(skm.jaccard_score(y_true, y_pred, average=average, zero_division=1))


def _per_label(y_true, y_pred, support, labels, auc, ap) -> dict:
    from sklearn import metrics as skm

    if len(y_true):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=list(range(len(labels))), average=None, zero_division=0)
    else:
        precision = recall = f1 = np.zeros(len(labels))
    return {
        name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1_score": float(f1[k]),
               "support": int(support[k]), "AUC": auc.get(k), "average_precision": ap.get(k)}
        for k, name in enumerate(labels)
    }


def _ranking_metrics(onehot, probs, labels, notes) -> tuple[dict, dict, dict]:
    """One-vs-rest AUC and average precision: per class (where defined), their macro and
    weighted means over the defined classes, and the micro versions over all (sample, class)
    pairs. Returns (averages, {class: AUC}, {class: AP})."""
    from sklearn import metrics as skm

    out: dict = {}
    support = onehot.sum(axis=0)
    n = len(onehot)
    defined = [k for k in range(len(labels)) if 0 < support[k] < n]
    auc = {k: float(skm.roc_auc_score(onehot[:, k], probs[:, k])) for k in defined}
    ap = {k: float(skm.average_precision_score(onehot[:, k], probs[:, k])) for k in defined}
    undefined = [labels[k] for k in range(len(labels)) if k not in auc]
    if undefined:
        notes.append("AUC and average precision are undefined (no positive or no negative sample) "
                     f"and left out of the averages for: {', '.join(undefined)}")
    for name, per_class in (("AUC", auc), ("average_precision_score", ap)):
        values = [per_class[k] for k in defined]
        weights = [support[k] for k in defined]
        out[f"{name}_macro"] = float(np.mean(values)) if values else None
        out[f"{name}_weighted"] = float(np.average(values, weights=weights)) if values else None
    flat_true, flat_score = onehot.reshape(-1), probs.reshape(-1)
    micro_ok = 0 < flat_true.sum() < flat_true.size
    out["AUC_micro"] = float(skm.roc_auc_score(flat_true, flat_score)) if micro_ok else None
    out["average_precision_score_micro"] = \
        float(skm.average_precision_score(flat_true, flat_score)) if micro_ok else None
    return out, auc, ap


# ----------------------------------------------------------------------------- Azure's keys

def _azure_keys(per_label: dict, y_true_bin, y_pred_bin, labels, *, multilabel: bool = False) -> dict:
    """Azure's classwise and binary scores (from the per-class values above) and its
    ``classification_report``. ``y_true_bin``, ``y_pred_bin``: {0,1}[N, C]."""
    out = {key: _classwise(labels, [per_label[name][field] for name in labels]) for key, field in _CLASSWISE.items()}
    positive = per_label[labels[1]] if len(labels) == 2 and not multilabel else None  # Azure's positive class
    out.update({key: positive[field] if positive else None for key, field in _BINARY.items()})
    out["classification_report"] = _classification_report(y_true_bin, y_pred_bin, labels)
    return out


def _classwise(labels, values) -> dict:
    return {str(name): None if v is None else float(v) for name, v in zip(labels, values)}


def _iou_classwise(y_true, y_pred, labels) -> dict:
    """Per class the Jaccard index of the images that have it and those predicted to (0 for a class
    neither has: scikit-learn's default, which Azure keeps here)."""
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return _classwise(labels, [None] * len(labels))
    return _classwise(labels, skm.jaccard_score(y_true, y_pred, average=None, zero_division=0))


def _classification_report(y_true_bin, y_pred_bin, labels) -> dict | None:
    """scikit-learn's classification report in Azure's form: a row per class, then the micro,
    macro and weighted averages, each [precision, recall, f1-score, support]."""
    from sklearn import metrics as skm

    if len(y_true_bin) == 0:
        return None
    report = skm.classification_report(y_true_bin, y_pred_bin, labels=list(range(len(labels))),
                                       target_names=[str(name) for name in labels], output_dict=True, zero_division=0)
    average = [name for name in ("micro avg", "macro avg", "weighted avg") if name in report]
    matrix = [[float(report[key][m]) for m in ("precision", "recall", "f1-score", "support")]
              for key in [str(name) for name in labels] + average]
    return {"schema_type": "classification_report", "schema_version": "1.0.0",
            "data": {"class_labels": [str(name) for name in labels], "average": average, "matrix": matrix}}


def _accuracy_table(onehot, probs, labels) -> dict | None:
    """Azure's accuracy table: per class (one vs rest) the counts [TP, FP, TN, FN] with "predicted"
    meaning a probability at or above the threshold, at 100 evenly spaced probability thresholds
    and at the 100 matching percentiles of all probabilities. A class without samples gets zeros,
    as Azure writes it."""
    if len(probs) == 0:
        return None
    probability = np.linspace(0.0, 1.0, ACCURACY_TABLE_POINTS)
    percentile = np.percentile(probs.ravel(), probability * 100)
    return {"schema_type": "accuracy_table", "schema_version": "1.0.1",
            "data": {"probability_tables": _confusion_counts(onehot, probs, probability),
                     "percentile_tables": _confusion_counts(onehot, probs, percentile),
                     "probability_thresholds": probability.tolist(), "percentile_thresholds": percentile.tolist(),
                     "class_labels": [str(name) for name in labels]}}


def _confusion_counts(onehot, probs, thresholds) -> list:
    tables = []
    for k in range(probs.shape[1]):
        positives = int(onehot[:, k].sum())
        if positives == 0:
            tables.append([[0, 0, 0, 0]] * len(thresholds))
            continue
        order = np.argsort(probs[:, k], kind="stable")
        below = np.searchsorted(probs[order, k], thresholds, side="left")  # predicted negative
        fn = np.concatenate([[0], np.cumsum(onehot[order, k])])[below]
        tn = below - fn
        tables.append(np.stack([positives - fn, len(probs) - positives - tn, tn, fn], axis=1).tolist())
    return tables
