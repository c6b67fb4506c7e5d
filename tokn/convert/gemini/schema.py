"""Gemini's OpenAPI-subset ``Schema`` <-> JSON Schema (pure).

Gemini function declarations take either ``parametersJsonSchema`` (plain JSON
Schema, passed through untouched) or ``parameters``: an OpenAPI 3.0 subset
with upper-case types (``"STRING"``, ``"OBJECT"`` ...), ``nullable`` instead
of a ``"null"`` type, ``example`` instead of ``examples`` and the proto field
names (``anyOf``, ``maxItems`` ... or their snake_case spellings
``any_of``, ``max_items``: the Python SDK sends those). Same for
``responseSchema`` vs ``responseJsonSchema``.

Source: ``google.genai.types.Schema`` (google-genai 2.x) and the Gemini API
reference (https://ai.google.dev/api/caching#Schema).

Rules, both ways:

* ``type``: case changed; ``nullable: true`` <-> a ``"null"`` member of a
  type list (or ``{"type": "null"}`` in ``anyOf`` when there is no type);
  several non-null JSON types become ``anyOf``.
* ``example`` <-> ``examples[0]``; ``$ref``/``$defs`` <-> ``ref``/``defs``
  (pointers ``#/$defs/X`` <-> ``#/defs/X``);
  ``oneOf`` becomes ``anyOf``; ``const`` becomes a one-value ``enum``;
  a one-member ``allOf`` is inlined.
* Dropped (no counterpart): ``propertyOrdering`` (output key order only),
  JSON Schema keywords outside the subset (``$schema``, ``$id``,
  ``patternProperties``, ``exclusiveMinimum``, several-member ``allOf`` ...).
"""

from __future__ import annotations

from typing import Any

from .base import field

__all__ = ["json_schema_to_gemini", "schema_to_json_schema"]

# Gemini Schema field (camelCase) -> JSON Schema keyword, for plain values.
_SCALARS = {
    "format": "format",
    "title": "title",
    "description": "description",
    "enum": "enum",
    "pattern": "pattern",
    "default": "default",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "minItems": "minItems",
    "maxItems": "maxItems",
    "minProperties": "minProperties",
    "maxProperties": "maxProperties",
    "required": "required",
}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}


def schema_to_json_schema(schema: Any) -> Any:
    """A Gemini ``Schema`` (OpenAPI subset, either key casing) as JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    kind = field(schema, "type")
    if isinstance(kind, str) and kind.upper() in _TYPES:
        out["type"] = kind.lower()
    for name, keyword in _SCALARS.items():
        value = field(schema, name)
        if value is not None:
            out[keyword] = value
    example = field(schema, "example")
    if example is not None:
        out["examples"] = [example]
    items = field(schema, "items")
    if items is not None:
        out["items"] = schema_to_json_schema(items)
    props = field(schema, "properties")
    if isinstance(props, dict):
        out["properties"] = {k: schema_to_json_schema(v) for k, v in props.items()}
    extra = field(schema, "additionalProperties")
    if extra is not None:
        out["additionalProperties"] = schema_to_json_schema(extra)
    any_of = field(schema, "anyOf")
    if isinstance(any_of, list):
        out["anyOf"] = [schema_to_json_schema(s) for s in any_of]
    ref = schema.get("$ref") or schema.get("ref")
    if isinstance(ref, str):
        out["$ref"] = ref.replace("#/defs/", "#/$defs/", 1)
    defs = schema.get("$defs") or schema.get("defs")
    if isinstance(defs, dict):
        out["$defs"] = {k: schema_to_json_schema(v) for k, v in defs.items()}
    if schema.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"].append({"type": "null"})
    return out


def json_schema_to_gemini(schema: Any) -> Any:
    """A JSON Schema as a Gemini ``Schema`` (camelCase keys, upper-case types)."""
    if not isinstance(schema, dict):
        return schema
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        schema = {**{k: v for k, v in schema.items() if k != "allOf"}, **all_of[0]}
    out: dict[str, Any] = {}
    any_of = schema.get("anyOf", schema.get("oneOf"))
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    nullable = "null" in kinds
    kinds = [k for k in kinds if k != "null"]
    if len(kinds) == 1:
        out["type"] = kinds[0].upper()
    elif len(kinds) > 1 and any_of is None:
        any_of = [{"type": k} for k in kinds]
    for name, keyword in _SCALARS.items():
        if keyword in schema:
            out[name] = schema[keyword]
    if "const" in schema and "enum" not in out:
        out["enum"] = [schema["const"]]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        out["example"] = examples[0]
    if isinstance(schema.get("items"), dict):
        out["items"] = json_schema_to_gemini(schema["items"])
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: json_schema_to_gemini(v) for k, v in schema["properties"].items()}
    extra = schema.get("additionalProperties")
    if extra is not None:
        out["additionalProperties"] = json_schema_to_gemini(extra)
    if isinstance(any_of, list):
        members = [s for s in any_of if not (isinstance(s, dict) and s.get("type") == "null")]
        nullable = nullable or len(members) < len(any_of)
        out["anyOf"] = [json_schema_to_gemini(s) for s in members]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        out["ref"] = ref.replace("#/$defs/", "#/defs/", 1).replace("#/definitions/", "#/defs/", 1)
    defs = schema.get("$defs", schema.get("definitions"))
    if isinstance(defs, dict):
        out["defs"] = {k: json_schema_to_gemini(v) for k, v in defs.items()}
    if nullable:
        out["nullable"] = True
    return out
