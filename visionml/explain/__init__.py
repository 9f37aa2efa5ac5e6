"""Explanations of classification predictions: XRAI, integrated gradients, guided Grad-CAM
and guided backprop (DESIGN.md "Explainability"; docs/explainability.md).

``explain(predictor, pil_image, probs, params) -> (visualizations, attributions)`` is what
the predictor and the server call; torch, captum and saliency load on first use.
"""

from .core import ClassExplanation, explain, explain_arrays, round_significant
from .params import APPROXIMATION_METHODS, XAI_ALGORITHMS, XaiParams, parse_xai_parameters

__all__ = [
    "APPROXIMATION_METHODS", "XAI_ALGORITHMS", "ClassExplanation", "XaiParams", "explain", "explain_arrays",
    "parse_xai_parameters", "round_significant",
]
