"""A JSON Schema check for the keywords visionml's /openapi.json uses, so the tests can hold real
requests and answers against the served schema without a dependency (``jsonschema`` is used instead
when it is installed). A keyword it does not know fails loudly: a schema that grows one must grow
the check too, never pass unchecked."""

from __future__ import annotations

import re

_KNOWN = {"type", "required", "properties", "additionalProperties", "items", "anyOf", "not", "enum", "const",
          "minItems", "maxItems", "minimum", "maximum", "pattern", "format", "default", "description"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
}


def errors(instance, schema: dict, where: str = "$") -> list[str]:
    """Why ``instance`` does not match ``schema`` (empty: it matches)."""
    try:
        import jsonschema
    except ImportError:
        return _errors(instance, schema, where)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(instance)]


def _errors(value, schema: dict, where: str) -> list[str]:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise AssertionError(f"schema_check does not know {sorted(unknown)} (at {where})")
    found = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{where}: not of type {types}"]
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        found.append(f"{where}: not one of {schema['enum']}")
    if "const" in schema and not _equal(value, schema["const"]):
        found.append(f"{where}: not {schema['const']!r}")
    if "anyOf" in schema and all(_errors(value, s, where) for s in schema["anyOf"]):
        found.append(f"{where}: matches none of anyOf")
    if "not" in schema and not _errors(value, schema["not"], where):
        found.append(f"{where}: matches what 'not' forbids")
    if isinstance(value, dict):
        found += [f"{where}: {key!r} is required" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                found += _errors(item, properties[key], f"{where}/{key}")
            elif schema.get("additionalProperties", True) is False:
                found.append(f"{where}: {key!r} is not allowed")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            found.append(f"{where}: {len(value)} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += _errors(item, schema["items"], f"{where}/{i}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: {value} out of range")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{where}: does not match {schema['pattern']}")
    return found


def _equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b
