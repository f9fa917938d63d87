"""Expressions checked against the JSON Schemas that validate the request, at load time.

Where a pipeline validates a part of the request (``validate.body`` …), every path an
expression takes into it is followed through the schema: ``properties``,
``patternProperties``, ``additionalProperties``, ``items``/``prefixItems``, ``$ref`` (within
the schema), ``allOf``, ``anyOf``/``oneOf`` (a name any alternative allows is fine) — inside
projections, filters, multiselects, pipes, ``let`` and function arguments. The same holds for
``steps.<id>`` whose output shape is known (a ``transform`` that builds an object, a ``call``).

    >>> from dsl.jmes_parser import parse
    >>> body = {"type": "object", "properties": {"customer": {"type": "object"}}}
    >>> [f.message for f in check(parse("request.body.custmer.email"), request_shape({"body": body}))]
    ["the schema of request.body has no field 'custmer'; did you mean 'customer'?"]

Findings are warnings (``unknown-field``, ``unknown-name``, ``type-mismatch``): a schema
describes what is valid, and an expression may read what the sender adds beyond it.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

__all__ = ["Finding", "Shape", "check", "infer", "object_shape", "request_shape", "steps_shape", "UNKNOWN",
           "CALL_OUTPUT", "ROUTE_OUTPUT"]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    message: str
    offset: int


@dataclass(frozen=True, slots=True)
class Shape:
    """A JSON Schema (``schema``) inside the document its ``$ref``s resolve in (``root``);
    ``label`` names it in messages (``request.body.customer``)."""

    schema: object
    root: object
    label: str


UNKNOWN = None                       # nothing is known about the value
_MAX_REF_DEPTH = 16
_TYPO_RATIO = 0.8                    # undeclared, but this close to a declared name: a likely typo
_ARRAY_FUNCTIONS_OF_NUMBERS = frozenset({"sum", "avg"})
_EXPREF_FUNCTIONS = frozenset({"sort_by", "max_by", "min_by", "group_by", "map"})


def object_shape(properties: dict, label: str, closed: bool = True) -> Shape:
    schema = {"type": "object", "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return Shape(schema, schema, label)


CALL_OUTPUT = object_shape({"status": {"type": "integer"}, "headers": {"type": "object"}, "body": {},
                            "error": {"type": ["string", "null"]}},
                           "the call's output")
ROUTE_OUTPUT = object_shape({"branch": {"type": ["integer", "null"]}}, "the route's output")


def request_shape(parts: dict, params=None) -> Shape:
    """The shape of ``request`` for the validated ``parts`` ({"body": schema, …}); ``params``:
    the path's parameter names (``request.params`` holds exactly those)."""
    props = {"method": {"type": "string"}, "path": {"type": "string"}, "client": {"type": "string"},
             "params": {"type": "object"}, "query": {"type": "object"}, "headers": {"type": "object"},
             "body": {}}
    if params is not None:
        props["params"] = {"type": "object", "properties": {n: {"type": "string"} for n in params},
                           "additionalProperties": False}
    if isinstance(parts.get("headers"), dict) and isinstance(parts["headers"].get("properties"), dict):
        headers = dict(parts["headers"])      # names arrive in lower case
        headers["properties"] = {k.lower(): v for k, v in headers["properties"].items()}
        parts = {**parts, "headers": headers}
    root = {"type": "object", "properties": props, "additionalProperties": False, "$steps": {}}
    for part, schema in parts.items():
        if part in props and isinstance(schema, (dict, bool)):      # its $refs resolve in itself
            props[part] = {"$step": part}
            root["$steps"][part] = Shape(schema, schema, f"request.{part}")
    return Shape(root, root, "request")


def steps_shape(outputs: dict) -> Shape:
    """The shape of ``steps``: each step id whose output shape is known (others are open)."""
    schema = {"type": "object", "properties": {}, "$steps": {}, "$quiet": True}   # unknown-step says the rest
    for step_id, shape in outputs.items():
        if shape is not UNKNOWN:
            schema["$steps"][step_id] = shape
            schema["properties"][step_id] = {"$step": step_id}
    return Shape(schema, schema, "steps")


