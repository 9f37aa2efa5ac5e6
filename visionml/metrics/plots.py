"""PNG plots of evaluation results: confusion matrix, PR and ROC curves (classification);
PR curves and per-class AP bars (detection, instance segmentation).

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas directly, so
nothing here touches pyplot's global state or the user's backend. A plot whose data is
empty (one class, no predictions, no ground truth) still renders, with a note saying why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_LEGEND = 20    # beyond this many classes a legend hides the plot
MAX_ANNOTATED = 25  # beyond this many classes confusion-matrix cells are not numbered


def save_classification_plots(out_dir, y_true, probs, labels: list[str], *, multilabel: bool = False,
                              threshold: float = 0.5) -> list[Path]:
    """Write confusion_matrix.png, pr_curves.png and roc_curves.png to ``out_dir``.

    ``y_true``: int[N] class indices, or with ``multilabel`` {0,1}[N, C];
    ``probs``: float[N, C]; ``threshold``: the multi-label decision threshold.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(labels))
    if multilabel:
        onehot = np.asarray(y_true, dtype=np.int64).reshape(-1, len(labels))
        confusion = _multilabel_confusion(onehot, probs, labels, threshold)
    else:
        y_index = np.asarray(y_true, dtype=np.int64).reshape(-1)
        onehot = np.eye(len(labels), dtype=np.int64)[y_index]
        confusion = _multiclass_confusion(y_index, probs, labels)
    paths = [out / "confusion_matrix.png", out / "pr_curves.png", out / "roc_curves.png"]
    _save(confusion, paths[0])
    _save(_curves(onehot, probs, labels, "pr"), paths[1])
    _save(_curves(onehot, probs, labels, "roc"), paths[2])
    return paths


def save_detection_plots(out_dir, metrics: dict, labels: list[str] | None = None) -> list[Path]:
    """Write pr_curves.png and average_precision.png from a ``detection_metrics`` result (its
    ``voc_pr_curve`` and ``per_label``), so plots can be redrawn from metrics.json alone."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(labels if labels is not None else metrics["per_label"])
    paths = [out / "pr_curves.png", out / "average_precision.png"]
    _save(_detection_pr(metrics, labels), paths[0])
    _save(_ap_bars(metrics, labels), paths[1])
    return paths


# ----------------------------------------------------------------------------- figures

def _figure(width=6.4, height=4.8):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ..fileio import atomic_path

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:  # a reader never sees half a PNG; a failed write leaves no .tmp
        fig.savefig(tmp, format="png")


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True,
            fontsize=10, color="0.3", bbox={"facecolor": "white", "edgecolor": "0.7"})


def _multiclass_confusion(y_index, probs, labels):
    from sklearn.metrics import confusion_matrix

    classes = list(range(len(labels)))
    if len(y_index):
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="A single label was found")
            matrix = confusion_matrix(y_index, probs.argmax(axis=1), labels=classes)
    else:
        matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    size = min(4 + 0.35 * len(labels), 20)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    _heatmap(ax, matrix, labels, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({len(y_index)} images)")
    if not len(y_index):
        _note(ax, "no samples to evaluate")
    return fig


def _multilabel_confusion(onehot, probs, labels, threshold):
    """One row per class: its TN, FP, FN, TP counts at the threshold (a C x C matrix has no
    meaning when an image can carry several labels)."""
    from sklearn.metrics import multilabel_confusion_matrix

    if len(onehot):
        per_class = multilabel_confusion_matrix(onehot, (probs >= threshold).astype(np.int64),
                                                labels=list(range(len(labels))))
        matrix = per_class.reshape(len(labels), 4)  # [[tn, fp], [fn, tp]] flattened
    else:
        matrix = np.zeros((len(labels), 4), dtype=np.int64)
    fig = _figure(6.4, min(3 + 0.3 * len(labels), 20))
    ax = fig.add_subplot()
    _heatmap(ax, matrix, ["TN", "FP", "FN", "TP"], labels)
    ax.set_title(f"Per-class confusion at threshold {threshold:g} ({len(onehot)} images)")
    if not len(onehot):
        _note(ax, "no samples to evaluate")
    return fig


def _heatmap(ax, matrix, x_labels, y_labels):
    matrix = np.asarray(matrix)
    image = ax.imshow(matrix, cmap="Blues", aspect="auto", vmin=0, vmax=max(int(matrix.max()), 1))
    ax.figure.colorbar(image, ax=ax)
    ax.set_xticks(range(len(x_labels)), x_labels, rotation=45 if len(x_labels) > 4 else 0, ha="right")
    ax.set_yticks(range(len(y_labels)), y_labels)
    if len(y_labels) <= MAX_ANNOTATED:
        limit = matrix.max() / 2
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > limit else "black", fontsize=8)


def _curves(onehot, probs, labels, kind):
    """One-vs-rest PR (kind='pr') or ROC (kind='roc') curve per class, from scikit-learn."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    fig = _figure()
    ax = fig.add_subplot()
    skipped = []
    drawn = 0
    for k, name in enumerate(labels):
        positives = int(onehot[:, k].sum()) if len(onehot) else 0
        if positives == 0 or positives == len(onehot):
            skipped.append(name)
            continue
        if kind == "pr":
            precision, recall, _ = precision_recall_curve(onehot[:, k], probs[:, k])
            ap = average_precision_score(onehot[:, k], probs[:, k])
            ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AP {ap:.3f})")
        else:
            fpr, tpr, _ = roc_curve(onehot[:, k], probs[:, k])
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        drawn += 1
    if kind == "roc":
        ax.plot([0, 1], [0, 1], linestyle=":", color="0.6")
    _frame(ax, *(("recall", "precision") if kind == "pr" else ("false positive rate", "true positive rate")))
    ax.set_title("Precision-recall per class" if kind == "pr" else "ROC per class (one-vs-rest)")
    _legend_or_note(ax, drawn, skipped, "no positive and negative samples")
    return fig


