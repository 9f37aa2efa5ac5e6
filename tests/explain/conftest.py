"""Fixtures for the explain tests: predictor-like objects around small random resnet18s (helpers.py),
and a photograph."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from visionml.tasks import MULTICLASS, MULTILABEL

from .helpers import TinyPredictor, random_resnet18


@pytest.fixture(scope="session")
def photo():
    """A real photograph (scikit-image ships it): segments and gradients like a user's image."""
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((120, 80))


@pytest.fixture(scope="session")
def multiclass_predictor():
    return TinyPredictor(random_resnet18(3), MULTICLASS, ["cat", "dog", "fox"], crop=64)


@pytest.fixture(scope="session")
def multilabel_predictor():
    return TinyPredictor(random_resnet18(4, seed=1), MULTILABEL, ["can", "carton", "milk", "water"], crop=64)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread spin-waits and
    makes small convolutions many times slower, not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
