"""Compile JMESPath expressions to Python closures, with checks at load time.

``jmespath.compile(text).search(data)`` walks the AST on every call (~40 µs to
reshape a Shopify order). Here the AST from jmespath's own parser is compiled
once into nested closures (~6.5 µs for the same search, see
``benchmarks/jmes_micro.py``), and the tree is checked for unknown functions
and wrong arity, which ``jmespath.compile`` lets through until the expression
runs.

    >>> expr = compile_expression("steps.order.line_items[?qty > `1`].sku")
    >>> expr.search({"steps": {"order": {"line_items": [{"sku": "A", "qty": 2}]}}})
    ['A']
    >>> expr.step_refs()
    (('order', 6),)
    >>> compile_expression("a.b | sum_by(@)")
    Traceback (most recent call last):
    ...
    dsl.jmes.ExpressionError: unknown-function: unknown function sum_by() (at offset 6)

Errors::

    ExpressionError             at compile time; .code, .message, .offset
        code "bad-expression"   syntax (jmespath's lexer or parser said no)
        code "unknown-function" not a jmespath builtin
        code "bad-arity"        wrong number of arguments
    jmespath.exceptions.JMESPathError    at search time, as jmespath.search
    ├── JMESPathTypeError                raises them (see dsl.jmes_functions)
    │   └── InvalidTypeError
    └── InvalidValueError

``search`` returns what ``jmespath.search(text, data)`` returns. Where the
reference leaks a bare Python exception (``"a" < `1```, ``contains('ab', `1`)``)
it raises ``InvalidTypeError`` instead; list and object literals are copied on
each call so a caller mutating a result cannot change the compiled expression.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from jmespath.exceptions import (
    IncompleteExpressionError, JMESPathError, LexerError, ParseError,
)
from jmespath.lexer import Lexer
from jmespath.parser import Parser

from .errors import HooklineDslError
from .reads import expression_reads
from .jmes_functions import (
    COMPARISONS, InvalidTypeError, InvalidValueError, _Expression, arity_problem,
    compile_call, copy_json, get_field, is_false, is_known, is_number,
)

__all__ = [
    "ExpressionError", "Expression", "compile_expression",
    "InvalidTypeError", "InvalidValueError",
]

Search = Callable[[Any], Any]


class ExpressionError(HooklineDslError):
    """An expression that cannot be compiled; ``offset`` is 0-based in its text."""

    def __init__(self, code: str, message: str, offset: int):
        super().__init__(f"{code}: {message} (at offset {offset})")
        self.code = code
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: ``search(value)`` is ``jmespath.search(source, value)``."""

    source: str
    search: Search
    _step_refs: tuple[tuple[str, int], ...] = field(default=(), repr=False)
    reads: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    """Root paths the value depends on (``dsl.reads``); None: the whole context."""

    def step_refs(self) -> tuple[tuple[str, int], ...]:
        """Each ``steps.<id>`` read from the root context: ``(id, offset of id)``.

        Ordered by offset. References made inside projections, filters and
        ``&expr`` arguments are not included (there ``@`` is not the root),
        nor is ``steps`` used as a whole (``steps``, ``steps.*``, ``keys(steps)``).
        """
        return self._step_refs


def compile_expression(text: str) -> Expression:
    """Parse, check and compile ``text``; raise :class:`ExpressionError` if it is bad.

    Of several function problems the first by offset is raised.
    """
    try:
        tree = _parse(text)
        offsets = _name_offsets(text, tree)
        problems = _function_problems(tree, offsets)
        if problems:
            raise problems[0]
        return Expression(text, _compile(tree), _step_refs(tree, offsets), expression_reads(tree))
    except RecursionError:
        raise ExpressionError("bad-expression", "expression is nested too deeply", 0) from None


# --- syntax ---------------------------------------------------------------

def _parse(text: str) -> dict:
    """jmespath's AST for ``text`` (shared with jmespath's cache: never mutate it)."""
    try:
        return Parser().parse(text).parsed
    except JMESPathError as exc:
        raise ExpressionError("bad-expression", _syntax_message(exc),
                              _syntax_offset(exc, text)) from exc