def check(tree, request: Shape | None = None, steps: Shape | None = None) -> list[Finding]:
    """Findings for ``tree`` evaluated on the context ``{request, steps}``."""
    walker = _Walker(request, steps)
    walker.infer(tree, _ROOT, {})
    return walker.findings


def infer(tree, request: Shape | None = None, steps: Shape | None = None):
    """``(shape of the result, findings)``: the shape of what a transform builds, for steps
    that read it."""
    walker = _Walker(request, steps)
    return walker.infer(tree, _ROOT, {}), walker.findings


_ROOT = object()       # the context document itself


class _Walker:
    def __init__(self, request, steps):
        self.request, self.steps = request, steps
        self.findings: list[Finding] = []

    def note(self, code, message, offset):
        self.findings.append(Finding(code, message, offset))

    def infer(self, node, cur, env):
        handler = getattr(self, "_" + node["type"], None)
        if handler is None:
            for child in node.get("children", ()):
                if isinstance(child, dict):
                    self.infer(child, cur, env)
            return UNKNOWN
        return handler(node, cur, env)

    # --- names ---------------------------------------------------------------------------

    def _field(self, node, cur, env):
        name, at = node["value"], node.get("offset", 0)
        if cur is _ROOT:
            return self._root_name(name, at)
        if cur is UNKNOWN:
            return UNKNOWN
        return self._child(cur, name, at)

    def _root_name(self, name, at):
        if name == "request":
            return self.request
        if name == "steps":
            return self.steps
        close = difflib.get_close_matches(name, ["request", "steps"], n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else "; expressions start at request or steps"
        self.note("unknown-name", f"'{name}' is not in the context (always null){hint}", at)
        return UNKNOWN

    def _child(self, shape, name, at):
        verdict, sub, declared = _lookup(shape, name)
        label = f"{shape.label}.{name}"
        if verdict == "forbidden":
            hint = _suggest(name, declared)
            if declared is None:
                self.note("unknown-field", f"{shape.label} is never an object: it has no field '{name}'", at)
            else:
                self.note("unknown-field", f"the schema of {shape.label} has no field '{name}'{hint}", at)
            return UNKNOWN
        if verdict == "undeclared" and not _resolve(shape.schema, shape.root).get("$quiet"):
            close = difflib.get_close_matches(name, declared or [], n=1, cutoff=_TYPO_RATIO)
            if close:
                self.note("unknown-field", f"{shape.label} does not declare '{name}' (its schema allows other "
                                           f"fields); did you mean '{close[0]}'?", at)
        if isinstance(sub, dict) and "$step" in sub:     # a step's (or a built key's) own shape
            sub = shape.root["$steps"].get(sub["$step"], UNKNOWN)
        if sub is UNKNOWN:
            return UNKNOWN
        if isinstance(sub, Shape):          # a step's own output shape
            return Shape(sub.schema, sub.root, label)
        return Shape(sub, shape.root, label)

    # --- structure -----------------------------------------------------------------------

    def _subexpression(self, node, cur, env):
        for child in node["children"]:
            cur = self.infer(child, cur, env)
        return cur

    _pipe = _subexpression

    def _index_expression(self, node, cur, env):
        left, right = node["children"]
        shape = self.infer(left, cur, env)
        if right["type"] == "index":
            return _item(shape, right.get("value"))
        return shape                          # a slice of a list is the list's shape

    def _projection(self, node, cur, env):
        left, right = node["children"]
        shape = self.infer(left, cur, env)
        return _array_of(self.infer(right, _item(shape), env))

    def _flatten(self, node, cur, env):
        shape = self.infer(node["children"][0], cur, env)
        item = _item(shape)
        if item is not UNKNOWN and _types(item) == {"array"}:
            item = _item(item)
        return _array_of(item)

    def _value_projection(self, node, cur, env):
        left, right = node["children"]
        self.infer(left, cur, env)
        self.infer(right, UNKNOWN, env)
        return UNKNOWN

    def _filter_projection(self, node, cur, env):
        left, right, condition = node["children"]
        item = _item(self.infer(left, cur, env))
        self.infer(condition, item, env)
        return _array_of(self.infer(right, item, env))

    def _multi_select_dict(self, node, cur, env):
        props = {}
        for pair in node["children"]:
            props[pair["value"]] = self.infer(pair["children"][0], cur, env)
        return _built_object(props)

    def _multi_select_list(self, node, cur, env):
        for child in node["children"]:
            self.infer(child, cur, env)
        return UNKNOWN

    def _current(self, node, cur, env):
        return cur

    _identity = _current

    def _root(self, node, cur, env):
        return _ROOT

    def _literal(self, node, cur, env):
        value = node.get("value")
        return Shape({"const": value, "type": _json_type(value)}, None, "a literal")

    # --- let ---------------------------------------------------------------------------

    def _let_expression(self, node, cur, env):
        *bindings, body = node["children"]
        inner = dict(env)
        for binding in bindings:
            inner[binding["value"]] = self.infer(binding["children"][0], cur, env)
        return self.infer(body, cur, inner)

    def _variable_ref(self, node, cur, env):
        return env.get(node["value"], UNKNOWN)

    # --- operations whose operands a schema can prove wrong -----------------------------

    def _comparator(self, node, cur, env):
        left, right = (self.infer(c, cur, env) for c in node["children"])
        self._mismatch(node, left, right)
        return UNKNOWN

    def _mismatch(self, node, left, right):
        for field, literal in ((left, right), (right, left)):
            if not (_is_literal(literal) and isinstance(field, Shape) and not _is_literal(field)):
                continue
            have, want = _types(field), _types(literal)
            if have and want and not have & want and not ({"integer", "number"} & have and want <= {"number",
                                                                                                    "integer"}):
                self.note("type-mismatch", f"{field.label} is {_or(have)} by its schema; comparing it with "
                                           f"{_or(want)} is never true", node.get("offset", 0))

    def _arithmetic(self, node, cur, env):
        for child in node["children"]:
            shape = self.infer(child, cur, env)
            if isinstance(shape, Shape) and _types(shape) == {"string"}:
                self.note("type-mismatch", f"{shape.label} is a string by its schema; arithmetic on it fails",
                          child.get("offset", 0))
        return UNKNOWN

    def _function_expression(self, node, cur, env):
        args = node["children"]
        shapes = [self.infer(a, cur, env) if a["type"] != "expref" else UNKNOWN for a in args]
        if node["value"] in _EXPREF_FUNCTIONS:
            arrays = [s for a, s in zip(args, shapes) if a["type"] != "expref"]
            item = _item(arrays[-1]) if arrays else UNKNOWN
            for a in args:
                if a["type"] == "expref":
                    self.infer(a["children"][0], item, env)
        if node["value"] in _ARRAY_FUNCTIONS_OF_NUMBERS and shapes:
            item = _item(shapes[0])
            if isinstance(item, Shape) and _types(item) and not _types(item) & {"number", "integer"}:
                self.note("type-mismatch", f"{node['value']}() needs numbers; the items of its argument are "
                                           f"{_or(_types(item))} by the schema", node.get("offset", 0))
        return UNKNOWN

    def _expref(self, node, cur, env):
        self.infer(node["children"][0], UNKNOWN, env)
        return UNKNOWN


# --- schema lookups ---------------------------------------------------------------------------

def _resolve(schema, root, depth=0):
    """Follow ``$ref`` (a JSON pointer into ``root``) until a schema without one."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and depth < _MAX_REF_DEPTH:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return True
        target = root
        for token in filter(None, ref[1:].split("/")):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                return True
        schema, depth = target, depth + 1
    return schema


def _lookup(shape: Shape, name: str):
    """``(verdict, sub-schema, declared names)``: verdict "declared", "undeclared" (allowed by an
    open schema) or "forbidden"; declared is None when the value is never an object."""
    schema = _resolve(shape.schema, shape.root)
    if schema is True or schema == {} or not isinstance(schema, dict):
        return ("forbidden", None, []) if schema is False else ("declared", UNKNOWN, [])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _any(shape, schema, key, name)
    if isinstance(schema.get("allOf"), list):
        return _all(shape, schema, name)
    return _single(schema, name)


def _any(shape, schema, key, name):
    """``anyOf``/``oneOf`` beside the rest of the schema: the rest must allow the name, and so
    must one alternative."""
    rest = _single({k: v for k, v in schema.items() if k != key}, name)
    results = [_lookup(Shape(alt, shape.root, shape.label), name) for alt in schema[key]]
    declared = sorted({n for _, _, d in results + [rest] for n in (d or [])})
    if rest[0] == "forbidden":
        return "forbidden", None, rest[2]
    for verdict in ("declared", "undeclared"):
        subs = [sub for v, sub, _ in results if v == verdict]
        if subs:
            return verdict, subs[0] if len(subs) == 1 else UNKNOWN, declared
    never_object = all(d is None for _, _, d in results)
    return "forbidden", None, None if never_object else declared


def _all(shape, schema, name):
    """``allOf``: every part must allow the name; ``unevaluatedProperties`` beside it sees the
    names the parts declare."""
    rest_schema = {k: v for k, v in schema.items() if k not in ("allOf", "unevaluatedProperties")}
    results = [_lookup(Shape(part, shape.root, shape.label), name) for part in schema["allOf"]]
    results.append(_single(rest_schema, name))
    declared = sorted({n for _, _, d in results for n in (d or [])})
    forbidden = [d for v, _, d in results if v == "forbidden"]
    if forbidden:
        return "forbidden", None, None if any(d is None for d in forbidden) else declared
    subs = [sub for v, sub, _ in results if v == "declared" and sub is not UNKNOWN]
    sub = subs[0] if len(subs) == 1 else UNKNOWN
    if name in declared:
        return "declared", sub, declared
    if schema.get("unevaluatedProperties") is False:
        return "forbidden", None, declared
    return "undeclared", sub, declared


def _single(schema, name):
    types = _schema_types(schema)
    if types and "object" not in types:
        return "forbidden", None, None
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    declared = sorted(props)
    if name in props:
        return "declared", props[name], declared
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        if _matches(pattern, name):
            return "declared", sub, declared
    extra = schema.get("additionalProperties", schema.get("unevaluatedProperties", True))
    if extra is False:
        return "forbidden", None, declared
    return "undeclared", UNKNOWN if extra is True else extra, declared


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:        # an ECMA-262 construct Python lacks: assume it may match
        return True


def _item(shape, index=None):
    if not isinstance(shape, Shape):
        return UNKNOWN
    schema = _resolve(shape.schema, shape.root)
    if not isinstance(schema, dict):
        return UNKNOWN
    prefix = schema.get("prefixItems")
    if isinstance(index, int) and isinstance(prefix, list) and 0 <= index < len(prefix):
        return Shape(prefix[index], shape.root, f"{shape.label}[{index}]")
    items = schema.get("items")
    if isinstance(items, list):       # draft-07 tuple form
        items = items[index] if isinstance(index, int) and 0 <= index < len(items) else \
            schema.get("additionalItems", {})
    if not isinstance(items, (dict, bool)) or items in (True, {}):
        return UNKNOWN
    return Shape(items, shape.root, f"{shape.label}[]")


def _array_of(item):
    if not isinstance(item, Shape):
        return UNKNOWN
    label = item.label[:-2] if item.label.endswith("[]") else item.label
    return Shape({"type": "array", "items": item.schema}, item.root, label)


def _built_object(props: dict):
    """The shape of ``{a: …, b: …}``: exactly those keys, each with what is known of it."""
    outputs = {k: v for k, v in props.items()}
    schema = {"type": "object", "properties": {k: {"$step": k} for k in outputs},
              "additionalProperties": False, "$steps": outputs}
    return Shape(schema, schema, "{…}")


def _schema_types(schema) -> set:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, str):
        return {kind}
    return {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()


def _types(shape) -> set:
    if not isinstance(shape, Shape):
        return set()
    schema = _resolve(shape.schema, shape.root) if shape.root is not None else shape.schema
    types = _schema_types(schema)
    return types | ({"number"} if "integer" in types else set())


def _is_literal(shape) -> bool:
    return isinstance(shape, Shape) and shape.root is None


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _or(types: set) -> str:
    names = sorted(t for t in types if not (t == "number" and "integer" in types))
    return " or ".join(("an " if t[0] in "aeiou" else "a ") + t for t in names)


def _suggest(name, declared) -> str:
    close = difflib.get_close_matches(name, declared or [], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
