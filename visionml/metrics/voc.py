"""Azure's VOC-style detection numbers, from the matches the COCO evaluator made.

faster-coco-eval decides which prediction matches which ground-truth object (``detection.py``
runs it); this module takes each prediction's outcome, true positive, false positive or ignored
(it matched a crowd region, so it counts as neither), and computes what Azure's evaluator
reports from such outcomes (``object_detection/eval/metric_computation_utils.py`` in Azure's
wheel):

* AP: the area under the precision envelope, VOC's all-point interpolation (``all_point_ap``);
* precision and recall over every prediction given, and at Azure's 100 score thresholds;
* the image-level binary classifier: an image is a true positive once one of its predictions
  is, a false positive while it has only false ones;
* confusion matrices at Azure's 10 score thresholds, from a class-agnostic matching.

Predictions are ranked by score, ties in the order the COCO evaluator uses (image by image, then
the order given). Undefined values are ``None`` here; ``azure_keys`` writes them as Azure does.
"""

from __future__ import annotations

import numpy as np

FALSE_POSITIVE, TRUE_POSITIVE, IGNORED = 0, 1, 2
FINE_THRESHOLDS = tuple(i / 100 for i in range(100))   # Azure's precision-recall score thresholds
COARSE_THRESHOLDS = tuple(i / 10 for i in range(10))   # Azure's confusion-matrix score thresholds


def all_point_ap(precision, recall) -> float:
    """Area under the precision envelope of a ranked list of predictions (PASCAL VOC 2010+).

    ``precision[i]``, ``recall[i]``: after the i+1 best-ranked predictions (recall never falls).
    The envelope at point i is the best precision at that recall or beyond, and
    ``AP = sum_i envelope[i] * (recall[i] - recall[i-1])`` with ``recall[-1] = 0``."""
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    if precision.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(envelope * np.diff(recall, prepend=0.0)))