def _syntax_offset(exc: JMESPathError, text: str) -> int:
    if not getattr(exc, "msg", "").startswith("Quoted identifier"):
        return getattr(exc, "lex_position", 0) or 0
    # jmespath says 0 here; point at the quoted name before the "(" instead.
    tokens = list(Lexer().tokenize(text))
    return next(t["start"] for t, after in zip(tokens, tokens[1:])
                if t["type"] == "quoted_identifier" and after["type"] == "lparen")


def _parse_message(exc: ParseError) -> str:
    """``expected ':', got 'b'`` or ``unexpected ']'`` from jmespath's wording."""
    got = _describe_token(exc)
    expecting = re.fullmatch(r"Expecting: (.*), got: \w+", exc.msg)
    if expecting:
        wanted = dict.fromkeys(map(_token_kind, re.findall(r"[a-z_]+", expecting[1])))
        return f"expected {' or '.join(wanted)}, got {got}"
    if exc.msg.startswith(("Quoted", "Invalid function")):
        return f"{exc.msg.rstrip('.').lower()}"
    return f"unexpected {got}"


_SYMBOLS = {kind: symbol for symbol, kind in Lexer.SIMPLE_TOKENS.items()} | {"lbracket": "["}


def _token_kind(kind: str) -> str:
    if kind in _SYMBOLS:
        return repr(_SYMBOLS[kind])
    return "identifier" if kind.endswith("identifier") else kind


def _describe_token(exc: ParseError) -> str:
    if exc.token_type == "EOF":
        return "end of expression"
    value = exc.token_value
    return repr(value) if isinstance(value, str) else json.dumps(value)


# Most specific first: LexerError and IncompleteExpressionError are ParseErrors.
_SYNTAX_MESSAGES = (
    (LexerError, lambda exc: exc.message[:1].lower() + exc.message[1:]),
    (IncompleteExpressionError, lambda exc: "unexpected end of expression"),
    (ParseError, _parse_message),
    (JMESPathError, lambda exc: "expression is empty"),
)


def _syntax_message(exc: JMESPathError) -> str:
    """One clean line for a jmespath syntax error (theirs draw a caret)."""
    message = next(fn(exc) for cls, fn in _SYNTAX_MESSAGES if isinstance(exc, cls))
    message = re.sub(r"\s+", " ", str(message)).strip()
    return message if len(message) <= 100 else message[:97] + "..."


# --- where names are ------------------------------------------------------

# Children in source order, where the AST stores them otherwise.
_SOURCE_ORDER = {"filter_projection": (0, 2, 1)}
# Nodes carrying one identifier token each: a field, a {key: ...}, a function name.
_NAMED = frozenset({"field", "key_val_pair", "function_expression"})


def _walk(node: dict):
    """Every node of the tree, in the order of the source text."""
    yield node
    if node["type"] == "slice":
        return
    children = node["children"]
    order = _SOURCE_ORDER.get(node["type"])
    for child in ([children[i] for i in order] if order else children):
        yield from _walk(child)


def _name_offsets(text: str, tree: dict) -> dict[int, int]:
    """``id(node) -> offset`` for each named node.

    Every identifier token ends up as exactly one named node, and both come
    in source order, so pairing them up gives each node its token's offset.
    """
    starts = [t["start"] for t in Lexer().tokenize(text)
              if t["type"] in ("unquoted_identifier", "quoted_identifier")]
    named = [node for node in _walk(tree) if node["type"] in _NAMED]
    return {id(node): start for node, start in zip(named, starts)}


# --- static checks ----------------------------------------------------------

def _function_problems(tree: dict, offsets: dict[int, int]) -> list[ExpressionError]:
    """Unknown functions and wrong arities, sorted by offset."""
    problems = []
    for node in _walk(tree):
        if node["type"] == "function_expression":
            problem = _function_problem(node["value"], len(node["children"]))
            if problem:
                problems.append(ExpressionError(*problem, offsets.get(id(node), 0)))
    return sorted(problems, key=lambda p: p.offset)


