"""What ``/openapi.json`` says about ``POST /score``: exactly the bodies ``requests.parse_request``
accepts and the answers the served model gives, so that a client or a fuzzer generated from the
schema can rely on it. Kept beside the parser: a change to one is a change to the other (the
scoring tests check both against the running server)."""

from __future__ import annotations

from ..explain.params import DEFAULT_MAX_STEPS, flag_schema, xai_schema
from .requests import IMAGE_CONTENT_TYPES

ERROR_SCHEMA = {
    "type": "object", "required": ["error", "index"],
    "properties": {"error": {"type": "string", "description": "what was wrong and what to do"},
                   "index": {"type": ["integer", "null"], "minimum": 0,
                             "description": "the bad item of input_data.data; null for the request as a whole"}},
}


def request_body(max_steps: int | None = DEFAULT_MAX_STEPS) -> dict:
    """The OpenAPI ``requestBody`` of ``POST /score``."""
    xai = xai_schema(max_steps)
    explain = {**flag_schema(), "default": False, "description": "explain this image (classification only)"}
    item_object = {
        "type": "object", "required": ["image_base64"],
        "properties": {"image_base64": {"type": "string", "description": "the image, base64 (line breaks allowed)"},
                       "model_explainability": explain, "xai_parameters": xai},
    }
    item = {"anyOf": [
        {"type": "string", "description": "a base64 image, or the JSON text of an item object"},
        item_object,
        {"type": "array", "minItems": 1, "maxItems": 1, "items": {"anyOf": [{"type": "string"}, item_object]},
         "description": "a pandas 'split' row holding one item"},
    ]}
    input_data_body = {
        "type": "object", "required": ["input_data"],
        "properties": {"input_data": {
            "type": "object", "required": ["columns", "data"],
            "properties": {"columns": {"type": "array", "items": {"type": "string", "const": "image"},
                                       "minItems": 1, "maxItems": 1},
                           "data": {"type": "array", "minItems": 1, "items": item,
                                    "description": "model_explainability and xai_parameters of the first item "
                                                   "apply to every item that does not set them"}},
        }},
    }
    image_body = {
        "type": "object", "required": ["image"], "not": {"required": ["input_data"]},
        "properties": {"image": {"type": "string", "description": "the image, base64"},
                       "model_explainability": explain, "xai_parameters": xai},
    }
    raw = {"schema": {"type": "string", "format": "binary", "description": "the image file (scores only)"}}
    return {"required": True, "content": {
        "application/json": {"schema": {"anyOf": [input_data_body, image_body]}},
        **{f"{kind}*" if kind.endswith("/") else kind: raw for kind in IMAGE_CONTENT_TYPES},
    }}


FEATURIZE_PARAMETER = {
    "name": "featurize", "in": "query", "required": False,
    "description": "true: answer each image's penultimate-layer embedding ({filename, feature_vector}) "
                   "instead of its scores (classification models)",
    "schema": {**flag_schema(), "default": False},
}


def responses(task=None) -> dict:
    """The OpenAPI ``responses`` of ``POST /score`` for a model of ``task`` (every task's answer when
    the model is not loaded yet)."""
    from ..tasks import TASKS, get_task

    tasks = [get_task(task)] if task is not None else list(TASKS.values())
    outputs = [output_schema(t) for t in tasks]
    if any(t.explainable for t in tasks):
        outputs.append(FEATURES_SCHEMA)
    one = outputs[0] if len(outputs) == 1 else {"anyOf": outputs}
    answer = {"anyOf": [{"type": "array", "items": one, "description": "for an input_data body: one per item"},
                        {**one, "description": "for an image body"}]}
    errors = {400: "bad request; index names the bad item", 401: "missing or wrong API key",
              413: "body, pixels or explanation items over the server's limits",
              500: "the model failed on an image", 503: "loading, or the queue is full"}
    return {"200": {"description": "the answer, per task (DESIGN.md 'Scoring: wire formats')",
                    "content": {"application/json": {"schema": answer}}},
            **{str(code): {"description": why, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
               for code, why in errors.items()}}


FEATURES_SCHEMA = {
    "type": "object", "required": ["filename", "feature_vector"], "additionalProperties": False,
    "properties": {"filename": {"type": "string"},
                   "feature_vector": {"type": "array", "items": {"type": "number"}}},
}


def output_schema(task) -> dict:
    """One image's answer for a model of ``task``, as ``Task.wire`` writes it."""
    if task.objects:
        box = {"type": "object", "required": ["topX", "topY", "bottomX", "bottomY"], "additionalProperties": False,
               "properties": {k: {"type": "number", "minimum": 0, "maximum": 1}
                              for k in ("topX", "topY", "bottomX", "bottomY")}}
        entry = {"type": "object", "required": ["box", "label", "score"], "additionalProperties": False,
                 "properties": {"box": box, "label": {"type": "string"},
                                "score": {"type": "number", "minimum": 0, "maximum": 1}}}
        if task.masks:
            entry["required"].append("polygon")
            entry["properties"]["polygon"] = {"type": "array", "items": {
                "type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}}
        return {"type": "object", "required": ["filename", "boxes"], "additionalProperties": False,
                "properties": {"filename": {"type": "string"}, "boxes": {"type": "array", "items": entry}}}
    png = {"type": "string", "description": "a PNG, base64"}
    attribution = {"type": "array", "description": "[3, crop, crop] pixel attributions"}
    # Ask the task how it packs one class's explanation: multi-label answers a list per image.
    per_image = isinstance(task.pack_explanations(["x"]), list)
    visualizations = {"type": ["array", "null"], "items": png} if per_image else {"type": ["string", "null"]}
    attributions = {"type": ["array", "null"], "items": attribution} if per_image else {"type": ["array", "null"]}
    return {"type": "object", "additionalProperties": False,
            "required": ["filename", "probs", "labels", "visualizations", "attributions"],
            "properties": {"filename": {"type": "string"},
                           "probs": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
                           "labels": {"type": "array", "items": {"type": "string"}},
                           "visualizations": visualizations, "attributions": attributions}}
