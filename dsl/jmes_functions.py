"""The JMESPath runtime behind :mod:`dsl.jmes`: builtin functions and operators.

The function table, the signatures and the implementations are jmespath's own
(``jmespath.functions.Functions``), so results match ``jmespath.search``. What
changes is *when* work happens: arity is checked once at compile time
(:func:`arity_problem`), and each argument's allowed types are resolved once
into a small checker, instead of on every call as the reference does.
Comparisons, truthiness and field access follow ``jmespath.visitor``.

Runtime errors, all catchable as ``jmespath.exceptions.JMESPathError``::

    JMESPathError
    ├── JMESPathTypeError        an argument of the wrong type (as the reference)
    │   └── InvalidTypeError     where the reference leaks a bare Python
    │                            TypeError/ValueError (``contains('abc', `1`)``,
    │                            ``min_by`` over mixed keys, ``"a" < `1```)
    └── InvalidValueError        a slice step of 0

    >>> arity_problem("length", 2)
    'function length() takes 1 argument, got 2'
    >>> arity_problem("not_null", 1) is None
    True
"""
from __future__ import annotations

import operator
from numbers import Number
from typing import Any, Callable

from jmespath.exceptions import JMESPathError, JMESPathTypeError
from jmespath.functions import TYPES_MAP, Functions

Search = Callable[[Any], Any]

_FUNCS = Functions()
_TABLE = Functions.FUNCTION_TABLE


class InvalidTypeError(JMESPathTypeError):
    """A type mismatch the reference reports as a bare Python exception."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.message = message
        self.function_name = self.current_value = None
        self.actual_type = self.expected_types = None

    def __str__(self) -> str:
        return self.message


class InvalidValueError(JMESPathError):
    """JMESPath's ``invalid-value`` error, e.g. ``foo[::0]`` on an array."""


class _Expression:
    """An ``&expr`` argument; quacks like jmespath's ``visitor._Expression``.

    The reference functions call ``expref.visit(expref.expression, value)``;
    here that runs the compiled closure. The class name matters: jmespath's
    type checks compare type *names*, and ``'_Expression'`` means ``expref``.
    """

    __slots__ = ("expression", "search")

    def __init__(self, expression: dict, search: Search):
        self.expression = expression
        self.search = search

    def visit(self, node: dict, value: Any) -> Any:
        return self.search(value)


def is_known(name: str) -> bool:
    """True when ``name`` is a jmespath builtin function."""
    return name in _TABLE


def arity_problem(name: str, count: int) -> str | None:
    """The arity error message for ``name`` called with ``count`` args, or None."""
    signature = _TABLE[name]["signature"]
    expected = len(signature)
    variadic = bool(signature) and signature[-1].get("variadic", False)
    if count == expected or (variadic and count > expected):
        return None
    plural = "argument" if expected == 1 else "arguments"
    at_least = "at least " if variadic else ""
    return f"function {name}() takes {at_least}{expected} {plural}, got {count}"


def compile_call(name: str, args: tuple[Search, ...]) -> Search:
    """A closure evaluating builtin ``name`` on the compiled ``args``.

    The caller has already checked that the name exists and the arity fits.
    Like the reference, every argument is evaluated before any is checked,
    and only the positions named in the signature are type checked.
    """
    impl = _TABLE[name]["function"]
    checks = _checkers(name, _TABLE[name]["signature"])
    if len(args) == 1:
        return _unary_call(name, impl, args[0], checks[0] if checks else None)
    return _nary_call(name, impl, args, checks)


def _unary_call(name: str, impl, arg: Search, check) -> Search:
    def search(value):
        current = arg(value)
        if check is not None:
            check(current)
        return _invoke(name, impl, (current,))
    return search


def _nary_call(name: str, impl, args: tuple[Search, ...], checks) -> Search:
    checked = tuple((i, c) for i, c in enumerate(checks) if c is not None)

    def search(value):
        resolved = [arg(value) for arg in args]
        for i, check in checked:
            check(resolved[i])
        return _invoke(name, impl, resolved)
    return search


def _invoke(name: str, impl, resolved) -> Any:
    try:
        return impl(_FUNCS, *resolved)
    except JMESPathError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidTypeError(f"In function {name}(): {exc}") from exc


def _checkers(name: str, signature) -> list:
    """One checker (or None for "any type") per signature position."""
    return [_checker(name, spec["types"]) for spec in signature]


def _checker(name: str, types: list[str]):
    """A function raising JMESPathTypeError when a value is not of ``types``.

    Mirrors ``Functions._type_check_single``: the top-level check compares
    Python type *names*, and arrays with subtypes check every element.
    """
    if not types:
        return None
    allowed, subtypes = _FUNCS._get_allowed_pytypes(types)
    allowed = frozenset(allowed)

    def check(current):
        actual = type(current).__name__
        if actual not in allowed:
            raise JMESPathTypeError(name, current, jmespath_type(actual), types)
        if subtypes:
            _FUNCS._subtype_check(current, subtypes, types, name)
    return check


def jmespath_type(python_type_name: str) -> str:
    """The JMESPath type name for a Python type name (``'dict'`` -> ``'object'``)."""
    return TYPES_MAP.get(python_type_name, "unknown")


# --- operators and truthiness, as jmespath.visitor.TreeInterpreter has them ---

def is_false(value) -> bool:
    """JMESPath falsiness: null, false, "", [] and {} (but not 0)."""
    return value is None or value is False or value == "" or value == [] or value == {}


def is_number(value) -> bool:
    """A number that is not a boolean (``True`` is an ``int`` to Python)."""
    kind = type(value)
    return kind is int or kind is float or (kind is not bool and isinstance(value, Number))


def equals(x, y) -> bool:
    """The reference's ``==``: Python's, except a boolean never equals a number."""
    if (type(x) is bool) is not (type(y) is bool) and (is_number(x) or is_number(y)):
        return False
    return x == y


def _ordering(op: Callable, symbol: str) -> Callable:
    """An ordering comparison: null unless both sides are numbers or strings."""
    def compare(x, y):
        if not ((is_number(x) or isinstance(x, str)) and (is_number(y) or isinstance(y, str))):
            return None
        try:
            return op(x, y)
        except TypeError:
            raise InvalidTypeError(f"cannot compare {jmespath_type(type(x).__name__)} "
                                   f"{symbol} {jmespath_type(type(y).__name__)}") from None
    return compare


COMPARISONS = {
    "eq": equals,
    "ne": lambda x, y: not equals(x, y),
    "lt": _ordering(operator.lt, "<"), "lte": _ordering(operator.le, "<="),
    "gt": _ordering(operator.gt, ">"), "gte": _ordering(operator.ge, ">="),
}


def get_field(value, name: str):
    """The reference's field lookup: anything with ``.get``, else null."""
    try:
        return value.get(name)
    except AttributeError:
        return None


def copy_json(value):
    """A deep copy of a JSON value (literals must not leak shared lists)."""
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    return value