def _function_problem(name: str, count: int) -> tuple[str, str] | None:
    if not is_known(name):
        return "unknown-function", f"unknown function {name}()"
    message = arity_problem(name, count)
    return ("bad-arity", message) if message else None


# --- step references ----------------------------------------------------------
# A symbolic evaluation: what is the current node, the root context, its
# "steps" member, or anything else? Each _flow_* returns the state after it.

_ROOT, _STEPS, _OTHER = "root", "steps", "other"


def _step_refs(tree: dict, offsets: dict[int, int]) -> tuple[tuple[str, int], ...]:
    """``(id, offset)`` for each ``steps.<id>`` read while ``@`` is the root."""
    found = []
    _flow(tree, _ROOT, lambda node: found.append((node["value"], offsets.get(id(node), 0))))
    return tuple(sorted(found, key=lambda ref: ref[1]))


def _flow(node: dict, state: str, note: Callable) -> str:
    return _FLOWS[node["type"]](node, state, note)


def _flow_field(node, state, note):
    if state is _STEPS:
        note(node)
    elif state is _ROOT and node["value"] == "steps":
        return _STEPS
    return _OTHER


def _flow_chain(node, state, note):
    for child in node["children"]:
        state = _flow(child, state, note)
    return state


def _flow_each(node, state, note):
    for child in node["children"]:
        _flow(child, state, note)
    return _OTHER


def _flow_projection(node, state, note):
    left, *per_element = node["children"]
    _flow(left, state, note)
    for child in per_element:
        _flow(child, _OTHER, note)
    return _OTHER


_FLOWS = {
    "field": _flow_field,
    "subexpression": _flow_chain, "index_expression": _flow_chain, "pipe": _flow_chain,
    "current": lambda node, state, note: state,
    "identity": lambda node, state, note: state,
    "projection": _flow_projection, "value_projection": _flow_projection,
    "filter_projection": _flow_projection,
    "expref": lambda node, state, note: _flow_each(node, _OTHER, note),
    "literal": lambda node, state, note: _OTHER,
    "index": lambda node, state, note: _OTHER,
    "slice": lambda node, state, note: _OTHER,
} | dict.fromkeys(("comparator", "or_expression", "and_expression", "not_expression",
                   "multi_select_list", "multi_select_dict", "key_val_pair",
                   "function_expression", "flatten"), _flow_each)


# --- compiling nodes to closures -----------------------------------------------

def _identity(value):
    return value


def _compile(node: dict) -> Search:
    """The closure computing ``node`` against a current value."""
    return _COMPILERS[node["type"]](node)


def _children(node: dict) -> list[Search]:
    return [_compile(child) for child in node["children"]]


def _compile_field(node):
    name = node["value"]

    def search(value):
        if type(value) is dict:
            return value.get(name)
        return get_field(value, name)
    return search


def _compile_chain(node):
    """``a.b``, ``a[0]``, ``a | b``: each child runs on the previous result."""
    if all(child["type"] == "field" for child in node["children"]):
        return _field_path(tuple(child["value"] for child in node["children"]))
    steps = [fn for fn in _children(node) if fn is not _identity]
    if len(steps) <= 2:
        return _pair(*steps)

    def search(value):
        for step in steps:
            value = step(value)
        return value
    return search


def _pair(first=_identity, second=_identity):
    if second is _identity:
        return first
    return lambda value: second(first(value))


def _field_path(names: tuple[str, ...]) -> Search:
    def search(value):
        for name in names:
            if type(value) is dict:
                value = value.get(name)
            elif value is None:
                return None
            else:
                value = get_field(value, name)
        return value
    return search


def _compile_comparator(node):
    left, right = _children(node)
    compare = COMPARISONS[node["value"]]
    return lambda value: compare(left(value), right(value))


