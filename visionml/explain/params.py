"""The ``xai_parameters`` of a scoring request, checked once into a typed value.

Values may arrive as JSON types (REST) or as strings (``visionml explain --set K=V``);
both go through the same parser so that the two front ends accept the same things.
Every error names the key, the value given and the values that are valid.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import VisionMLError

XAI_ALGORITHMS = ("xrai", "integrated_gradients", "guided_gradcam", "guided_backprop")
APPROXIMATION_METHODS = ("riemann_middle", "gausslegendre")
MAX_STEPS = 1000  # beyond this a CPU endpoint times out long before the answer is useful


@dataclass(frozen=True)
class XaiParams:
    xai_algorithm: str = "xrai"
    visualizations: bool = True
    attributions: bool = False
    confidence_score_threshold_multilabel: float = 0.5
    n_steps: int = 50
    xrai_fast: bool = True
    approximation_method: str = "riemann_middle"


def _choice(key, value, valid):
    text = value.strip().lower() if isinstance(value, str) else None
    if text in valid:
        return text
    close = difflib.get_close_matches(str(value).lower(), valid, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise VisionMLError(f"xai_parameters.{key}: {value!r} is not valid.{hint} Valid values: {', '.join(valid)}.")


def _bool(key, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise VisionMLError(f"xai_parameters.{key}: {value!r} is not a boolean. Valid values: true, false.")


def _number(key, value, kind, low, high):
    if isinstance(value, bool):  # bool is an int subclass; `true` is never a step count
        number = None
    elif isinstance(value, (int, float)):
        number = value
    else:
        try:
            number = kind(str(value).strip())
        except ValueError:
            number = None
    if number is not None and kind is int and float(number) != int(number):
        number = None
    if number is None or not low <= number <= high:
        what = "an integer" if kind is int else "a number"
        raise VisionMLError(f"xai_parameters.{key}: {value!r} is not valid. Valid values: {what} from {low} to {high}.")
    return kind(number)


_PARSERS = {
    "xai_algorithm": lambda v: _choice("xai_algorithm", v, XAI_ALGORITHMS),
    "visualizations": lambda v: _bool("visualizations", v),
    "attributions": lambda v: _bool("attributions", v),
    "confidence_score_threshold_multilabel": lambda v: _number(
        "confidence_score_threshold_multilabel", v, float, 0.0, 1.0),
    "n_steps": lambda v: _number("n_steps", v, int, 1, MAX_STEPS),
    "xrai_fast": lambda v: _bool("xrai_fast", v),
    "approximation_method": lambda v: _choice("approximation_method", v, APPROXIMATION_METHODS),
}


def parse_xai_parameters(raw: dict | None) -> XaiParams:
    """Check ``raw`` (the request's ``xai_parameters``; None or {} means the defaults)."""
    if raw is None:
        return XaiParams()
    if not isinstance(raw, dict):
        raise VisionMLError(f"xai_parameters must be an object (a JSON dictionary), got {type(raw).__name__}.")
    values = {}
    for key, value in raw.items():
        if key not in _PARSERS:
            close = difflib.get_close_matches(str(key), list(_PARSERS), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise VisionMLError(f"xai_parameters: unknown key {key!r}.{hint} Valid keys: {', '.join(_PARSERS)}.")
        values[key] = _PARSERS[key](value)
    return XaiParams(**values)
