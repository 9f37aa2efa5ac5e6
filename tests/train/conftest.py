"""Tiny sample datasets and fast settings shared by the training tests."""

from __future__ import annotations

import pytest

from visionml.data.sample import make_sample_data

# sample-data's smallest images; the settings below shrink them further inside the models, so
# one epoch of each task takes seconds on 2 cores.
SIZE = (160, 120)
FAST = {
    "multiclass": ["training_crop_size=64", "validation_resize_size=64", "validation_crop_size=64",
                   "training_batch_size=4"],
    "multilabel": ["training_crop_size=64", "validation_resize_size=64", "validation_crop_size=64",
                   "training_batch_size=4"],
    "object-detection": ["min_size=64", "max_size=96", "training_batch_size=4"],
    "instance-segmentation": ["min_size=64", "max_size=96", "training_batch_size=4"],
}


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """``sample_data(task)`` -> {"train", "val"} JSONL paths of 10 tiny images (8 train, 2 val)."""
    made = {}

    def get(task: str) -> dict:
        if task not in made:
            folder = tmp_path_factory.mktemp(task.replace("-", "_"))
            made[task] = make_sample_data(task, folder, n=10, seed=0, size=SIZE)
        return made[task]

    return get


def train_args(task: str, data: dict, output, *extra: str) -> list[str]:
    """A `visionml train` command line: one fp32 epoch from scratch with the cpu preset, tiny sizes."""
    sets = [item for s in ["number_of_epochs=1", *FAST[task]] for item in ("--set", s)]
    return ["train", "--task", task, "--training-data", str(data["train"]), "--validation-data", str(data["val"]),
            "--output", str(output), "--no-pretrained", "--preset", "cpu", "--seed", "0", "--precision", "fp32",
            *sets, *extra]