def _compile_or(node):
    left, right = _children(node)

    def search(value):
        matched = left(value)
        return right(value) if is_false(matched) else matched
    return search


def _compile_and(node):
    left, right = _children(node)

    def search(value):
        matched = left(value)
        return matched if is_false(matched) else right(value)
    return search


def _compile_not(node):
    (child,) = _children(node)

    def search(value):
        result = child(value)
        if is_number(result) and result == 0:
            return False  # 0 is truthy in JMESPath, so !0 is false
        return not result
    return search


def _compile_projection(node):
    """``a[*].b``, ``a[].b``, ``a[1:].b``: ``right`` over each item, nulls dropped."""
    left, right = _children(node)

    def search(value):
        base = left(value)
        if not isinstance(base, list):
            return None
        return [r for r in map(right, base) if r is not None]
    return search


def _compile_value_projection(node):
    """``a.*.b``: ``right`` over each value of an object, nulls dropped."""
    left, right = _children(node)

    def search(value):
        base = left(value)
        try:
            items = base.values()
        except AttributeError:
            return None
        return [r for r in map(right, items) if r is not None]
    return search


def _compile_filter(node):
    """``a[?cond].b``: ``right`` over each item where ``cond`` is truthy."""
    left, right, condition = _children(node)

    def search(value):
        base = left(value)
        if not isinstance(base, list):
            return None
        collected = []
        for item in base:
            matched = condition(item)
            if matched is True or not is_false(matched):
                current = right(item)
                if current is not None:
                    collected.append(current)
        return collected
    return search


def _compile_flatten(node):
    (child,) = _children(node)

    def search(value):
        base = child(value)
        if not isinstance(base, list):
            return None
        merged = []
        for item in base:
            if isinstance(item, list):
                merged.extend(item)
            else:
                merged.append(item)
        return merged
    return search


def _compile_index(node):
    index = node["value"]

    def search(value):
        if not isinstance(value, list):
            return None
        try:
            return value[index]
        except IndexError:
            return None
    return search


def _compile_slice(node):
    start, stop, step = node["children"]
    if step == 0:
        return _zero_step_slice
    bounds = slice(start, stop, step)
    return lambda value: value[bounds] if isinstance(value, list) else None


def _zero_step_slice(value):
    if isinstance(value, list):
        raise InvalidValueError("slice step cannot be 0")
    return None


def _compile_literal(node):
    constant = node["value"]
    if isinstance(constant, (list, dict)):
        constant = copy_json(constant)
        return lambda value: copy_json(constant)
    return lambda value: constant


def _compile_list(node):
    items = _children(node)
    return lambda value: None if value is None else [item(value) for item in items]


def _compile_dict(node):
    pairs = tuple((pair["value"], _compile(pair)) for pair in node["children"])
    return lambda value: None if value is None else {key: fn(value) for key, fn in pairs}


def _compile_function(node):
    return compile_call(node["value"], tuple(_children(node)))


def _compile_expref(node):
    (child,) = node["children"]
    ref = _Expression(child, _compile(child))
    return lambda value: ref


_COMPILERS: dict[str, Callable[[dict], Search]] = {
    "field": _compile_field,
    "subexpression": _compile_chain,
    "index_expression": _compile_chain,
    "pipe": _compile_chain,
    "current": lambda node: _identity,
    "identity": lambda node: _identity,
    "comparator": _compile_comparator,
    "or_expression": _compile_or,
    "and_expression": _compile_and,
    "not_expression": _compile_not,
    "projection": _compile_projection,
    "value_projection": _compile_value_projection,
    "filter_projection": _compile_filter,
    "flatten": _compile_flatten,
    "index": _compile_index,
    "slice": _compile_slice,
    "literal": _compile_literal,
    "multi_select_list": _compile_list,
    "multi_select_dict": _compile_dict,
    "key_val_pair": lambda node: _compile(node["children"][0]),
    "function_expression": _compile_function,
    "expref": _compile_expref,
}
