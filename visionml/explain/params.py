"""The ``xai_parameters`` of a scoring request, checked once into a typed value.

Two front ends, one parser: ``strict=True`` (the REST endpoint and the MLflow model) takes JSON
values as Azure's scoring code does, exactly what ``/openapi.json`` describes (``xai_schema``):
names spelled exactly, ``n_steps`` a JSON integer, the threshold a JSON number, and the flags a JSON
boolean or one of strtobool's words (``"True"``, ``"false"``, ...). Without ``strict`` (``visionml
explain --set K=V``, Python callers) strings are parsed too (``n_steps=100``, ``Integrated_Gradients``).
Every error names the key, the value given (as JSON writes it) and the values that are valid.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from ..errors import VisionMLError
from ..predict.decode import FLAG_PATTERN, DecodeError, json_shown, parse_flag
from .render import VISUALIZATION_STYLES

XAI_ALGORITHMS = ("xrai", "integrated_gradients", "guided_gradcam", "guided_backprop")
# Azure's IntegratedGradientsDefaults.ALL_METHODS (explainability/constants.py): captum's methods.
APPROXIMATION_METHODS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")
MIN_STEPS = 2  # Azure's N_STEPS_MIN
DEFAULT_MAX_STEPS = 1000
"""The server's default cap on ``n_steps`` (``visionml serve --max-xai-steps``): 1000 steps of
integrated gradients are 5000 passes through the network (NoiseTunnel's 5 samples), minutes on a CPU."""


@dataclass(frozen=True)
class XaiParams:
    xai_algorithm: str = "xrai"
    visualizations: bool = True
    attributions: bool = False
    confidence_score_threshold_multilabel: float = 0.5
    n_steps: int = 50
    xrai_fast: bool = True
    approximation_method: str = "riemann_middle"
    visualization_style: str = "figure"  # visionml's: "overlay" is the compact picture (render.py)


def _choice(key, value, valid, strict):
    text = value if strict or not isinstance(value, str) else value.strip().lower()
    if isinstance(text, str) and text in valid:
        return text
    close = difflib.get_close_matches(str(value).lower(), valid, n=1, cutoff=0.6)
    hint = f" Did you mean \"{close[0]}\"?" if close else ""
    raise VisionMLError(f"xai_parameters.{key}: {json_shown(value)} is not valid.{hint} "
                        f"Valid values: {', '.join(valid)}.")


def _flag(key, value, strict):
    try:
        return parse_flag(value.strip() if isinstance(value, str) and not strict else value, f"xai_parameters.{key}")
    except DecodeError as exc:
        raise VisionMLError(str(exc)) from None


def _number(key, value, kind, low, high, strict, why=""):
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # `true` is never a step count
        number = value
    elif isinstance(value, str) and not strict:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is not None and not math.isfinite(number) or kind is int and number is not None and number % 1:
        number = None
    what = "an integer" if kind is int else "a number"
    valid = f"Valid values: {what} from {low}{f' to {high}' if high is not None else ''}."
    if high is not None and number is not None and number > high:
        raise VisionMLError(f"xai_parameters.{key}: {json_shown(value)} is over {high}{why}. {valid}")
    if number is None or number < low:
        raise VisionMLError(f"xai_parameters.{key}: {json_shown(value)} is not valid. {valid}")
    return kind(number)


def parse_xai_parameters(raw, *, strict: bool = False, max_steps: int | None = None) -> XaiParams:
    """Check ``raw`` (the request's ``xai_parameters``; None or {} means the defaults; an ``XaiParams``
    is returned as it is). ``max_steps``: the server's cap on ``n_steps`` (None: no cap)."""
    if isinstance(raw, XaiParams):
        return raw
    if raw is None:
        return XaiParams()
    if not isinstance(raw, dict):
        raise VisionMLError("xai_parameters must be an object (a JSON dictionary).")
    steps_why = (", this server's limit (visionml serve --max-xai-steps); ask its operator for more, or send "
                 "fewer steps" if max_steps is not None else "")
    parsers = {
        "xai_algorithm": lambda v: _choice("xai_algorithm", v, XAI_ALGORITHMS, strict),
        "visualizations": lambda v: _flag("visualizations", v, strict),
        "attributions": lambda v: _flag("attributions", v, strict),
        "confidence_score_threshold_multilabel": lambda v: _number(
            "confidence_score_threshold_multilabel", v, float, 0.0, 1.0, strict),
        "n_steps": lambda v: _number("n_steps", v, int, MIN_STEPS, max_steps, strict, steps_why),
        "xrai_fast": lambda v: _flag("xrai_fast", v, strict),
        "approximation_method": lambda v: _choice("approximation_method", v, APPROXIMATION_METHODS, strict),
        "visualization_style": lambda v: _choice("visualization_style", v, VISUALIZATION_STYLES, strict),
    }
    values = {}
    for key, value in raw.items():
        if key not in parsers:
            close = difflib.get_close_matches(str(key), list(parsers), n=1, cutoff=0.6)
            hint = f" Did you mean \"{close[0]}\"?" if close else ""
            raise VisionMLError(f"xai_parameters: unknown key {json_shown(key)}.{hint} "
                                f"Valid keys: {', '.join(parsers)}.")
        values[key] = parsers[key](value)
    return XaiParams(**values)


def xai_schema(max_steps: int | None = DEFAULT_MAX_STEPS) -> dict:
    """The JSON schema of ``xai_parameters`` as ``parse_xai_parameters(strict=True, max_steps=...)``
    accepts them (served in /openapi.json)."""
    defaults = XaiParams()
    steps = {"type": "integer", "minimum": MIN_STEPS, "default": defaults.n_steps,
             "description": "integrated gradients (and XRAI's) steps"}
    if max_steps is not None:
        steps["maximum"] = max_steps

    def flag(default, description):
        return {**flag_schema(), "default": default, "description": description}

    return {
        "type": ["object", "null"], "additionalProperties": False,
        "description": "read when model_explainability is true; an unknown key is refused (400)",
        "properties": {
            "xai_algorithm": {"type": "string", "enum": list(XAI_ALGORITHMS), "default": defaults.xai_algorithm},
            "visualizations": flag(True, "return the visualization PNG (base64)"),
            "attributions": flag(False, "return the pixel attributions [3, crop, crop]"),
            "confidence_score_threshold_multilabel": {
                "type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                "description": "multi-label: explain each class whose probability is above this"},
            "n_steps": steps,
            "xrai_fast": flag(True, "XRAI's fast variant"),
            "approximation_method": {"type": "string", "enum": list(APPROXIMATION_METHODS),
                                     "default": defaults.approximation_method},
            "visualization_style": {"type": "string", "enum": list(VISUALIZATION_STYLES),
                                    "default": defaults.visualization_style,
                                    "description": "figure: Azure's 2x2 figure; overlay: visionml's compact "
                                                   "picture (visionml only)"},
        },
    }


def flag_schema() -> dict:
    """A flag as ``predict.decode.parse_flag`` reads it: a JSON boolean, 0 or 1, or a strtobool word."""
    return {"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]},
                      {"type": "string", "pattern": FLAG_PATTERN}]}
