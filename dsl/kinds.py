"""What an expression's value is, when the expression alone decides it: for load-time warnings.

Only the expression's own structure counts (literals, ``{…}``/``[…]`` built values, functions
that always give a string, a number or a boolean, comparisons); anything read from the request
is unknown. So a verdict is never a guess: ``csv_problem`` says why a value can never be
written as CSV, or None when it might be.

    >>> csv_problem("{order: request.body.id, skus: [request.body.sku, request.body.alt_sku]}")
    "the value at key 'skus' is a list, and a CSV cell holds a string, a number, a boolean or null"
    >>> csv_problem("join(', ', request.body.tags)")
    'it is always a string'
    >>> csv_problem("request.body.items[].{sku: sku, qty: qty}") is None
    True

The tree is the expression parser's (``dsl.jmes_parser``); node kinds not named here (a
ternary, a projection, a variable) are unknown: no verdict.
"""
from __future__ import annotations

from .bodies import WRITERS, Unwritable, is_name
from .jmes_parser import SyntaxProblem, parse

__all__ = ["kind_of", "csv_problem", "body_problem"]

# Functions whose result is one scalar kind (or null) whatever their arguments (a wrong argument
# is a 422): the standard ones, the Community Edition's string functions, Hookline's (issue 13).
_RESULTS = {
    **dict.fromkeys(("length", "abs", "ceil", "floor", "sum", "avg", "to_number", "find_first", "find_last",
                     "round", "to_integer"), "number"),
    **dict.fromkeys(("to_string", "join", "type", "lower", "upper", "trim", "trim_left", "trim_right",
                     "pad_left", "pad_right", "replace", "now", "to_datetime", "format_datetime",
                     "datetime_add", "regex_replace", "base64_encode", "base64_decode", "url_encode",
                     "url_decode", "sha256", "uuid", "uuid5", "json_encode"), "string"),
    **dict.fromkeys(("starts_with", "ends_with", "contains", "regex_match"), "boolean")}


def kind_of(source: str):
    """``("literal", value)``, ``("string"|"number"|"boolean",)``, ``("object", ((key, kind), …))``,
    ``("list", (kind, …))`` (a built object or list, or null), or None when the request decides."""
    try:
        return _kind(parse(source))
    except (SyntaxProblem, RecursionError):
        return None


def _kind(node: dict):
    kind = node["type"]
    if kind == "literal":
        return ("literal", node["value"])
    if kind in ("comparator", "not_expression"):
        return ("boolean",)
    if kind in ("arithmetic", "arithmetic_unary"):
        return ("number",)
    if kind == "function_expression" and node["value"] in _RESULTS:
        return (_RESULTS[node["value"]],)
    if kind == "multi_select_dict":
        return ("object", tuple((pair["value"], _kind(pair["children"][0])) for pair in node["children"]))
    if kind == "multi_select_list":
        return ("list", tuple(_kind(child) for child in node["children"]))
    if kind in ("pipe", "subexpression", "let_expression"):   # null on the left is null: no CSV either
        return _kind(node["children"][-1])
    return None


def csv_problem(source: str) -> str | None:
    """Why the expression's value can never be CSV (a flat object or a list of flat objects)."""
    return _csv(kind_of(source))


def _csv(kind) -> str | None:
    if kind is None:
        return None
    if kind[0] == "literal":
        return _csv_value(kind[1])
    if kind[0] == "object":
        return next((_cell(key, value) for key, value in kind[1] if _cell(key, value)), None)
    if kind[0] == "list":
        return next((f"item {i}{problem}" for i, item in enumerate(kind[1])
                     for problem in [_row(item)] if problem), None)
    return f"it is always a {kind[0]}"


def _row(kind) -> str | None:
    """What keeps a list item from being a CSV row: " is not an object", ": <why>", or None."""
    if kind is None:
        return None
    if kind[0] == "object" or (kind[0] == "literal" and type(kind[1]) is dict):
        problem = _csv(kind)
        return f": {problem}" if problem else None
    return " is not an object"


