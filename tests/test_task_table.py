"""The task table is the only dispatch: a fifth task registered here, in the test, runs validate ->
train -> predict -> evaluate through the public API without a line of the package changing; and
every classification model is served on exactly the tensor its validation transform makes."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
import torch
from PIL import Image

import visionml
from visionml.cli import main
from visionml.config import resolve_hyperparameters
from visionml.data.dataconfig import resolve_data_config
from visionml.data.sample import make_sample_data
from visionml.metrics.evaluate import evaluate_model
from visionml.modelio import make_manifest
from visionml.models.registry import models_for
from visionml.predict.predictor import Predictor
from visionml.tasks import (BOXES, EMPTY, MULTICLASS, MULTILABEL, ClassificationTask, get_task, register_task,
                            unregister_task)
from visionml.train import TrainOptions, train


class AnyObjectTask(ClassificationTask):
    """Binary "is there any object in this image?" learnt from detection data: a classifier over
    the two classes ``nothing`` and ``object``, whatever the boxes' own classes are."""

    name = "image_any_object"
    aliases = ("any-object",)
    label_shapes = frozenset({BOXES, EMPTY})
    inferred_from = None
    default_model = "resnet18"

    @staticmethod
    def _name(record) -> str:
        return "object" if record.objects else "nothing"

    def class_names(self, record):
        return [self._name(record)]

    def class_counts(self, records):
        from collections import Counter

        return Counter(map(self._name, records))

    def stratum(self, record):
        return self._name(record)

    def target(self, record, index, width, height, image_id):
        return torch.tensor(index[self._name(record)], dtype=torch.int64)

    def ground_truth(self, record, width, height, index):
        return index[self._name(record)]


@pytest.fixture()
def any_object_task():
    task = register_task(AnyObjectTask())
    try:
        yield task
    finally:
        unregister_task(task.name)


def _data(folder):
    """Detection sample data plus plain textured images with nothing in them (``label: []``)."""
    paths = make_sample_data("image_object_detection", folder, n=16, seed=3)
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for i in range(10):
        name = f"images/empty_{i}.jpg"
        pixels = np.clip(rng.normal(128, 30, (168, 224, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        lines["train" if i < 7 else "val"].append({"image_url": name, "label": []})
    for split, extra in lines.items():
        with open(paths[split], "ab") as out:
            for line in extra:
                out.write(orjson.dumps(line) + b"\n")
    return paths


def test_a_fifth_task_runs_end_to_end_without_editing_the_package(tmp_path, any_object_task, capsys):
    data = _data(tmp_path / "data")
    assert main(["validate", str(data["train"]), "--task", "any-object"]) == 0
    assert "image_any_object" in capsys.readouterr().out

    result = train(TrainOptions(task="any-object", training_data=data["train"], validation_data=data["val"],
                                output=tmp_path / "run", pretrained=False, preset="cpu", seed=0,
                                overrides={"number_of_epochs": 1, "training_batch_size": 4}))
    assert result.task == "image_any_object" and result.primary_metric == "accuracy"
    assert 0.0 <= result.best_score <= 1.0
    manifest = json.loads((result.model_dir / "visionml.json").read_text())
    assert manifest["task"] == "image_any_object" and manifest["labels"] == ["nothing", "object"]

    model = visionml.load_model(result.model_dir)
    answers = model.predict([str(tmp_path / "data" / "images" / "empty_0.jpg"),
                             str(tmp_path / "data" / "images" / "sample_00000.jpg")])
    assert [a["labels"] for a in answers] == [["nothing", "object"]] * 2
    assert all(abs(sum(a["probs"]) - 1.0) < 1e-5 for a in answers)

    metrics = evaluate_model(result.model_dir, data["val"])
    assert metrics["task"] == "image_any_object" and metrics["num_samples"] == 3 + 3
    assert set(metrics["per_label"]) == {"nothing", "object"}


def test_an_unknown_task_fails_at_once_with_the_closest_names():
    with pytest.raises(visionml.errors.UsageError, match="image_object_detection"):
        get_task("image_object_detections")


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
@pytest.mark.parametrize("model_name", sorted(set(models_for(MULTICLASS))))
def test_served_input_is_the_validation_input_for_every_classifier(tmp_path, task, model_name):
    """The same image gives the same tensor from training's validation transform and from the
    predictor's preprocessing, for every registered classification model (ViTs normalise with
    their own 0.5/0.5, the others with ImageNet's)."""
    hp = resolve_hyperparameters(task, {"model_name": model_name})
    labels = ["a", "b"]
    validation = get_task(task).transforms(resolve_data_config(model_name, hp), train=False)
    predictor = Predictor(backend=None, manifest=make_manifest(task, model_name, labels, hp))
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (300, 240, 3), dtype=np.uint8))
    expected, _ = get_task(task).apply_transform(validation, image, None)
    served = predictor.preprocess(image)
    assert served.shape == (3, hp["validation_crop_size"], hp["validation_crop_size"])
    assert torch.equal(expected, served)
    mean = [0.5] * 3 if model_name == "vits16r224" else [0.485, 0.456, 0.406]
    assert predictor.data_config.mean == tuple(mean)