def ranking(scores) -> np.ndarray:
    """Indexes of ``scores`` best first; equal scores keep their order (as COCO's evaluator)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def precision_recall(outcomes, scores, positives: int) -> dict:
    """Azure's numbers for one class, or for all predictions pooled.

    ``outcomes``: per prediction TRUE_POSITIVE, FALSE_POSITIVE or IGNORED; ``positives``: the
    ground-truth objects to find (crowd regions not counted). Returns ``average_precision``,
    ``precision`` and ``recall`` over every prediction given, and per score threshold of
    ``FINE_THRESHOLDS`` the precision and recall of the predictions scoring at least that."""
    tp, fp, ranked_scores = _ranked_counts(outcomes, scores)
    return _curve_summary(tp, fp, ranked_scores, positives, len(ranked_scores))


def envelope(outcomes, scores, positives: int, recall_points) -> list[float]:
    """The precision envelope at ``recall_points`` (COCO's interpolation, for drawing): at recall r,
    the best precision reached at recall r or beyond; 0 past the highest recall reached."""
    tp, fp, _ = _ranked_counts(outcomes, scores)
    if positives == 0 or len(tp) == 0:
        return [0.0] * len(recall_points)
    best = np.maximum.accumulate(_precision(tp, fp)[::-1])[::-1]
    where = np.searchsorted(tp / positives, recall_points, side="left")
    return [float(best[i]) if i < len(best) else 0.0 for i in where]


def _ranked_counts(outcomes, scores):
    """Cumulative true and false positives down the ranking, and the ranked scores."""
    outcomes = np.asarray(outcomes).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = ranking(scores)
    return (np.cumsum(outcomes[order] == TRUE_POSITIVE), np.cumsum(outcomes[order] == FALSE_POSITIVE),
            scores[order])


def _precision(tp, fp) -> np.ndarray:
    """TP / (TP + FP); 0 while only ignored predictions were seen (Azure divides by 1e-9 then)."""
    counted = tp + fp
    return np.divide(tp, counted, out=np.zeros(len(tp)), where=counted > 0)


def image_level(outcomes, scores, images, images_with_objects: int) -> dict:
    """Azure's image-level binary classifier over all predictions pooled: going down the ranking,
    an image becomes a true positive with its first true-positive prediction (and stays one), and
    is a false positive from its first false-positive prediction until then. ``images``: the
    image index of each prediction; ``images_with_objects``: images with a ground-truth object."""
    outcomes = np.asarray(outcomes).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    images = np.asarray(images, dtype=np.int64).reshape(-1)
    order = ranking(scores)
    outcomes, images, n = outcomes[order], images[order], len(order)
    size = int(images.max()) + 1 if n else 0
    first_tp, first_fp = np.full(size, n), np.full(size, n)
    rank = np.arange(n)
    for code, first in ((TRUE_POSITIVE, first_tp), (FALSE_POSITIVE, first_fp)):
        hit = outcomes == code
        np.minimum.at(first, images[hit], rank[hit])  # the best-ranked such prediction per image
    tp = np.cumsum(np.bincount(first_tp[first_tp < n], minlength=n))
    flagged = first_fp < first_tp  # false-positive images for a while: from first_fp to first_tp
    fp = np.cumsum(np.bincount(first_fp[flagged], minlength=n)
                   - np.bincount(first_tp[flagged & (first_tp < n)], minlength=n))
    summary = _curve_summary(tp[:n], fp[:n], scores[order], images_with_objects, len(np.unique(images)))
    return {key: summary[key] for key in ("precision", "recall", "average_precision")}


def _curve_summary(tp, fp, ranked_scores, positives, predicted) -> dict:
    """AP, last precision and recall, and both at each fine threshold, from cumulative counts
    down the ranking; with nothing to find or nothing predicted, Azure's rules."""
    if positives == 0 or predicted == 0:
        return _degenerate(positives, predicted)
    precision, recall = _precision(tp, fp), tp / positives
    # predictions scoring at least t: a prefix of the ranking (exact, the scores are negated exactly)
    kept = np.searchsorted(-ranked_scores, -np.asarray(FINE_THRESHOLDS), side="right")
    return {
        "average_precision": all_point_ap(precision, recall),
        "precision": float(precision[-1]),
        "recall": float(recall[-1]),
        "precisions_per_score_threshold": {t: float(precision[k - 1]) if k else None
                                           for t, k in zip(FINE_THRESHOLDS, kept)},
        "recalls_per_score_threshold": {t: float(recall[k - 1]) if k else 0.0 for t, k in zip(FINE_THRESHOLDS, kept)},
    }


def confusion_matrices(objects_per_class, matches) -> dict:
    """Per score threshold of ``COARSE_THRESHOLDS``, a matrix with a row per ground-truth class and
    a column per predicted class plus a last column of objects no prediction found (Azure's form).

    ``objects_per_class``: ground-truth objects per class (crowd regions not counted);
    ``matches``: rows ``(ground-truth class, predicted class, score)``, one per prediction that a
    class-agnostic matching paired with a ground-truth object."""
    counts = np.asarray(objects_per_class, dtype=np.int64)
    matches = np.asarray(matches, dtype=np.float64).reshape(-1, 3)
    true_class, predicted, score = matches[:, 0].astype(np.int64), matches[:, 1].astype(np.int64), matches[:, 2]
    out = {}
    for threshold in COARSE_THRESHOLDS:
        keep = score >= threshold
        matrix = np.zeros((len(counts), len(counts) + 1), dtype=np.int64)
        np.add.at(matrix, (true_class[keep], predicted[keep]), 1)
        matrix[:, -1] = counts - matrix[:, :-1].sum(axis=1)
        out[threshold] = matrix.tolist()
    return out


def _degenerate(positives, predicted) -> dict:
    """Nothing to find: AP and recall are undefined, precision 0 if anything was predicted.
    Nothing predicted: AP and recall are 0, precision undefined."""
    def per_threshold(value):
        return dict.fromkeys(FINE_THRESHOLDS, value)

    if positives == 0:
        precision = 0.0 if predicted else None
        return {"average_precision": None, "precision": precision, "recall": None,
                "precisions_per_score_threshold": per_threshold(precision),
                "recalls_per_score_threshold": per_threshold(None)}
    return {"average_precision": 0.0, "precision": None, "recall": 0.0,
            "precisions_per_score_threshold": per_threshold(None),
            "recalls_per_score_threshold": per_threshold(0.0)}
