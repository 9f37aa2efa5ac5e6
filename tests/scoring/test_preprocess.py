"""The predictor's classifier input (predict/preprocess.py, the fast path) is bit for bit the
validation transform of training (DataConfig.eval_transform), so served, evaluated and exported
answers stay those of training whatever size the image has."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionml.data.dataconfig import DataConfig
from visionml.predict.preprocess import classifier_input

SIZES = [(640, 480), (480, 640), (1000, 999), (1921, 1080), (300, 200), (257, 256), (256, 256), (224, 224),
         (100, 80), (225, 301), (3000, 224)]


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("width, height", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_same_values_as_the_validation_transform(width, height):
    config = DataConfig(resize_size=256, crop_size=224)
    image = photo(width, height)
    got = classifier_input(image, config)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, config.eval_transform(image).numpy())


def test_another_normalisation_and_sizes():
    config = DataConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize_size=70, crop_size=63)
    image = photo(333, 127, seed=1)
    np.testing.assert_array_equal(classifier_input(image, config), config.eval_transform(image).numpy())


def test_a_grey_image_takes_the_transform_itself():
    config = DataConfig(resize_size=64, crop_size=64)
    image = photo(90, 70).convert("L")
    np.testing.assert_array_equal(classifier_input(image, config), config.eval_transform(image).numpy())


def test_the_predictor_feeds_it_to_both_backends(predictors):
    from visionml.tasks import MULTICLASS

    predictor = predictors[MULTICLASS]
    image = photo(150, 100, seed=2)
    np.testing.assert_array_equal(predictor.preprocess(image).numpy(),
                                  predictor.data_config.eval_transform(image).numpy())
