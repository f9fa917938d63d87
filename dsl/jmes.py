"""Compile JMESPath Community Edition expressions to Python closures, checked at load time.

``jmespath.compile(text).search(data)`` walks the AST on every call (~40 µs to
reshape a Shopify order). Here the text is parsed once by our own parser
(:mod:`dsl.jmes_parser`, which reads the Community Edition's grammar: arithmetic,
``let``, ``$``, the ternary…), the tree is checked for unknown functions, wrong
arity and unbound ``$variables``, and compiled into nested closures
(:mod:`dsl.jmes_compile`; ~6.5 µs for the same search, see
``benchmarks/jmes_micro.py``). docs/expressions.md describes the language.

    >>> expr = compile_expression("steps.order.line_items[?qty > `1`].sku")
    >>> expr.search({"steps": {"order": {"line_items": [{"sku": "A", "qty": 2}]}}})
    ['A']
    >>> expr.step_refs()
    (('order', 6),)
    >>> compile_expression("let $n = `2` in n * $n").search({"n": 21})
    42
    >>> compile_expression("a.b | sum_by(@)")
    Traceback (most recent call last):
    ...
    dsl.jmes.ExpressionError: unknown-function: unknown function sum_by() (at offset 6)

Errors::

    ExpressionError             at compile time; .code, .message, .offset
        code "bad-expression"   syntax
        code "unknown-function" not a function of the registry (dsl.jmes_functions)
        code "bad-arity"        wrong number of arguments
        code "unknown-variable" a $name no enclosing ``let`` binds
        code "bad-argument"     an argument a function checks at load time
    jmespath.exceptions.JMESPathError    at search time (see dsl.jmes_functions)

``search`` returns what ``jmespath.search(text, data)`` returns for the
standard grammar, except where a Community Edition JEP changed the result
(docs/expressions.md lists those). Where the reference leaks a bare Python
exception (``"a" < `1```, ``contains('ab', `1`)``) it raises
``InvalidTypeError`` instead; list and object literals are copied on each
call so a caller mutating a result cannot change the compiled expression.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import HooklineDslError
from .reads import expression_reads
from .jmes_compile import compile_tree
from .jmes_functions import FUNCTIONS, Function, InvalidTypeError, InvalidValueError, arity_problem
from .jmes_parser import SyntaxProblem, parse

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
    """A compiled expression: ``search(value)`` evaluates it with ``value`` as ``@`` and ``$``."""

    source: str
    search: Search
    _step_refs: tuple[tuple[str, int], ...] = field(default=(), repr=False)
    reads: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    """Root paths the value depends on (``dsl.reads``); None: the whole context."""
    tree: dict | None = field(default=None, repr=False, compare=False)
    """The parsed tree, for the load-time checks that read it (``dsl.schema_check``); never
    used per request."""

    def step_refs(self) -> tuple[tuple[str, int], ...]:
        """Each ``steps.<id>`` read from the root context: ``(id, offset of id)``.

        Ordered by offset. References made inside projections, filters and
        ``&expr`` arguments are not included (there ``@`` is not the root),
        nor is ``steps`` used as a whole (``steps``, ``steps.*``, ``keys(steps)``).
        """
        return self._step_refs


def compile_expression(text: str, functions: Mapping[str, Function] = FUNCTIONS) -> Expression:
    """Parse, check and compile ``text``; raise :class:`ExpressionError` if it is bad.

    ``functions`` is the registry to check and call against (``dsl.jmes_functions.registry``).
    Of several problems the first by offset is raised.
    """
    try:
        tree = _parse(text)
        problems = _problems(tree, functions)
        if problems:
            raise problems[0]
        compiled = compile_tree(tree, functions)
        return Expression(text, lambda value: compiled(value, (value,)), _step_refs(tree),
                          expression_reads(tree), tree)
    except RecursionError:
        raise ExpressionError("bad-expression", "expression is nested too deeply", 0) from None


# --- syntax ---------------------------------------------------------------

def _parse(text: str) -> dict:
    try:
        return parse(text)
    except SyntaxProblem as exc:
        message = " ".join(exc.message.split())
        message = message if len(message) <= 100 else message[:97] + "..."
        raise ExpressionError("bad-expression", message, exc.offset) from None


# Children in source order, where the AST stores them otherwise.
_SOURCE_ORDER = {"filter_projection": (0, 2, 1)}
# Nodes whose offset is that of an identifier token: a field, a {key: ...}, a function name.
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


# --- static checks ----------------------------------------------------------

def _problems(tree: dict, functions: Mapping[str, Function]) -> list[ExpressionError]:
    """Unknown functions, wrong arities, unbound variables; sorted by offset."""
    problems: list[ExpressionError] = []
    _check(tree, frozenset(), functions, problems.append)
    return sorted(problems, key=lambda p: p.offset)


def _check(node: dict, bound: frozenset, functions, report) -> None:
    kind = node["type"]
    if kind == "slice":
        return
    if kind == "function_expression":
        problem = _function_problem(node, functions)
        if problem:
            report(problem)
    elif kind == "variable_ref" and node["value"] not in bound:
        name = node["value"]
        report(ExpressionError("unknown-variable", f"${name} is not bound by an enclosing let "
                                                   f"(write let ${name} = … in …)", node["offset"]))
    elif kind == "let_expression":
        *bindings, body = node["children"]
        for binding in bindings:
            _check(binding["children"][0], bound, functions, report)
        _check(body, bound | {b["value"] for b in bindings}, functions, report)
        return
    for child in node["children"]:
        _check(child, bound, functions, report)


def _function_problem(node: dict, functions) -> ExpressionError | None:
    name, args = node["value"], node["children"]
    if name not in functions:
        return ExpressionError("unknown-function", f"unknown function {name}()", node["offset"])
    message = arity_problem(name, len(args), functions)
    if message:
        return ExpressionError("bad-arity", message, node["offset"])
    prepare = functions[name].prepare
    problem = prepare(tuple(args)) if prepare else None
    if problem:
        position, message, *code = problem      # a third item: a code of the function's own
        return ExpressionError(code[0] if code else "bad-argument", message, args[position]["offset"])
    return None


# --- step references ----------------------------------------------------------
# A symbolic evaluation: what is the current node, the root context, its
# "steps" member, or anything else? Each _flow_* returns the state after it.

_ROOT, _STEPS, _OTHER = "root", "steps", "other"


def _step_refs(tree: dict) -> tuple[tuple[str, int], ...]:
    """``(id, offset)`` for each ``steps.<id>`` read while ``@`` is the root."""
    found = []
    _flow(tree, _ROOT, lambda node: found.append((node["value"], node["offset"])))
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
    "root": lambda node, state, note: _ROOT,
    "variable_ref": lambda node, state, note: _OTHER,
    "literal": lambda node, state, note: _OTHER,
    "index": lambda node, state, note: _OTHER,
    "slice": lambda node, state, note: _OTHER,
} | dict.fromkeys(("comparator", "or_expression", "and_expression", "not_expression",
                   "multi_select_list", "multi_select_dict", "key_val_pair",
                   "function_expression", "flatten", "arithmetic", "arithmetic_unary", "ternary",
                   "let_expression", "variable_binding"), _flow_each)
