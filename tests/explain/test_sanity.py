"""Do the explanations point at the evidence? A small CNN, its weights set by hand, names
the colour of one square on a grey noise background: its logits depend on the square's
pixels only, wherever the square is. Every method must put most of its attribution
there, through the whole pipeline (preprocessing, class choice, Grad-CAM upsampling).

Hand-set rather than trained: a network trained on such images for a few seconds is free
to be locally sensitive to the background too (ours was: its plain input gradient sat
mostly off the square), which would test the network rather than the explainers.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from visionml.explain import explain_arrays
from visionml.tasks import MULTICLASS, MULTILABEL

from .helpers import MEAN, STD, TinyPredictor

SIZE, SQUARE = 96, 28
COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.85, 0.1), "blue": (0.1, 0.1, 0.9)}


def make_image(rng, colour, top, left) -> Image.Image:
    grey = np.clip(0.5 + 0.12 * rng.standard_normal((SIZE, SIZE, 1)), 0, 1).repeat(3, axis=2)
    grey[top:top + SQUARE, left:left + SQUARE] = COLOURS[colour]
    return Image.fromarray((grey * 255).round().astype(np.uint8))


@pytest.fixture(scope="module")
def square_finder():
    """conv 1x1 (per-colour detectors on raw RGB) -> ReLU -> max-pool -> conv 3x3 -> ReLU ->
    average -> linear. Each detector is "this channel minus the mean of the other two, minus
    0.3": zero on any grey pixel (equal channels), positive only on its colour."""
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    contrast = torch.full((3, 3), -0.5) + 1.5 * torch.eye(3)  # row c: channel c minus the others' mean
    detect = nn.Conv2d(3, 3, 1)
    spread = nn.Conv2d(3, 3, 3, padding=1)
    head = nn.Linear(3, 3)
    with torch.no_grad():
        # the model sees normalised input: raw = x * std + mean, folded into the weights
        detect.weight.copy_((contrast * std)[:, :, None, None])
        detect.bias.copy_(contrast @ mean - 0.3)
        spread.weight.zero_()
        spread.weight[range(3), range(3)] = torch.tensor([[0.5, 1.0, 0.5], [1.0, 2.0, 1.0], [0.5, 1.0, 0.5]])
        spread.bias.zero_()
        head.weight.copy_(20.0 * torch.eye(3))
        head.bias.fill_(-1.0)
    return nn.Sequential(detect, nn.ReLU(inplace=True), nn.MaxPool2d(2), spread, nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
@pytest.mark.parametrize("algorithm", ["integrated_gradients", "guided_backprop", "guided_gradcam", "xrai"])
def test_attribution_falls_on_the_object(algorithm, task, square_finder):
    top, left = 50, 12
    image = make_image(np.random.default_rng(1), "green", top, left)
    # not a registry name: Grad-CAM takes the last Conv2d (the 3x3 after the max-pool)
    predictor = TinyPredictor(square_finder, task, list(COLOURS), crop=SIZE, model_name="square_finder")
    if task == MULTICLASS:
        probs = predictor.probs(image)
        assert int(np.argmax(probs)) == 1  # the network itself names the square's colour
    else:
        probs = np.array([0.1, 0.9, 0.1])  # green alone over multi-label's threshold

    (result,) = explain_arrays(predictor, image, probs, {"xai_algorithm": algorithm, "visualizations": False})
    assert result.label == "green"
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[top:top + SQUARE, left:left + SQUARE] = True
    if algorithm == "xrai":
        # XRAI ranks regions (dilated segments): its top 20% of the image must cover the square.
        xrai_map = result.attribution[0]
        salient = xrai_map >= np.percentile(xrai_map, 80)
        assert salient[inside].mean() > 0.6
        assert xrai_map[inside].mean() > xrai_map[~inside].mean()
    else:
        mass = np.abs(result.attribution).sum(axis=0)
        share = mass[inside].sum() / mass.sum()
        assert share > 0.6, f"only {share:.0%} of |attribution| on the object, which covers {inside.mean():.0%}"
