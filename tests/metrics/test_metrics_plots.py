"""Plots: real PNGs for every task, still drawn (with a note) when there is nothing to draw,
and no pyplot state touched."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from visionml.metrics.detection import detection_metrics
from visionml.metrics.plots import save_classification_plots, save_detection_plots

from .cases import random_detection_case


def _assert_pngs(paths, names):
    assert [p.name for p in paths] == names
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 200
            # a drawn figure, not a blank canvas
            assert len(np.unique(np.asarray(image.convert("L")))) > 10
    assert not list(paths[0].parent.glob("*.tmp"))


def test_multiclass_plots(tmp_path):
    rng = np.random.default_rng(0)
    paths = save_classification_plots(tmp_path, rng.integers(0, 3, 30),
                                      rng.dirichlet([1, 1, 1], 30), ["a", "b", "c"])
    _assert_pngs(paths, ["confusion_matrix.png", "pr_curves.png", "roc_curves.png"])


def test_multilabel_plots(tmp_path):
    rng = np.random.default_rng(1)
    paths = save_classification_plots(tmp_path / "new" / "dir", rng.integers(0, 2, (20, 4)), rng.random((20, 4)),
                                      list("wxyz"), multilabel=True, threshold=0.3)
    _assert_pngs(paths, ["confusion_matrix.png", "pr_curves.png", "roc_curves.png"])


@pytest.mark.parametrize("y, probs, labels", [
    ([0, 0], [[1.0], [1.0]], ["only"]),          # one class: no curve can be drawn
    ([], np.zeros((0, 2)), ["a", "b"]),           # no samples at all
])
def test_classification_plots_render_when_there_is_nothing_to_draw(tmp_path, y, probs, labels):
    paths = save_classification_plots(tmp_path, y, probs, labels)
    _assert_pngs(paths, ["confusion_matrix.png", "pr_curves.png", "roc_curves.png"])


def test_many_classes_render(tmp_path):
    rng = np.random.default_rng(2)
    labels = [f"class_{k}" for k in range(40)]
    paths = save_classification_plots(tmp_path, rng.integers(0, 40, 200),
                                      rng.dirichlet(np.ones(40), 200), labels)
    _assert_pngs(paths, ["confusion_matrix.png", "pr_curves.png", "roc_curves.png"])


def test_detection_plots(tmp_path):
    gt, pred = random_detection_case(seed=2, images=15)
    metrics = detection_metrics(gt, pred, ["a", "b", "c"])
    _assert_pngs(save_detection_plots(tmp_path, metrics, ["a", "b", "c"]), ["pr_curves.png", "average_precision.png"])


def test_detection_plots_with_no_predictions_or_no_ground_truth(tmp_path):
    gt, _ = random_detection_case(seed=2, images=5)
    empty = [{"boxes": [], "scores": [], "labels": []} for _ in gt]
    no_pred = detection_metrics(gt, empty, ["a", "b", "c"])
    _assert_pngs(save_detection_plots(tmp_path / "a", no_pred), ["pr_curves.png", "average_precision.png"])
    no_gt = detection_metrics([{"height": 10, "width": 10, "boxes": [], "labels": []}], empty[:1], ["a"])
    _assert_pngs(save_detection_plots(tmp_path / "b", no_gt), ["pr_curves.png", "average_precision.png"])


def test_plots_leave_pyplot_and_the_backend_alone(tmp_path):
    code = (
        "import sys\n"
        "from visionml.metrics.plots import save_classification_plots\n"
        f"save_classification_plots({str(tmp_path)!r}, [0, 1], [[0.9, 0.1], [0.2, 0.8]], ['a', 'b'])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
