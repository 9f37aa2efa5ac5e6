"""What the sweep tests' job YAMLs share (fixtures are in conftest.py)."""

from __future__ import annotations

import textwrap

import yaml

from tests.support import fast_settings

# One fp32 epoch at tiny sizes (tests/support.py's FAST_TRAINING): a trial takes seconds on 2 cores.
FAST = {task: {"number_of_epochs": 1, **{k: yaml.safe_load(v) for k, v in fast_settings(task).items()},
               "precision": "fp32"}
        for task in ("image_classification", "image_classification_multilabel", "image_object_detection",
                     "image_instance_segmentation")}


def write_job(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path
