"""Check loaded data against the DSL schema; turn each violation into a
diagnostic at the right key or value, worded for a person.

    >>> from dsl.loader import load_yaml
    >>> doc, _ = load_yaml("pipeline: x\\nrecieve: {path: /a}\\n", "p.yaml")
    >>> [str(d) for d in check_shape(doc)][:1]
    ["p.yaml:2:1: unknown-key: unknown key 'recieve' in the pipeline; did you mean 'receive'?"]
"""
from __future__ import annotations

import difflib
from functools import lru_cache

import jsonschema

from .errors import Diagnostic
from .spec import pipeline_schema

_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean",
               int: "integer", float: "number", type(None): "null"}


@lru_cache(maxsize=1)
def _validator():
    schema = pipeline_schema()
    return jsonschema.Draft7Validator(schema)


def check_shape(doc, validator=None, root: str = "the pipeline") -> list[Diagnostic]:
    """All shape problems of a loaded document (empty list when it fits), against the
    DSL schema or ``validator`` (another file format, such as pipeline tests, whose
    top level is called ``root`` in messages)."""
    out = []
    for error in (validator or _validator()).iter_errors(doc.data):
        out.extend(_explain(doc, error, root))
    return out


def refused_paths(data) -> list[tuple]:
    """Where ``data`` does not fit the DSL: the path of each refused value (an unknown key's
    own path; a mapping that misses a required key: the mapping's path)."""
    out = []
    for error in _validator().iter_errors(data):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = error.schema.get("properties", {})
            out.extend(path + (k,) for k in error.instance if k not in allowed)
        else:
            out.append(path)
    return out


def _explain(doc, error, root="the pipeline"):
    handler = _HANDLERS.get(error.validator, _generic)
    return handler(doc, tuple(error.absolute_path), error, root)


def _where(path, root="the pipeline") -> str:
    keys = [str(p) if isinstance(p, str) else f"[{p}]" for p in path]
    return root if not keys else "'" + ".".join(keys).replace(".[", "[") + "'"


def _unknown(doc, path, error, root):
    allowed = sorted(error.schema.get("properties", {}))
    extra = [k for k in error.instance if k not in allowed]
    return [doc.diag(path + (key,), "unknown-key",
                     f"unknown key '{key}' in {_where(path, root)}{_suggest(key, allowed)}", key=True)
            for key in extra]


def _suggest(key, allowed) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return "; allowed: " + ", ".join(allowed)


def _required(doc, path, error, root):
    missing = [k for k in error.validator_value if k not in error.instance]
    return [doc.diag(path, "missing-key", f"missing required key '{k}' in {_where(path, root)}", key=bool(path))
            for k in missing]


def _type(doc, path, error, root):
    want = error.validator_value
    want = " or ".join(want) if isinstance(want, list) else want
    got = _TYPE_NAMES.get(type(error.instance), "value")
    return [doc.diag(path, "wrong-type", f"{_where(path, root)} must be {_article(want)}, not {_article(got)}")]


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _enum(doc, path, error, root):
    allowed = ", ".join(map(str, error.validator_value))
    return [doc.diag(path, "bad-value", f"{_where(path, root)} is {error.instance!r}; allowed: {allowed}")]


def _one_of(doc, path, error, root):
    if len(path) >= 2 and path[-2] == "steps" or path and path[-1] == "steps":
        return _step_kind(doc, path, error, root)
    if "route" in path:
        return [doc.diag(path, "bad-branch",
                         "a route branch is either {when: <expr>, steps/respond} or {otherwise: {steps/respond}}")]
    keys = [next(iter(o["required"])) for o in error.validator_value if list(o) == ["required"]]
    if len(keys) == len(error.validator_value) and isinstance(error.instance, dict):
        present = [k for k in keys if k in error.instance]
        found = f"this has {' and '.join(present)}" if present else "this has none"
        return [doc.diag(path, "bad-value", f"{_where(path)} takes exactly one of {', '.join(keys)}; {found}")]
    return _generic(doc, path, error, root)


def _step_kind(doc, path, error, root):
    from .steps import KINDS
    names = [k.KEY for k in KINDS]
    present = [k for k in names if isinstance(error.instance, dict) and k in error.instance]
    if present:
        msg = f"a step has exactly one kind; this one has {', '.join(present)}"
    else:
        msg = "a step needs one of: " + ", ".join(names)
    return [doc.diag(path, "bad-step", msg)]


def _pattern(doc, path, error, root):
    if "propertyNames" in error.schema_path:    # a map's key (a table name): point at the key
        return [doc.diag(path + (error.instance,), "bad-value", f"{_where(path)}: the name "
                         f"{error.instance!r} must match {error.validator_value}", key=True)]
    hint = error.schema.get("description", "").split("\n")[0].rstrip(".")
    hint = f" ({hint})" if hint else ""
    return [doc.diag(path, "bad-value",
                     f"{_where(path, root)} is {error.instance!r}; it must match {error.validator_value}{hint}")]


def _generic(doc, path, error, root):
    return [doc.diag(path, "bad-value", f"{_where(path, root)}: {error.message}")]


_HANDLERS = {"additionalProperties": _unknown, "required": _required, "type": _type,
             "enum": _enum, "oneOf": _one_of, "pattern": _pattern}
