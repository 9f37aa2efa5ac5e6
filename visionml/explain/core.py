"""Explain one image for a loaded classifier: pick the classes, run the method, render.

``explain`` gives the scoring wire format (base64 PNG strings, nested float lists);
``explain_arrays`` gives the same explanations as bytes and numpy arrays (the CLI's).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from ..errors import VisionMLError
from ..tasks import get_task
from .params import XaiParams, parse_xai_parameters

_SIGNIFICANT_DIGITS = 5  # Azure's examples print 5; more only bloats the JSON


@dataclass
class ClassExplanation:
    index: int
    label: str
    probability: float
    attribution: np.ndarray  # float32 [3, crop, crop]
    png: bytes | None  # the visualization, when asked for


def _display_image(x, data_config) -> np.ndarray:
    """Undo the normalisation of the model input [1,3,H,W] -> uint8 [H,W,3]: what the model saw."""
    mean = np.asarray(data_config.mean, dtype=np.float32)
    std = np.asarray(data_config.std, dtype=np.float32)
    pixels = x[0].detach().float().cpu().numpy().transpose(1, 2, 0) * std + mean
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _attribute(em, x, target: int, params: XaiParams, model_name):
    """(attribution [3,H,W] float32, xrai map [H,W] or None) for one class."""
    from . import methods

    algorithm = params.xai_algorithm
    if algorithm == "xrai":
        xrai_map = methods.xrai(em, x, target, params.n_steps, params.approximation_method, params.xrai_fast)
        # The wire format wants [3, crop, crop]; XRAI scores regions, so every channel holds the map.
        return np.repeat(xrai_map[None], 3, axis=0), xrai_map
    if algorithm == "integrated_gradients":
        attr = methods.integrated_gradients(em, x, target, params.n_steps, params.approximation_method)
    elif algorithm == "guided_backprop":
        attr = methods.guided_backprop(em, x, target)
    else:
        attr = methods.guided_gradcam(em, x, target, methods.gradcam_layer(em.model, model_name))
    return attr[0].detach().float().cpu().numpy(), None


def explain_arrays(predictor, pil_image, probs, params) -> list[ClassExplanation] | None:
    """Explanations of the predicted class (multi-class) or of each class whose probability is above
    the threshold (multi-label, as Azure selects them); None for detection and segmentation, which
    have no XAI.

    ``params`` is the raw ``xai_parameters`` dict (or an ``XaiParams``); a bad value raises
    ``VisionMLError`` naming the valid ones.
    """
    params = params if isinstance(params, XaiParams) else parse_xai_parameters(params)
    task = get_task(predictor.task)
    if not task.explainable:
        return None
    if getattr(predictor, "model", None) is None:
        raise VisionMLError("explanations need the PyTorch model: load the model folder with the torch "
                            "backend (an ONNX deployment scores only)")
    from . import methods
    from .render import render

    model_name = predictor.settings["model_name"]
    if params.xai_algorithm == "guided_gradcam":
        methods.gradcam_layer(predictor.model, model_name)  # a ViT fails here, before any work
    probs = np.asarray(probs, dtype=np.float64)
    em = methods.explain_model_for(predictor.model, task)
    x = predictor.preprocess(pil_image).unsqueeze(0).to(em.device)
    image = _display_image(x, predictor.data_config) if params.visualizations else None
    results = []
    for index in task.explanation_targets(probs, params.confidence_score_threshold_multilabel):
        attribution, xrai_map = _attribute(em, x, index, params, model_name)
        attribution = np.nan_to_num(attribution.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        label = str(predictor.labels[index])
        png = None
        if params.visualizations:
            png = render(params.visualization_style, image, params.xai_algorithm, label, float(probs[index]),
                         attribution, xrai_map)
        results.append(ClassExplanation(index, label, float(probs[index]), attribution, png))
    return results


def round_significant(values: np.ndarray, digits: int = _SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant digits so that each float prints short in JSON.

    Dividing by an exact power of ten gives the double nearest the short decimal, whose
    shortest repr is that decimal (``-0.00042969``, not ``-0.0004296899982728064``).
    """
    values = np.asarray(values, dtype=np.float64)
    magnitude = np.floor(np.log10(np.abs(values), out=np.zeros_like(values), where=values != 0))
    exponent = np.clip(digits - 1 - magnitude, 0, 22)  # powers of ten up to 1e22 are exact doubles
    scale = 10.0 ** exponent
    return np.round(values * scale) / scale


def explain(predictor, pil_image, probs, params) -> tuple:
    """(visualizations, attributions) in the scoring wire format for one image.

    Multi-class: a base64 PNG string and a nested list [3, crop, crop] (or None where not
    asked for); multi-label: lists of those, one per class above
    ``confidence_score_threshold_multilabel``, None when no class is (as Azure answers);
    detection and segmentation: (None, None).
    """
    params = parse_xai_parameters(params)
    if not (params.visualizations or params.attributions):
        return None, None
    explanations = explain_arrays(predictor, pil_image, probs, params)
    if explanations is None:
        return None, None
    visualizations = attributions = None
    if params.visualizations:
        visualizations = [base64.b64encode(e.png).decode("ascii") for e in explanations]
    if params.attributions:
        attributions = [round_significant(e.attribution).tolist() for e in explanations]
    task = get_task(predictor.task)
    return (task.pack_explanations(visualizations) if visualizations is not None else None,
            task.pack_explanations(attributions) if attributions is not None else None)
