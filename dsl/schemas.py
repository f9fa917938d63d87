r"""User JSON Schemas (``validate.*``) → validator objects, once, at load time.

A schema is inline or ``{$ref: relative/path.json}`` (JSON or YAML, relative
to the pipeline file). It is checked with ``jsonschema`` (its ``$schema``
decides the draft; none means 2020-12) and compiled with ``jsonschema-rs``,
which validates a 3.8 KB order in ~9 µs. References inside a schema must stay
within it (``#/definitions/...``, ``#/$defs/...``): bundle external files.

Patterns (``pattern``, ``patternProperties``) are ECMA-262 regexes: they are
checked by ``jsonschema-rs``, the validator that runs per request, never by
Python's ``re`` (which refuses ``\p{Letter}`` and ``(?<name>…)``). ``format``
is asserted under every draft unless ``formats=False``.

    >>> validator, problem = load_schema({"type": "integer"}, ".")
    >>> validator.is_valid(3), problem
    (True, None)
    >>> load_schema({"pattern": "(["}, ".")[1]
    SchemaProblem(message='not a valid JSON Schema at pattern: "([" is not a "regex" (ECMA-262)', where=('pattern',))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import jsonschema_rs

from .loader import load_yaml


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """Why a schema is refused, and where inside the schema (a path of keys)."""

    message: str
    where: tuple = ()

    def __str__(self) -> str:
        return self.message


def load_schema(source, base_dir, formats=True) -> tuple[object, SchemaProblem | None]:
    """Return ``(validator, None)`` or ``(None, problem)``."""
    schema, validator, problem = load_schema_and_source(source, base_dir, formats)
    return validator, problem


def load_schema_and_source(source, base_dir, formats=True):
    """Return ``(schema, validator, None)`` or ``(None, None, problem)``.
    ``formats=False`` (``validate.formats: false``) leaves ``format`` unchecked."""
    schema, problem = _resolve(source, Path(base_dir))
    if problem:
        return None, None, SchemaProblem(problem)
    problem = _check(schema)
    if problem:
        return None, None, problem
    try:
        return schema, jsonschema_rs.validator_for(schema, retriever=_refuse, validate_formats=formats), None
    except jsonschema_rs.ValidationError as exc:   # the schema against its meta-schema, patterns included
        return None, None, _invalid(tuple(exc.instance_path), exc.message)
    except Exception as exc:  # jsonschema-rs raises ValueError and its own errors
        return None, None, SchemaProblem(_first_line(exc))


def _invalid(where: tuple, message: str) -> SchemaProblem:
    if message.endswith(' is not a "regex"'):
        message += " (ECMA-262)"
    at = "/".join(map(str, where)) or "(root)"
    return SchemaProblem(f"not a valid JSON Schema at {at}: {_first_line(message)}", where)


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


def is_file_ref(source) -> bool:
    """``{$ref: path}`` alone: the schema is read from that file.

    >>> is_file_ref({"$ref": "schemas/order.json"}), is_file_ref({"$ref": "#/$defs/a"})
    (True, False)
    """
    return (isinstance(source, dict) and set(source) == {"$ref"} and isinstance(source["$ref"], str)
            and not source["$ref"].startswith("#"))


def _resolve(source, base_dir):
    if not is_file_ref(source):
        return source, None
    file = base_dir / source["$ref"]
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {source['$ref']}: {getattr(exc, 'strerror', None) or 'not text'}"
    if file.suffix != ".json":   # YAML 1.2 core schema, as pipelines are read
        doc, problems = load_yaml(text, source["$ref"])
        errors = [d for d in problems if d.severity == "error"]
        if errors:
            return None, f"{source['$ref']} is not valid JSON/YAML: {errors[0].line}:{errors[0].col}: " \
                         f"{errors[0].message}"
        return doc.data, None
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"{source['$ref']} is not valid JSON/YAML: {_first_line(exc)}"


def _check(schema):
    """The schema against its draft's meta-schema, as ``check_schema`` does, but
    leaving regexes to jsonschema-rs (Python's ``re`` is another dialect)."""
    if not isinstance(schema, (dict, bool)):
        return SchemaProblem("a JSON Schema must be an object")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    meta = cls(cls.META_SCHEMA, format_checker=_meta_formats(cls))
    error = jsonschema.exceptions.best_match(meta.iter_errors(schema))
    return None if error is None else _invalid(tuple(error.absolute_path), error.message)


@cache
def _meta_formats(cls) -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(())
    checker.checkers = {k: v for k, v in cls.FORMAT_CHECKER.checkers.items() if k != "regex"}
    return checker


def _refuse(uri):
    raise ValueError(f"external $ref {uri} is not supported; bundle it into the schema")


def _first_line(exc) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