def _cell(key: str, kind) -> str | None:
    if kind is None or kind[0] in ("string", "number", "boolean"):
        return None
    if kind[0] == "literal" and type(kind[1]) not in (dict, list):
        return None
    noun = "an object" if kind[0] == "object" or type(kind[-1]) is dict else "a list"
    return f"the value at key '{key}' is {noun}, and a CSV cell holds a string, a number, a boolean or null"


def _csv_value(value) -> str | None:
    if type(value) is dict:
        nested = next((k for k, v in value.items() if type(v) in (dict, list)), None)
        return None if nested is None else _cell(nested, ("literal", value[nested]))
    if type(value) is list:
        return next((f"item {i}{problem}" for i, row in enumerate(value)
                     for problem in [_row(("literal", row))] if problem), None)
    return "it is always null" if value is None else f"it is always a {_SCALARS[type(value)]}"


_SCALARS = {str: "string", int: "number", float: "number", bool: "boolean"}


def body_problem(fmt: str, source: str) -> str | None:
    """Why a ``call.body`` can never be written as ``fmt`` (dsl.bodies), or None when it might.

        >>> body_problem("xml", "{order: request.body, note: 'x'}")
        'an XML document has one root element: the body must be an object with one key, not 2 keys'
        >>> body_problem("xml", "{\\"order id\\": request.body}")
        "'order id' is not an XML element name"
        >>> body_problem("form", "request.body") is None
        True
    """
    kind = kind_of(source)
    if kind is None or fmt == "json":
        return None
    if kind[0] == "literal":
        try:
            WRITERS[fmt](kind[1])
        except Unwritable as exc:
            return exc.message
        return None
    return _BODY_CHECKS[fmt](kind)


def _xml(kind) -> str | None:
    if kind[0] != "object" or len(kind[1]) != 1:
        what = f"{len(kind[1])} keys" if kind[0] == "object" else "a list" if kind[0] == "list" else f"a {kind[0]}"
        return f"an XML document has one root element: the body must be an object with one key, not {what}"
    root = kind[1][0][0]
    return f"{root!r} is not an XML element name" if not is_name(root) else _xml_names(kind[1][0][1])


def _xml_names(kind) -> str | None:
    """The first key of a built object that can never be an XML name."""
    if kind is None or kind[0] != "object":
        return None
    for key, value in kind[1]:
        name = key[1:] if key[:1] == "@" else key
        if key not in ("#text", "@xmlns") and not is_name(name):
            return f"{name!r} is not an XML {'attribute' if key[:1] == '@' else 'element'} name"
        problem = _xml_names(value)
        if problem:
            return problem
    return None


def _form(kind) -> str | None:
    if kind[0] != "object":
        return f"a form is an object of fields, not {'a list' if kind[0] == 'list' else 'a ' + kind[0]}"
    return next((f"the field '{key}' holds an object or a list, and a form field holds text, a number, "
                 "a boolean or a list of them" for key, value in kind[1] if _not_a_field(value)), None)


def _not_a_field(kind) -> bool:
    if kind is None or kind[0] in ("string", "number", "boolean"):
        return False
    items = kind[1] if kind[0] == "list" else kind[1] if kind[0] == "literal" and type(kind[1]) is list else None
    if items is None:
        return _structured(kind)
    return any(_structured(item if kind[0] == "list" else ("literal", item)) for item in items)


def _structured(kind) -> bool:
    return kind is not None and (kind[0] in ("object", "list") or (
        kind[0] == "literal" and type(kind[1]) in (dict, list)))


def _text(kind) -> str | None:
    if kind[0] in ("object", "list"):
        return f"it is always {'an object' if kind[0] == 'object' else 'a list'}, and text is a string, a number or a boolean"
    return None


_BODY_CHECKS = {"xml": _xml, "form": _form, "text": _text}
