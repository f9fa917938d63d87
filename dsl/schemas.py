"""User JSON Schemas (``validate.*``) → validator objects, once, at load time.

A schema is inline or ``{$ref: relative/path.json}`` (JSON or YAML, relative
to the pipeline file). It is checked with ``jsonschema`` (its ``$schema``
decides the draft; none means 2020-12) and compiled with ``jsonschema-rs``,
which validates a 3.8 KB order in ~9 µs. References inside a schema must stay
within it (``#/definitions/...``, ``#/$defs/...``): bundle external files.

    >>> validator, problem = load_schema({"type": "integer"}, ".")
    >>> validator.is_valid(3), problem
    (True, None)
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import jsonschema_rs
import yaml


def load_schema(source, base_dir) -> tuple[object, str | None]:
    """Return ``(validator, None)`` or ``(None, problem)``."""
    schema, validator, problem = load_schema_and_source(source, base_dir)
    return validator, problem


def load_schema_and_source(source, base_dir):
    """Return ``(schema, validator, None)`` or ``(None, None, problem)``."""
    schema, problem = _resolve(source, Path(base_dir))
    if problem:
        return None, None, problem
    problem = _check(schema)
    if problem:
        return None, None, problem
    try:
        return schema, jsonschema_rs.validator_for(schema, retriever=_refuse), None
    except Exception as exc:  # jsonschema-rs raises ValueError and its own errors
        return None, None, _first_line(exc)


_COERCIBLE = ("integer", "number", "boolean")


def coercions(schema, lower=False) -> tuple:
    """The top-level properties whose schema wants a number, a boolean or an
    array (and not a string): ``((name, types, is_array), ...)``, for
    query/params/headers, which arrive as text. A repeated query parameter
    is a list; a single value where an array is wanted becomes a list of one.

    >>> coercions({"properties": {"n": {"type": "integer"}, "s": {"type": "string"}}})
    (('n', ('integer',), False),)
    """
    out = []
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for name, sub in props.items():
        types, is_array = _types(sub), False
        if types == ("array",):
            types, is_array = _types(sub.get("items")), True
        wanted = tuple(t for t in types if t in _COERCIBLE) if "string" not in types else ()
        if wanted or is_array:
            out.append((name.lower() if lower else name, wanted, is_array))
    return tuple(out)


def _types(sub) -> tuple:
    kind = sub.get("type") if isinstance(sub, dict) else None
    if isinstance(kind, str):
        return (kind,)
    return tuple(k for k in kind if isinstance(k, str)) if isinstance(kind, list) else ()


def _resolve(source, base_dir):
    if not (isinstance(source, dict) and set(source) == {"$ref"} and isinstance(source["$ref"], str)
            and not source["$ref"].startswith("#")):
        return source, None
    file = base_dir / source["$ref"]
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {source['$ref']}: {getattr(exc, 'strerror', None) or 'not text'}"
    try:
        schema = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        return None, f"{source['$ref']} is not valid JSON/YAML: {_first_line(exc)}"
    return schema, None


def _check(schema):
    if not isinstance(schema, (dict, bool)):
        return "a JSON Schema must be an object"
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(root)"
        return f"not a valid JSON Schema at {where}: {_first_line(exc.message)}"
    return None


def _refuse(uri):
    raise ValueError(f"external $ref {uri} is not supported; bundle it into the schema")


def _first_line(exc) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
