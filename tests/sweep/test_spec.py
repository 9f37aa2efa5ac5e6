"""Azure AutoML image job YAML, as users submit it with `az ml job create`."""

import textwrap

import pytest

from visionml.errors import VisionMLError
from visionml.sweep.spec import load_job

AZURE_JOB = """
$schema: https://azuremlschemas.azureedge.net/latest/autoMLJob.schema.json
type: automl
experiment_name: dpv2-cli-automl-image-object-detection-experiment
description: An Image Object Detection job using fridge items dataset
compute: azureml:gpu-cluster
task: image_object_detection
log_verbosity: debug
primary_metric: mean_average_precision
target_column_name: label
training_data:
  path: data/training-mltable-folder
  type: mltable
validation_data:
  path: data/validation-mltable-folder
  type: mltable
limits:
  timeout_minutes: 60
  max_trials: 10
  max_concurrent_trials: 2
training_parameters:
  early_stopping: True
  evaluation_frequency: 1
sweep:
  sampling_algorithm: random
  early_termination:
    type: bandit
    evaluation_interval: 2
    slack_factor: 0.2
    delay_evaluation: 6
search_space:
  - model_name:
      type: choice
      values: [fasterrcnn_resnet50_fpn]
    learning_rate:
      type: uniform
      min_value: 0.0001
      max_value: 0.001
    optimizer:
      type: choice
      values: [sgd, adam, adamw]
    min_size:
      type: choice
      values: [600, 800]
  - model_name: "choice('retinanet_resnet50_fpn')"
    learning_rate: "uniform(0.0001, 0.01)"
"""


def write(tmp_path, text):
    path = tmp_path / "job.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_azure_docs_job_parses(tmp_path):
    spec = load_job(write(tmp_path, AZURE_JOB))
    assert spec.task == "image_object_detection"
    assert spec.primary_metric == "mean_average_precision"
    assert spec.training_data == str(tmp_path / "data/training-mltable-folder")
    assert (spec.max_trials, spec.max_concurrent_trials, spec.timeout_minutes) == (10, 2, 60)
    assert spec.early_termination == {"type": "bandit", "evaluation_interval": 2, "slack_factor": 0.2,
                                      "delay_evaluation": 6}
    assert [sorted(s) for s in spec.search_space] == [
        ["learning_rate", "min_size", "model_name", "optimizer"], ["learning_rate", "model_name"]]
    assert spec.search_space[0]["min_size"].values == (600, 800)
    assert spec.search_space[1]["learning_rate"].args == (0.0001, 0.01)
    assert not spec.automode
    assert any("compute" in n for n in spec.notes) and any("experiment_name" in n for n in spec.notes)


def test_nested_sweep_limits_and_image_model_alias(tmp_path):
    spec = load_job(write(tmp_path, """
        type: automl
        task: image-classification
        training_data: {path: ./train, type: mltable}
        limits: {timeout_minutes: 5}
        sweep:
          limits: {max_trials: 4, max_concurrent_trials: 2}
          sampling_algorithm: Grid
        image_model: {number_of_epochs: 3}
        search_space:
          - model_name: "choice('resnet18', 'mobilenetv2')"
    """))
    assert (spec.max_trials, spec.max_concurrent_trials, spec.timeout_minutes) == (4, 2, 5)
    assert spec.sampling_algorithm == "grid"
    assert spec.training_parameters == {"number_of_epochs": 3}
    assert spec.task == "image_classification"


def test_automode_when_no_search_space(tmp_path):
    spec = load_job(write(tmp_path, """
        type: automl
        task: image_classification_multilabel
        training_data: train.jsonl
        limits: {max_trials: 3}
    """))
    assert spec.automode and spec.search_space == []


@pytest.mark.parametrize("snippet,message", [
    ("limts: {max_trials: 2}", "Did you mean limits"),
    ("primary_metric: accuracy", "not supported for image_object_detection"),
    ("sweep: {sampling_algorithm: bayesain}", "Did you mean bayesian"),
    ("sweep: {early_termination: {type: bandit, slack_factr: 0.1}}", "Did you mean slack_factor"),
    ("limits: {max_trials: 0}", "must be >= 1"),
    ("target_column_name: labels", "must be 'label'"),
    ("search_space: [{learning_rate: 'uniform(1, 0.1)'}]", "min_value < max_value"),
    ("sweep: {sampling_algorithm: grid}\nsearch_space: [{learning_rate: 'uniform(0.1, 1)'}]", "grid sampling"),
])
def test_bad_jobs_fail_with_the_closest_names(tmp_path, snippet, message):
    text = "type: automl\ntask: image_object_detection\ntraining_data: train.jsonl\n" + snippet + "\n"
    with pytest.raises(VisionMLError, match=message):
        load_job(write(tmp_path, text))


def test_azure_data_asset_is_explained(tmp_path):
    with pytest.raises(VisionMLError, match="az ml data download"):
        load_job(write(tmp_path, "type: automl\ntask: image_object_detection\n"
                                 "training_data: {path: 'azureml:image-training-data:1', type: mltable}\n"))
