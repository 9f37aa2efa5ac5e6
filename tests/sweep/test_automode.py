"""AutoMode's built-in search spaces name real registry models and valid hyperparameters."""

import pytest

from visionml.config import resolve_hyperparameters
from visionml.models.registry import get_spec
from visionml.sweep.automode import automode_space
from visionml.tasks import TASKS


@pytest.mark.parametrize("gpu", [False, True])
@pytest.mark.parametrize("task", TASKS)
def test_automode_space_is_valid(task, gpu):
    space = automode_space(task, gpu=gpu)
    assert space
    for sub in space:
        for model in sub["model_name"].values:
            get_spec(model, task)  # raises for an unknown name or one of another task
        example = {name: (d.values[0] if d.kind == "choice" else d.args[0]) for name, d in sub.items()}
        resolve_hyperparameters(task, example)