def _detection_pr(metrics, labels):
    fig = _figure()
    ax = fig.add_subplot()
    curve = metrics.get("voc_pr_curve", {})
    recall = curve.get("recall", [])
    drawn, skipped = 0, []
    for name in labels:
        precision = curve.get("precision", {}).get(name)
        if precision is None:
            skipped.append(name)
            continue
        ap = metrics["per_label"][name]["average_precision"]
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
        drawn += 1
    _frame(ax, "recall", "precision")
    ax.set_title(f"Precision envelope per class, {_scored(metrics)}")
    _legend_or_note(ax, drawn, skipped, "no ground truth")
    if drawn and not any(metrics["per_label"][n]["num_predictions"] for n in labels):
        _note(ax, "no predictions: precision is 0 at every recall")
    return fig


def _ap_bars(metrics, labels):
    per_label = metrics["per_label"]
    values = [per_label[name]["average_precision"] for name in labels]
    fig = _figure(max(6.4, 0.4 * len(labels)), 4.8)
    ax = fig.add_subplot()
    heights = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(range(len(labels)), heights, color=["C0" if v is not None else "0.8" for v in values])
    for bar, value in zip(bars, values):
        text = f"{value:.2f}" if value is not None else "no GT"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, text, ha="center", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("average precision")
    ax.set_title(f"VOC AP per class, {_scored(metrics)}; mean {metrics.get('voc_mean_average_precision', 0.0):.3f}")
    if all(v is None for v in values):
        _note(ax, "no ground-truth objects: AP is undefined")
    return fig


def _scored(metrics) -> str:
    """What the VOC numbers were computed on, for a title."""
    threshold = metrics.get("score_threshold")
    boxes = "boxes" if metrics.get("iou_type", "bbox") == "bbox" else "masks"
    over = f"{boxes} scoring >= {threshold:g}" if threshold is not None else f"all {boxes}"
    return f"IoU {metrics.get('iou_threshold', 0.5):g}, {over}"


def _frame(ax, xlabel, ylabel):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend_or_note(ax, drawn, skipped, reason):
    if drawn and drawn <= MAX_LEGEND:
        ax.legend(fontsize=8, loc="best")
    if not drawn:
        _note(ax, f"nothing to draw: {reason} for any class")
    elif skipped:
        shown = ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else "")
        ax.text(0.99, 0.01, f"not drawn ({reason}): {shown}", ha="right", va="bottom",
                transform=ax.transAxes, fontsize=7, color="0.4")
