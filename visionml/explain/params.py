"""The ``xai_parameters`` of a scoring request, checked once into a typed value.

Two front ends, one parser: ``strict=True`` (the REST endpoint and the MLflow model) takes JSON
values as Azure's scoring code does, exactly what ``/openapi.json`` describes (``xai_schema``):
names spelled exactly, ``n_steps`` a JSON integer, the threshold a JSON number, and the flags a JSON
boolean or one of strtobool's words (``"True"``, ``"false"``, ...). Without ``strict`` (``visionml
explain --set K=V``, Python callers) strings are parsed too (``n_steps=100``, ``Integrated_Gradients``).
Every error names the key, the value given (as JSON writes it) and the values that are valid.

The keys are ``Param`` fields of the hyperparameters' machinery (``visionml.config``), parsed by
``Param.parse``: the flags are its ``strtobool`` kind, the names its ``choice`` kind, ``strict`` its
JSON mode. What stays here is the wording: a refusal (``FieldError``) is said again as a JSON client
reads it, and the schema is written from the same fields.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from ..config import STRTOBOOL_FALSE, STRTOBOOL_TRUE, FieldError, Param
from ..errors import VisionMLError
from ..predict.decode import FLAG_PATTERN, json_shown
from .render import VISUALIZATION_STYLES

XAI_ALGORITHMS = ("xrai", "integrated_gradients", "guided_gradcam", "guided_backprop")
# Azure's IntegratedGradientsDefaults.ALL_METHODS (explainability/constants.py): captum's methods.
APPROXIMATION_METHODS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")
MIN_STEPS = 2  # Azure's N_STEPS_MIN
DEFAULT_MAX_STEPS = 1000
"""The server's default cap on ``n_steps`` (``visionml serve --max-xai-steps``): 1000 steps of
integrated gradients are 5000 passes through the network (NoiseTunnel's 5 samples), minutes on a CPU."""

XAI_FIELDS: dict[str, Param] = {p.name: p for p in [
    Param("xai_algorithm", "choice", "xrai", choices=XAI_ALGORITHMS),
    Param("visualizations", "strtobool", True, help="return the visualization PNG (base64)"),
    Param("attributions", "strtobool", False, help="return the pixel attributions [3, crop, crop]"),
    Param("confidence_score_threshold_multilabel", "float", 0.5, low=0, high=1,
          help="multi-label: explain each class whose probability is above this"),
    Param("n_steps", "int", 50, low=MIN_STEPS, help="integrated gradients (and XRAI's) steps"),
    Param("xrai_fast", "strtobool", True, help="XRAI's fast variant"),
    Param("approximation_method", "choice", "riemann_middle", choices=APPROXIMATION_METHODS),
    Param("visualization_style", "choice", "figure", choices=VISUALIZATION_STYLES, azure=False,
          help="figure: Azure's 2x2 figure; overlay: visionml's compact picture (visionml only)"),
]}
"""The keys of ``xai_parameters``, Azure's names, types and defaults, as the hyperparameters are defined."""

_STEPS_OVER = (", this server's limit (visionml serve --max-xai-steps); ask its operator for more, or send "
               "fewer steps")


def _default(name):
    return XAI_FIELDS[name].default


@dataclass(frozen=True)
class XaiParams:
    xai_algorithm: str = _default("xai_algorithm")
    visualizations: bool = _default("visualizations")
    attributions: bool = _default("attributions")
    confidence_score_threshold_multilabel: float = _default("confidence_score_threshold_multilabel")
    n_steps: int = _default("n_steps")
    xrai_fast: bool = _default("xrai_fast")
    approximation_method: str = _default("approximation_method")
    visualization_style: str = _default("visualization_style")  # visionml's: "overlay" is the compact picture


def parse_xai_parameters(raw, *, strict: bool = False, max_steps: int | None = None) -> XaiParams:
    """Check ``raw`` (the request's ``xai_parameters``; None or {} means the defaults; an ``XaiParams``
    is returned as it is). ``max_steps``: the server's cap on ``n_steps`` (None: no cap)."""
    if isinstance(raw, XaiParams):
        return raw
    if raw is None:
        return XaiParams()
    if not isinstance(raw, dict):
        raise VisionMLError("xai_parameters must be an object (a JSON dictionary).")
    fields = _fields(max_steps)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" Did you mean \"{close[0]}\"?" if close else ""
            raise VisionMLError(f"xai_parameters: unknown key {json_shown(key)}.{hint} "
                                f"Valid keys: {', '.join(fields)}.")
        try:
            values[key] = fields[key].parse(value, strict=strict)
        except FieldError as exc:
            raise VisionMLError(_refusal(fields[key], value, exc.reason, max_steps)) from None
    return XaiParams(**values)


def _fields(max_steps: int | None) -> dict[str, Param]:
    if max_steps is None:
        return XAI_FIELDS
    return {**XAI_FIELDS, "n_steps": replace(XAI_FIELDS["n_steps"], high=max_steps)}


def _refusal(field: Param, value, reason: str, max_steps: int | None) -> str:
    """The parser's refusal worded for a JSON client: the value as JSON writes it, and the valid values."""
    shown = f"xai_parameters.{field.name}: {json_shown(value)}"
    if field.kind == "strtobool":
        words = ", ".join(json_shown(w) for w in STRTOBOOL_TRUE + STRTOBOOL_FALSE)
        return (f"{shown} is not valid. Valid values: true or false, as a JSON boolean, 0 or 1, or one of the "
                f"strings {words} (in any case)")
    if field.kind == "choice":
        close = difflib.get_close_matches(str(value).lower(), field.choices, n=1, cutoff=0.6)
        hint = f" Did you mean \"{close[0]}\"?" if close else ""
        return f"{shown} is not valid.{hint} Valid values: {', '.join(field.choices)}."
    what, bound = ("an integer", int) if field.kind == "int" else ("a number", float)  # "from 0.0 to 1.0"
    high = f" to {bound(field.high)}" if field.high is not None else ""
    valid = f"Valid values: {what} from {bound(field.low)}{high}."
    if reason == "high":
        why = _STEPS_OVER if field.name == "n_steps" and max_steps is not None else ""
        return f"{shown} is over {bound(field.high)}{why}. {valid}"
    return f"{shown} is not valid. {valid}"


def xai_schema(max_steps: int | None = DEFAULT_MAX_STEPS) -> dict:
    """The JSON schema of ``xai_parameters`` as ``parse_xai_parameters(strict=True, max_steps=...)``
    accepts them (served in /openapi.json), read from the same fields."""
    return {
        "type": ["object", "null"], "additionalProperties": False,
        "description": "read when model_explainability is true; an unknown key is refused (400)",
        "properties": {name: _field_schema(field) for name, field in _fields(max_steps).items()},
    }


def _field_schema(field: Param) -> dict:
    if field.kind == "strtobool":
        schema = flag_schema()
    elif field.kind == "choice":
        schema = {"type": "string", "enum": list(field.choices)}
    else:
        schema = {"type": "integer" if field.kind == "int" else "number", "minimum": field.low}
        if field.high is not None:
            schema["maximum"] = field.high
    schema["default"] = field.default
    if field.help:
        schema["description"] = field.help
    return schema


def flag_schema() -> dict:
    """A flag as ``predict.decode.parse_flag`` reads it: a JSON boolean, 0 or 1, or a strtobool word."""
    return {"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]},
                      {"type": "string", "pattern": FLAG_PATTERN}]}
