"""Tiny sample datasets and job YAML for the sweep tests."""

from __future__ import annotations

import textwrap

import pytest

from visionml.data.sample import make_sample_data

# One fp32 epoch at tiny sizes: a trial takes seconds on 2 cores.
FAST = {
    "image_classification": {"number_of_epochs": 1, "training_crop_size": 64, "validation_resize_size": 64,
                             "validation_crop_size": 64, "training_batch_size": 4, "precision": "fp32"},
    "image_classification_multilabel": {"number_of_epochs": 1, "training_crop_size": 64,
                                        "validation_resize_size": 64, "validation_crop_size": 64,
                                        "training_batch_size": 4, "precision": "fp32"},
    "image_object_detection": {"number_of_epochs": 1, "min_size": 64, "max_size": 96, "training_batch_size": 4,
                               "precision": "fp32"},
    "image_instance_segmentation": {"number_of_epochs": 1, "min_size": 64, "max_size": 96,
                                    "training_batch_size": 4, "precision": "fp32"},
}


@pytest.fixture(scope="session")
def sweep_data(tmp_path_factory):
    """``sweep_data(task)`` -> {"train", "val"} paths of 10 tiny images."""
    made = {}

    def get(task: str) -> dict:
        if task not in made:
            made[task] = make_sample_data(task, tmp_path_factory.mktemp(task), n=10, seed=0, size=(160, 120))
        return made[task]

    return get


def write_job(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path
