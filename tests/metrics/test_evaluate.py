"""``visionml.metrics.evaluate``: the real reading, decoding, label mapping, ground-truth building and
metric dispatch, with a stand-in predictor that answers from the JSONL labels (so a perfect
predictor must score perfectly, whatever order the model keeps its classes in)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visionml.data.images import load_rgb, local_path
from visionml.data.reader import read_dataset
from visionml.data.sample import make_sample_data
from visionml.errors import VisionMLError
from visionml.config import resolve_hyperparameters
from visionml.metrics.evaluate import evaluate_predictor, metrics_for_task
from visionml.geometry import polygon_norm_to_abs, polygons_abs_to_mask, xyxy_norm_to_abs
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS

from .cases import random_detection_case

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class AnswerKeyPredictor:
    """Knows each image's labels (looked up by pixel content) and answers them in its own class
    order, in the pixel coordinates of the image it is given, like ``Predictor.raw_predict``.
    ``drop`` names classes it never predicts."""

    def __init__(self, jsonl, task, labels, drop=(), settings=None):
        self.task, self.labels = task, list(labels)
        self.settings = resolve_hyperparameters(task, {"validation_batch_size": 3, **(settings or {})})
        self.drop = set(drop)
        self.calls = []
        self.key = {}
        for record in read_dataset(jsonl, task).records:
            self.key[load_rgb(local_path(record.path)).tobytes()] = record

    def raw_predict(self, pil_images, batch_size=None):
        self.calls.append(len(pil_images))
        return [self._answer(self.key[image.tobytes()], image) for image in pil_images]

    def _answer(self, record, image):
        k = {name: i for i, name in enumerate(self.labels)}
        if self.task == MULTICLASS:
            probs = np.full(len(self.labels), 0.1 / len(self.labels), dtype=np.float32)
            probs[k[record.label]] += 0.9
            return probs
        if self.task == MULTILABEL:
            probs = np.full(len(self.labels), 0.2, dtype=np.float32)
            probs[[k[name] for name in record.label if name not in self.drop]] = 0.9
            return probs
        objects = [o for o in record.objects if o.label not in self.drop]
        out = {"boxes": xyxy_norm_to_abs([o.box for o in objects], image.width, image.height),
               "scores": np.linspace(0.9, 0.5, len(objects)),
               "labels": np.array([k[o.label] for o in objects], dtype=np.int64)}
        if self.task == SEGMENTATION:
            out["masks"] = np.array([polygons_abs_to_mask(polygon_norm_to_abs(o.polygon, image.width, image.height),
                                                          image.height, image.width) for o in objects],
                                    dtype=bool).reshape(len(objects), image.height, image.width)
        return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return {task: make_sample_data(task, root / task, n=10, seed=1, size=(160, 120))["train"] for task in TASKS}


PRIMARY = {MULTICLASS: "accuracy", MULTILABEL: "iou", DETECTION: "mean_average_precision",
           SEGMENTATION: "mean_average_precision"}


@pytest.mark.parametrize("task", TASKS)
def test_a_perfect_predictor_scores_perfectly_in_its_own_class_order(sample, task, tmp_path):
    data_labels = read_dataset(sample[task], task).labels
    model_labels = ["zebra"] + data_labels[::-1]  # another order, and a class the data never has
    predictor = AnswerKeyPredictor(sample[task], task, model_labels)
    metrics = evaluate_predictor(predictor, sample[task], plots_dir=tmp_path / "plots")
    assert metrics["task"] == task and metrics["primary_metric"] == PRIMARY[task]
    assert metrics[PRIMARY[task]] == pytest.approx(1.0)
    assert predictor.calls == [3, 3, 2]  # 8 training images, validation_batch_size 3 at a time
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == (
        ["average_precision.png", "pr_curves.png"] if task in (DETECTION, SEGMENTATION)
        else ["confusion_matrix.png", "pr_curves.png", "roc_curves.png"])
    json.dumps(metrics, allow_nan=False)


def test_a_class_never_predicted_scores_zero_for_that_class(sample):
    task = DETECTION
    labels = read_dataset(sample[task], task).labels
    metrics = evaluate_predictor(AnswerKeyPredictor(sample[task], task, labels, drop={labels[0]}), sample[task])
    per_label = metrics["per_label"]
    assert per_label[labels[0]]["average_precision"] == 0.0
    assert all(per_label[name]["average_precision"] == pytest.approx(1.0) for name in labels[1:])
    assert metrics["mean_average_precision"] == pytest.approx((len(labels) - 1) / len(labels))


def test_segmentation_honours_the_models_metric_settings(sample):
    task = SEGMENTATION
    labels = read_dataset(sample[task], task).labels
    predictor = AnswerKeyPredictor(sample[task], task, labels,
                                   settings={"validation_metric_type": "coco", "validation_iou_threshold": 0.75})
    metrics = evaluate_predictor(predictor, sample[task])
    assert (metrics["metric_type"], metrics["iou_threshold"], metrics["iou_type"]) == ("coco", 0.75, "segm")
    assert metrics["mean_average_precision"] == metrics["coco"]["AP50"] == pytest.approx(1.0)  # coco: AP50


def test_a_data_label_the_model_does_not_know(sample):
    task = MULTICLASS
    labels = read_dataset(sample[task], task).labels
    predictor = AnswerKeyPredictor(sample[task], task, labels)
    predictor.labels = labels[1:]
    with pytest.raises(VisionMLError, match=rf"train.jsonl:\d+: label: '{labels[0]}' is not a class of this model"):
        evaluate_predictor(predictor, sample[task])


def test_metrics_for_task_dispatch():
    gt, pred = random_detection_case(seed=4, images=8)
    voc = metrics_for_task(DETECTION, gt, pred, ["a", "b", "c"], {"validation_metric_type": "voc"})
    none = metrics_for_task("object-detection", gt, pred, ["a", "b", "c"], {"validation_metric_type": "none"})
    coco = metrics_for_task(DETECTION, gt, pred, ["a", "b", "c"], {"validation_metric_type": "coco"})
    assert none["mean_average_precision"] == voc["mean_average_precision"] == voc["voc_mean_average_precision"]
    assert "none" in none["notes"][0]
    # coco: COCO's AP50 over the boxes at box_score_threshold (0.3 by default)
    ap50 = "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]"
    assert coco["mean_average_precision"] == coco["coco_metrics"][ap50]
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    assert metrics_for_task("multiclass", np.array([0, 0]), probs, ["x", "y"])["accuracy"] == 0.5
    assert metrics_for_task(MULTILABEL, np.array([[1, 0], [0, 1]]), probs, ["x", "y"])["iou"] == 1.0
